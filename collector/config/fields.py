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
from typing import Annotated, Any, Callable

from pydantic import PlainValidator, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from collector.config.values import parse_duration

__all__ = ["Boolean", "Choice", "ChoiceList", "Duration", "Integer", "IpAddress", "Name", "Printable", "Seconds",
           "Size", "TEMPLATE", "Text", "as_text", "from_file", "kind", "problem", "templated", "typed"]

TEMPLATE = {"type": "string", "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
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


def from_file(info: ValidationInfo) -> bool:
    """Whether the value is being read from a configuration file (not built by code): only then are files
    looked at and paths resolved."""
    return info.context is not None


def as_text(value: Any) -> str:
    """``value`` when it is a string with something besides white space, else the problem saying what it is."""
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


_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def _size(lo: int, hi: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise problem(f"expected a size like 64MiB, 512KiB or a number of bytes, got {kind(value)}")
        match = _SIZE.match(value) if isinstance(value, str) else None
        if isinstance(value, str) and match is None:
            raise problem(f"{value!r} is not a size like 64MiB, 512KiB, 1GiB or a number of bytes")
        size = value if isinstance(value, int) else int(match.group(1)) * _SIZE_UNITS[match.group(2)]  # type: ignore[union-attr]
        if not lo <= size <= hi:
            raise problem(f"{value} is out of range ({_bytes(lo)} to {_bytes(hi)})")
        return size
    return check


def _bytes(size: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        if size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return f"{size}B"


def Size(lo: int, hi: int) -> Any:  # noqa: N802 - a type factory
    """A number of bytes within ``[lo, hi]``: an integer, or a string such as ``64MiB`` (B, KiB, MiB, GiB)."""
    return typed(int, _size(lo, hi), templated({"anyOf": [
        {"type": "integer", "minimum": lo, "maximum": hi},
        {"type": "string", "pattern": _SIZE.pattern}]}))


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise problem(f"expected true or false, got {kind(value)}")
    return value


Boolean = typed(bool, _boolean, {"type": "boolean"})
Text = typed(str, as_text, templated({"type": "string", "minLength": 1, "pattern": r"\S"}))


def _duration(lo: str, hi: str, typed: type) -> Callable[[Any, ValidationInfo], Any]:
    def check(value: Any, info: ValidationInfo) -> Any:
        if not from_file(info) and isinstance(value, typed) and not isinstance(value, bool):
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
    if not _NAME.match(as_text(value)):
        raise problem(f"{value!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return value


Name = typed(str, _name, templated({"type": "string", "pattern": _NAME.pattern}))


def Printable(most: int) -> Any:  # noqa: N802
    """1 to ``most`` printable ASCII characters without spaces (an RFC 5424 header field)."""
    def check(value: Any) -> str:
        if len(as_text(value)) > most or not all(33 <= ord(c) <= 126 for c in value):
            raise problem(f"must be 1-{most} printable ASCII characters without spaces (RFC 5424)")
        return value
    return typed(str, check, templated({"type": "string", "pattern": f"^[!-~]{{1,{most}}}$"}))
