"""Typed readers for configuration values that collect every problem with its dotted path.

The :class:`Reader` never raises on bad input: each getter records
``"dotted.path: reason"`` and returns ``None`` so that one pass over the file
reports all mistakes at once. Secret values never appear in a problem text.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

__all__ = ["MISSING", "Reader", "Secret", "format_duration", "parse_duration", "seconds", "substitute_env"]

MISSING: Any = object()

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Secret:
    """A credential that never shows itself in a repr, a str or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret text, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def parse_duration(text: str) -> timedelta:
    """Parse ``90s``, ``5m``, ``1h30m``, ``30d`` or ``250ms`` into a timedelta.

    Raises:
        ValueError: the text is not such a duration.
    """
    compact = text.strip()
    if not compact or _DURATION_PART.sub("", compact):
        raise ValueError(f"{text!r} is not a duration like 90s, 5m, 1h or 30d")
    seconds = sum(int(n) * _UNIT[u] for n, u in _DURATION_PART.findall(compact))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a timedelta the way a config file would spell it (``1h30m``)."""
    left = int(value.total_seconds())
    if left == 0:
        millis = round(value.total_seconds() * 1000)
        return f"{millis}ms" if millis else "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def substitute_env(node: Any, env: Mapping[str, str], problems: list[str], path: str = "") -> Any:
    """Replace ``${VAR}`` (or ``${VAR:-default}``) in every string of a YAML tree; ``$$`` is a literal ``$``."""
    if isinstance(node, dict):
        return {k: substitute_env(v, env, problems, _join(path, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute_env(v, env, problems, f"{path}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def replace(match: re.Match[str]) -> str:
        """The environment's value for one reference."""
        name = match.group(1)
        if name is None:
            return "$"
        if name not in env:
            if match.group(2) is not None:
                return match.group(2)
            problems.append(f"{path}: environment variable {name} is not set")
            return ""
        return env[name]

    return _ENV_REF.sub(replace, node)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Reader:
    """Reads typed values out of parsed YAML, recording problems instead of raising."""

    def __init__(self, *, base_dir: Path, credentials_dir: Path | None) -> None:
        self.problems: list[str] = []
        self.base_dir = base_dir
        self.credentials_dir = credentials_dir

    def fail(self, path: str, reason: str) -> None:
        """Record one problem at a dotted path."""
        self.problems.append(f"{path}: {reason}")

    def mapping(self, value: Any, path: str, allowed: set[str], required: tuple[str, ...] = ()) -> dict[str, Any]:
        """Check that ``value`` is a mapping with only ``allowed`` keys; return it (or ``{}``)."""
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            self.fail(path or "(top level)", f"expected a mapping, got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(_join(path, str(key)), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if value.get(key) is None:
                self.fail(_join(path, key), "is required")
        return value

    def string(self, m: dict[str, Any], key: str, path: str, default: Any = MISSING) -> Any:
        """A non-empty string, or ``default`` when absent (absent and no default: a problem)."""
        if m.get(key) is None:
            return self._absent(key, path, default)
        value = m[key]
        if not isinstance(value, str) or not value.strip():
            self.fail(_join(path, key), f"expected a non-empty string, got {_kind(value)}")
            return None
        return value

    def integer(self, m: dict[str, Any], key: str, path: str, default: int, lo: int, hi: int) -> int | None:
        """An integer within ``[lo, hi]``."""
        value = m.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(_join(path, key), f"expected an integer, got {_kind(value)}")
            return None
        if not lo <= value <= hi:
            self.fail(_join(path, key), f"{value} is out of range ({lo} to {hi})")
            return None
        return value

    def boolean(self, m: dict[str, Any], key: str, path: str, default: bool) -> bool | None:
        """A YAML boolean."""
        value = m.get(key, default)
        if not isinstance(value, bool):
            self.fail(_join(path, key), f"expected true or false, got {_kind(value)}")
            return None
        return value

    def duration(self, m: dict[str, Any], key: str, path: str, default: str, lo: str, hi: str) -> timedelta | None:
        """A duration string within ``[lo, hi]``."""
        value = m.get(key, default)
        where = _join(path, key)
        if not isinstance(value, str):
            self.fail(where, f"expected a duration like 90s, 5m, 1h or 30d, got {_kind(value)}")
            return None
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            self.fail(where, str(exc))
            return None
        except OverflowError:
            self.fail(where, f"{value} is out of range ({lo} to {hi})")
            return None
        if not parse_duration(lo) <= parsed <= parse_duration(hi):
            self.fail(where, f"{value} is out of range ({lo} to {hi})")
            return None
        return parsed

    def choice(self, m: dict[str, Any], key: str, path: str, choices: tuple[str, ...], default: Any = MISSING) -> Any:
        """One of ``choices``, or ``default`` when absent."""
        if m.get(key) is None:
            return self._absent(key, path, default)
        value = m[key]
        if value not in choices:
            self.fail(_join(path, key), f"{value!r} is not one of: {', '.join(choices)}")
            return None
        return value

    def choices(self, m: dict[str, Any], key: str, path: str, choices: tuple[str, ...]) -> tuple[str, ...]:
        """A list whose items are each one of ``choices`` (absent means empty)."""
        value = m.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.fail(_join(path, key), f"expected a list, got {_kind(value)}")
            return ()
        for i, item in enumerate(value):
            if item not in choices:
                self.fail(f"{_join(path, key)}[{i}]", f"{item!r} is not one of: {', '.join(choices)}")
        return tuple(v for v in value if v in choices)

    def ip(self, m: dict[str, Any], key: str, path: str) -> str | None:
        """An IPv4 or IPv6 address, when present."""
        value = m.get(key)
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(str(value).strip()))
        except ValueError:
            self.fail(_join(path, key), f"{value!r} is not an IPv4 or IPv6 address")
            return None

    def path(self, m: dict[str, Any], key: str, path: str, default: Any = MISSING) -> Path | None:
        """A filesystem path, resolved against the configuration file's folder."""
        value = self.string(m, key, path, default)
        return None if value is None else self.resolve(value, _join(path, key), self.base_dir)

    def resolve(self, value: str, where: str, base: Path) -> Path | None:
        """``value`` as a path under ``base`` (``~`` expanded), or a problem when it cannot be one."""
        if "\x00" in value:
            self.fail(where, "a path cannot contain a NUL character")
            return None
        try:
            return base / Path(value).expanduser()
        except RuntimeError as exc:
            self.fail(where, f"cannot expand {value!r}: {exc}")
            return None

    def secret(self, m: dict[str, Any], key: str, path: str) -> Secret | None:
        """A secret given as ``key`` (may hold ``${ENV}``) or read from ``key_file``."""
        where = _join(path, key)
        inline, file_key = m.get(key), f"{key}_file"
        if inline is not None and m.get(file_key) is not None:
            self.fail(where, f"give either {key} or {file_key}, not both")
            return None
        if inline is not None:
            if not isinstance(inline, str) or not inline.strip():
                self.fail(where, "expected a non-empty string")
                return None
            return Secret(inline.strip())
        name = m.get(file_key)
        if name is None:
            self.fail(where, f"is required (as {key}, {key}_file or ${{ENV}})")
            return None
        if not isinstance(name, str) or not name.strip():
            self.fail(_join(path, file_key), f"expected a file name, got {_kind(name)}")
            return None
        secret_path = self.resolve(name, _join(path, file_key), self.credentials_dir or self.base_dir)
        if secret_path is None:
            return None
        try:
            text = secret_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            self.fail(_join(path, file_key), f"cannot read {secret_path}: {exc.strerror or exc}")
            return None
        except UnicodeDecodeError:
            self.fail(_join(path, file_key), f"{secret_path} is not UTF-8 text")
            return None
        if not text:
            self.fail(_join(path, file_key), f"{secret_path} is empty")
            return None
        return Secret(text)

    def _absent(self, key: str, path: str, default: Any) -> Any:
        if default is MISSING:
            self.fail(_join(path, key), "is required")
            return None
        return default


def seconds(value: timedelta | None) -> float:
    """A duration read by :meth:`Reader.duration` as seconds (0 when it was invalid and reported)."""
    return 0.0 if value is None else value.total_seconds()


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "a mapping"}
    return names.get(type(value), type(value).__name__)


def credentials_dir_from_env(env: Mapping[str, str], config_dir: Path | None = None) -> Path | None:
    """Where relative ``*_file`` secrets live.

    ``$CREDENTIALS_DIRECTORY`` when systemd sets it; otherwise a ``credentials`` folder beside the
    config file when there is one (the layout the README installs), so that commands run by hand
    read the same secrets the service gets; otherwise ``None`` (the config's own folder).
    """
    value = env.get("CREDENTIALS_DIRECTORY")
    if value:
        return Path(value)
    beside = config_dir / "credentials" if config_dir is not None else None
    return beside if beside is not None and beside.is_dir() else None


def default_config_path(env: Mapping[str, str] = os.environ) -> Path:
    """``$MIMECAST_COLLECTOR_CONFIG``, else ``/etc/mimecast-collector/config.yaml``."""
    return Path(env.get("MIMECAST_COLLECTOR_CONFIG") or "/etc/mimecast-collector/config.yaml")
