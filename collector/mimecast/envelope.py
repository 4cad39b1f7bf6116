"""Reading Mimecast's response envelope: ``meta``, ``data`` and ``fail``."""

from __future__ import annotations

from typing import Any

from collector.errors import ApiFailError, MalformedResponseError

__all__ = ["TOKEN_EXPIRED", "first_failure", "tracked_emails"]

TOKEN_EXPIRED = "token_expired"
_MAX_TEXT = 200


def first_failure(body: Any) -> tuple[str | None, str, bool]:
    """Return ``(code, message, retryable)`` of the first failure in a ``fail`` field.

    Mimecast sends ``fail`` as a list of ``{"errors": [...]}`` (API 1.0), a list of
    ``{"code", "message"}`` (API 2.0), and in the wild also a dict or a string.
    """
    fail = body.get("fail") if isinstance(body, dict) else None
    if isinstance(fail, list) and fail:
        fail = fail[0]
    if isinstance(fail, str):
        return None, _clip(fail), False
    if not isinstance(fail, dict):
        return None, "", False
    errors = fail.get("errors")
    entry = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else fail
    code = entry.get("code")
    return (str(code) if code is not None else None, _clip(entry.get("message") or ""),
            entry.get("retryable") is True)


def tracked_emails(body: Any) -> list[Any]:
    """The ``data[0].trackedEmails`` list of a search response.

    Raises:
        ApiFailError: ``fail`` is not empty, or ``meta.status`` is not 200.
        MalformedResponseError: the body is not the documented envelope.
    """
    if not isinstance(body, dict):
        raise MalformedResponseError(f"expected a JSON object, got {type(body).__name__}", status=200)
    if body.get("fail"):
        code, message, retryable = first_failure(body)
        raise ApiFailError(f"Mimecast reported a failure: {code or 'unknown'}: {message}",
                           code=code, status=200, retryable=retryable)
    meta = body.get("meta")
    status = meta.get("status") if isinstance(meta, dict) else None
    if status is not None and status != 200:
        raise ApiFailError(f"Mimecast meta.status {status}", status=status if isinstance(status, int) else None,
                           retryable=isinstance(status, int) and status >= 500)
    if "data" not in body:
        raise MalformedResponseError("response has no data field", status=200)
    data = body["data"]
    if data == []:
        return []
    if not isinstance(data, list) or not isinstance(data[0], dict):
        raise MalformedResponseError("data is not a list of objects", status=200)
    emails = data[0].get("trackedEmails", [])
    if not isinstance(emails, list):
        raise MalformedResponseError("data[0].trackedEmails is not a list", status=200)
    return emails


def _clip(text: Any) -> str:
    value = str(text).replace("\n", " ").replace("\r", " ")
    return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "..."
