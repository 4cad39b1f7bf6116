"""The JSON Schema (draft 2020-12) of the configuration file, generated from the models.

Editors use it through yaml-language-server to complete and check ``config.yaml`` as it is typed.
It accepts every file the loader accepts (a ``${VAR}`` may stand wherever a string goes); some
checks only the loader can make (ranges of durations, files that must exist, keys that go together).
"""

from __future__ import annotations

import json
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from collector.config.document import Config, MetricsConfig
from collector.config.values import QuotaReserve, format_duration

__all__ = ["SCHEMA_ID", "json_schema", "schema_text"]

_NULL_DISABLES = {"Config": ("metrics",)}  # ``metrics: null`` turns the endpoint off
SCHEMA_ID = "https://github.com/mimecast-collector/mimecast-collector/config.schema.json"


def json_schema() -> dict[str, Any]:
    """The schema as a dict."""
    body = TypeAdapter(Config).json_schema(mode="validation", ref_template="#/$defs/{model}")
    _tidy(body)
    for model in _models(Config):
        props = (body["$defs"].get(model.__name__, body) if model is not Config else body)["properties"]
        target = body["$defs"].get(model.__name__, body) if model is not Config else body
        for name, field in model.__pydantic_fields__.items():
            key = field.alias or name
            if field.init is False:
                props.pop(key, None)
                continue
            prop = props[key]
            if "$ref" in prop:  # pydantic's siblings of a $ref are dropped, but not the default it documents
                props[key] = prop = {k: v for k, v in prop.items() if k in ("$ref", "default")}
            prop.setdefault("description", field.description)
            prop.setdefault("examples", field.examples)
            if "default" in prop:
                prop["default"] = _spelled(field.get_default(call_default_factory=True), prop)
            if key in (*model.null_is_default, *_NULL_DISABLES.get(model.__name__, ())) and _refuses_null(prop):
                core = {k: v for k, v in prop.items() if k not in ("description", "examples", "default")}
                props[key] = {"anyOf": [core, {"type": "null"}],
                              **{k: v for k, v in prop.items() if k in ("description", "examples", "default")}}
        if "type" in props and "const" in props["type"]:
            target["required"] = sorted({*target.get("required", ()), "type"})
    body.pop("title", None)
    body["description"] = ("The YAML file read by mimecast-collector; check a file with "
                           "`mimecast-collector check-config -c FILE`.")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "mimecast-collector configuration", **body}


def schema_text() -> str:
    """The schema as printed by ``check-config --schema`` and kept in ``config.schema.json``."""
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


def _refuses_null(prop: dict[str, Any]) -> bool:
    return {"type": "null"} not in prop.get("anyOf", ()) and prop.get("type") != "null"


def _models(root: type) -> list[type]:
    """``root`` and every model reachable from its fields."""
    found: list[type] = []

    def visit(node: Any) -> None:
        if isinstance(node, type) and hasattr(node, "__pydantic_fields__"):
            if node in found:
                return
            found.append(node)
            for field in node.__pydantic_fields__.values():
                visit(field.annotation)
        for arg in typing.get_args(node):
            visit(arg)

    visit(root)
    return found


def _spelled(value: Any, prop: dict[str, Any]) -> Any:
    """A default written the way the configuration file writes it."""
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, float) and "(ms|s|m|h|d)" in json.dumps(prop):
        return format_duration(timedelta(seconds=value))
    if isinstance(value, (Path, QuotaReserve)):
        return str(value)
    if isinstance(value, tuple):
        return [format_duration(v) if isinstance(v, timedelta) else v for v in value]
    if isinstance(value, MetricsConfig):
        return {"listen": "%s:%d" % value.listen} if value.listen else {"listen": None}
    if hasattr(value, "__pydantic_fields__"):
        return {}
    return value


def _tidy(node: Any) -> None:
    """Drop pydantic's generated titles and the discriminator hints that are not JSON Schema."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for prop in props.values():
                if isinstance(prop, dict):
                    prop.pop("title", None)
        node.pop("discriminator", None)
        for value in node.values():
            _tidy(value)
    elif isinstance(node, list):
        for value in node:
            _tidy(value)
