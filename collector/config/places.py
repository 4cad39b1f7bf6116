"""Value types that name a place: Mimecast's and the proxy's URLs, paths (resolved against the configuration's
folder), CA bundles, secrets read from files, and the metrics listen address.

Like :mod:`collector.config.fields`, each check raises :func:`~collector.config.fields.problem` with the reason
printed after the dotted path; a URL is shown redacted in every problem.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationInfo

from collector.config.fields import as_text, from_file, kind, problem, templated, typed
from collector.config.values import RedactedUrl, Secret, redact_url

__all__ = ["ExistingFile", "FilePath", "Listen", "Proxy", "SecretFile", "SecretText", "TlsVerify", "Url", "resolve"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _url_text(value: Any, *, plain_http: bool, userinfo: bool) -> str:
    text = as_text(value)
    shown = redact_url(text)
    try:
        parts = urlsplit(text)
        hostname, _port = parts.hostname, parts.port
    except ValueError as exc:
        reason = "its port is not a number from 1 to 65535" if "port" in str(exc).lower() else "it cannot be parsed"
        if "@" in text and "@" not in _netloc(text):
            reason = "a '/', '?' or '#' in its user-info must be percent-encoded"
        raise problem(f"{shown!r} is not an http(s) URL ({reason})") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise problem(f"{shown!r} is not an http(s) URL")
    if "@" in text and "@" not in parts.netloc:
        raise problem(f"{shown!r} is not an http(s) URL (a '/', '?' or '#' in its user-info must be "
                      "percent-encoded)")
    if "@" in parts.netloc and not userinfo:
        raise problem(f"{shown!r} must not carry user:password@ (Mimecast's credentials go under mimecast.auth)")
    if parts.scheme == "http" and hostname not in _LOOPBACK and not plain_http:
        raise problem("must use https (plain http is allowed only on loopback)")
    return text


def _netloc(text: str) -> str:
    return text.partition("://")[2].split("/")[0].split("?")[0].split("#")[0]


# Python's URL parser forgives case, spaces and tabs, so the schema only asks for a string.
_URL_SCHEMA = {"type": "string", "minLength": 1}
Url = typed(str, lambda v: _url_text(v, plain_http=False, userinfo=False), _URL_SCHEMA)


def _proxy(value: Any) -> RedactedUrl:
    if isinstance(value, RedactedUrl):
        return value
    return RedactedUrl(_url_text(value, plain_http=True, userinfo=True))


Proxy = typed(RedactedUrl, _proxy, _URL_SCHEMA)


def resolve(value: str, base: Path | None) -> Path:
    """``value`` as a path under ``base`` (``~`` expanded), or a problem when it cannot be one."""
    if "\x00" in value:
        raise problem("a path cannot contain a NUL character")
    try:
        return (base or Path()) / Path(value).expanduser()
    except RuntimeError as exc:
        raise problem(f"cannot expand {value!r}: {exc}") from None


def _path(value: Any, info: ValidationInfo) -> Path:
    if isinstance(value, Path):  # a default, or built by code: never read from the file
        return value
    return resolve(as_text(value), info.context.get("base_dir") if info.context else None)


def _existing(value: Any, info: ValidationInfo) -> Path:
    path = _path(value, info)
    if from_file(info) and not path.is_file():
        raise problem(f"{path} does not exist")
    return path


PATH_SCHEMA = templated({"type": "string", "minLength": 1})
FilePath = typed(Path, _path, PATH_SCHEMA)
ExistingFile = typed(Path, _existing, PATH_SCHEMA)


def _tls_verify(value: Any, info: ValidationInfo) -> bool | str:
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise problem("expected true, false or a CA bundle path")
    if not from_file(info):
        return value
    ca = resolve(value, info.context.get("base_dir"))
    if not ca.is_file():
        raise problem(f"CA bundle {ca} does not exist")
    return str(ca)


TlsVerify = typed(Any, _tls_verify, {"anyOf": [{"type": "boolean"}, {"type": "string", "minLength": 1}]})


def _secret_text(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str) or not value.strip():
        raise problem("expected a non-empty string")
    return Secret(value.strip())


def _secret_file(value: Any, info: ValidationInfo) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str) or not value.strip():
        raise problem(f"expected a file name, got {kind(value)}")
    context = info.context or {}
    path = resolve(value, context.get("credentials_dir") or context.get("base_dir"))
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise problem(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise problem(f"{path} is not UTF-8 text") from None
    if not text:
        raise problem(f"{path} is empty")
    return Secret(text)


SecretText = typed(Secret, _secret_text, {"type": "string", "minLength": 1, "writeOnly": True})
SecretFile = typed(Secret, _secret_file, {"type": "string", "minLength": 1})


def _listen(value: Any) -> tuple[str, int] | None:
    if value is None or isinstance(value, tuple):
        return value
    match = re.fullmatch(r"\[?([^\]]*?)\]?:(\d{1,5})", str(value))
    if not match or not match.group(1) or not 1 <= int(match.group(2)) <= 65535:
        raise problem(f"{value!r} is not host:port (e.g. 127.0.0.1:9464), or null to disable")
    return match.group(1), int(match.group(2))


Listen = typed(Any, _listen, {"anyOf": [{"type": "string", "pattern": r":\d{1,5}$"}, {"type": "null"}]})
