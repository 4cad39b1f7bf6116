"""Reading the file: ``${VAR}`` substitution, where secret files live, and problems as ``dotted.path: reason``."""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from collector.config.fields import kind

__all__ = ["credentials_dir_from_env", "default_config_path", "describe", "substitute_env"]

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MAPPING_ERRORS = ("dataclass_type", "dataclass_args_type", "model_type", "model_attributes_type", "dict_type")


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


def credentials_dir_from_env(env: Mapping[str, str], config_dir: Path | None = None) -> Path | None:
    """Where relative ``*_file`` secrets live.

    ``$CREDENTIALS_DIRECTORY`` when systemd sets it; otherwise a ``credentials`` folder beside the
    config file when there is one (the layout docs/install.md installs), so that commands run by hand
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


def describe(error: ValidationError, root: type) -> list[str]:
    """Every problem of ``error`` as ``dotted.path: reason``, in the wording of :mod:`collector.config.fields`."""
    problems: list[tuple[str, str]] = []
    for item in error.errors(include_url=False, include_input=True):
        path, model = _walk(root, item["loc"])
        kind_of, ctx = item["type"], item.get("ctx") or {}
        if kind_of == "config":
            for at, reason in [(ctx["at"], ctx["reason"]), *ctx["more"]]:
                where = path + at if at.startswith("[") or not at else _join(path, at)
                problems.append((where or "(top level)", reason))
            continue
        if kind_of == "missing":
            reason = "is required"
        elif kind_of in ("unexpected_keyword_argument", "extra_forbidden"):
            reason = f"unknown key (allowed: {', '.join(sorted(_keys(model)))})"
        elif kind_of in _MAPPING_ERRORS:
            reason = f"expected a mapping, got {kind(item.get('input'))}"
        else:
            reason = item["msg"]
        problems.append((path or "(top level)", reason))
    return _unknown_keys_first(problems)


def _unknown_keys_first(problems: list[tuple[str, str]]) -> list[str]:
    """Each mapping's unknown keys before the other problems inside it, as the file is read top-down."""
    ordered: list[tuple[str, str]] = []
    for path, reason in problems:
        at = len(ordered)
        if reason.startswith("unknown key"):
            parent = path.rpartition(".")[0] if "." in path else ""
            at = next((i for i, (p, r) in enumerate(ordered) if _inside(p, parent) and not
                       (r.startswith("unknown key") and _inside(p, parent) and p.count(".") == path.count("."))),
                      len(ordered))
        ordered.insert(at, (path, reason))
    return [f"{path}: {reason}" for path, reason in ordered]


def _inside(path: str, parent: str) -> bool:
    return not parent or path == parent or path.startswith((f"{parent}.", f"{parent}["))


def _walk(root: Any, loc: tuple[Any, ...]) -> tuple[str, Any]:
    """The dotted path of ``loc`` (without union tags or ``[key]`` markers) and the model that holds its end."""
    path, node, parent = "", root, None
    for step in loc:
        node = _unwrap(node)
        members = _members(node)
        if members and isinstance(step, str) and step in members:
            node = members[step]
            continue
        if step == "[key]":
            continue
        parent = node
        if isinstance(step, int):
            path += f"[{step}]"
            args = typing.get_args(node)
            node = args[0] if args else None
        else:
            path = _join(path, step)
            fields = getattr(node, "__pydantic_fields__", {})
            match = [f for name, f in fields.items() if (f.alias or name) == step]
            node = match[0].annotation if match else None
    return path, _unwrap(parent)


def _unwrap(node: Any) -> Any:
    """``X`` of ``Annotated[X, ...]`` and of ``Optional[X]``."""
    while True:
        origin = typing.get_origin(node)
        if origin is typing.Annotated:
            node = typing.get_args(node)[0]
        elif origin is typing.Union and type(None) in typing.get_args(node):
            rest = [a for a in typing.get_args(node) if a is not type(None)]
            node = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]
        else:
            return node


def _members(node: Any) -> dict[str, Any]:
    """The members of a union tagged by ``type``, by tag."""
    if typing.get_origin(node) is not typing.Union:
        return {}
    found = {}
    for member in map(_unwrap, typing.get_args(node)):
        field = getattr(member, "__pydantic_fields__", {}).get("type")
        if field is not None:
            found[field.default] = member
    return found


def _keys(model: Any) -> set[str]:
    fields = getattr(model, "__pydantic_fields__", {})
    return {f.alias or name for name, f in fields.items() if f.init is not False}
