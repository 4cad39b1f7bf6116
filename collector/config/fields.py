"""Custom value types for the models: each validates one kind of value and words its problems.

Each type is ``Annotated[T, PlainValidator(check), WithJsonSchema(schema)]``. A check raises
:func:`problem`, whose text is the reason printed after the dotted path. When the models are
validated from a file, the validation context holds ``base_dir`` and ``credentials_dir``; when
code builds a model directly (``dataclasses.replace``, tests) there is no context and values that
are already typed (a timedelta, a number of seconds, a Path, a Secret) are taken as they are.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Callable
from urllib.parse import urlsplit

from pydantic import PlainValidator, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from collector.config.values import RedactedUrl, Secret, parse_duration, redact_url

__all__ = ["Boolean", "Choice", "ChoiceList", "Duration", "ExistingFile", "FilePath", "Integer", "IpAddress",
           "Listen", "Name", "Printable", "Proxy", "SecretFile", "SecretText", "Seconds", "TEMPLATE", "Text",
           "TlsVerify", "Url", "kind", "problem", "resolve", "templated", "typed"]

TEMPLATE = {"type": "string", "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_DURATION_SCHEMA = {"type": "string", "pattern": r"^\s*(\d+(ms|s|m|h|d))+\s*$"}


def problem(reason: str, at: str = "", more: list[tuple[str, str]] | None = None) -> PydanticCustomError:
    """A configuration problem: ``reason`` at the value's path (plus ``at``); ``more`` adds further ones."""
    return PydanticCustomError("config", "{reason}", {"reason": reason, "at": at, "more": more or []})


def kind(value: Any) -> str:
    """How a problem names the type of a value it did not expect."""
    if value is None:
        return "nothing"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "a mapping"}
    return names.get(type(value), type(value).__name__)


def templated(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema``, or a string with a ``${VAR}`` reference (its value is only known at load time)."""
    return {"anyOf": [schema, TEMPLATE]}


def typed(python: Any, check: Callable[..., Any], schema: dict[str, Any]) -> Any:
    """``python`` validated by ``check`` and described to editors by ``schema``."""
    return Annotated[python, PlainValidator(check), WithJsonSchema(schema)]


def _from_file(info: ValidationInfo) -> bool:
    return info.context is not None


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise problem(f"expected a non-empty string, got {kind(value)}")
    return value


def _integer(lo: int, hi: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise problem(f"expected an integer, got {kind(value)}")
        if not lo <= value <= hi:
            raise problem(f"{value} is out of range ({lo} to {hi})")
        return value
    return check


def Integer(lo: int, hi: int) -> Any:  # noqa: N802 - a type factory
    """A whole number within ``[lo, hi]``."""
    return typed(int, _integer(lo, hi), {"type": "integer", "minimum": lo, "maximum": hi})


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise problem(f"expected true or false, got {kind(value)}")
    return value


Boolean = typed(bool, _boolean, {"type": "boolean"})
Text = typed(str, _text, templated({"type": "string", "minLength": 1, "pattern": r"\S"}))


def _duration(lo: str, hi: str, typed: type) -> Callable[[Any, ValidationInfo], Any]:
    def check(value: Any, info: ValidationInfo) -> Any:
        if not _from_file(info) and isinstance(value, typed) and not isinstance(value, bool):
            return value
        if not isinstance(value, str):
            raise problem(f"expected a duration like 90s, 5m, 1h or 30d, got {kind(value)}")
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            if re.fullmatch(_DURATION_SCHEMA["pattern"], value):  # well-formed, but too long for any timedelta
                raise problem(f"{value} is out of range ({lo} to {hi})") from None
            raise problem(str(exc)) from None
        if not parse_duration(lo) <= parsed <= parse_duration(hi):
            raise problem(f"{value} is out of range ({lo} to {hi})")
        return parsed if typed is timedelta else parsed.total_seconds()
    return check


def Duration(lo: str, hi: str) -> Any:  # noqa: N802
    """A duration (``90s``, ``5m``, ``1h30m``) within ``[lo, hi]``, as a timedelta."""
    return typed(timedelta, _duration(lo, hi, timedelta), templated(_DURATION_SCHEMA))


def Seconds(lo: str, hi: str) -> Any:  # noqa: N802
    """A duration within ``[lo, hi]``, as a float of seconds."""
    return typed(float, _duration(lo, hi, (int, float)), templated(_DURATION_SCHEMA))  # type: ignore[arg-type]


def Choice(*choices: str) -> Any:  # noqa: N802
    """One of ``choices``."""
    def check(value: Any) -> str:
        if value not in choices:
            raise problem(f"{value!r} is not one of: {', '.join(choices)}")
        return value
    return typed(str, check, templated({"enum": list(choices)}))


def ChoiceList(*choices: str) -> Any:  # noqa: N802
    """A list whose items are each one of ``choices`` (a single string is a list of one)."""
    def check(value: Any) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if isinstance(value, tuple):
            items = list(value)
        if not isinstance(items, list):
            raise problem(f"expected a list, got {kind(value)}")
        bad = [(f"[{i}]", f"{item!r} is not one of: {', '.join(choices)}") for i, item in enumerate(items)
               if item not in choices]
        if bad:
            raise problem(bad[0][1], bad[0][0], bad[1:])
        return tuple(items)
    item = templated({"enum": list(choices)})
    return typed(tuple, check, {"anyOf": [item, {"type": "array", "items": item}]})


def _ip(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise problem(f"{value!r} is not an IPv4 or IPv6 address") from None


IpAddress = typed(str, _ip, {"type": "string", "minLength": 1})


def _name(value: Any) -> str:
    if not _NAME.match(_text(value)):
        raise problem(f"{value!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return value


Name = typed(str, _name, templated({"type": "string", "pattern": _NAME.pattern}))


def Printable(most: int) -> Any:  # noqa: N802
    """1 to ``most`` printable ASCII characters without spaces (an RFC 5424 header field)."""
    def check(value: Any) -> str:
        if len(_text(value)) > most or not all(33 <= ord(c) <= 126 for c in value):
            raise problem(f"must be 1-{most} printable ASCII characters without spaces (RFC 5424)")
        return value
    return typed(str, check, templated({"type": "string", "pattern": f"^[!-~]{{1,{most}}}$"}))


def _url_text(value: Any, *, plain_http: bool, userinfo: bool) -> str:
    text = _text(value)
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
    return resolve(_text(value), info.context.get("base_dir") if info.context else None)


def _existing(value: Any, info: ValidationInfo) -> Path:
    path = _path(value, info)
    if _from_file(info) and not path.is_file():
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
    if not _from_file(info):
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
