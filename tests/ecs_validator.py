"""An ECS validator that reads the ECS flat field definitions (ecs_flat-9.4.0.yml)."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

ECS_FILE = Path(__file__).resolve().parent / "data" / "ecs" / "ecs_flat-9.4.0.yml"
CUSTOM = "mimecast"
_TEXT = {"keyword", "wildcard", "constant_keyword", "match_only_text", "text"}
_NUMBER = {"float", "double", "scaled_float", "half_float"}
_INTEGER = {"long", "integer", "short", "byte"}


@lru_cache(maxsize=1)
def fields() -> dict[str, dict[str, Any]]:
    """The ECS field definitions, keyed by dotted name."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(ECS_FILE, encoding="utf-8") as f:
        return yaml.load(f, Loader=loader)  # noqa: S506 - a safe loader


def validate(doc: dict[str, Any]) -> list[str]:
    """Every way ``doc`` breaks ECS 9.4.0; empty when it conforms."""
    defs = fields()
    errors: list[str] = []
    for required in ("@timestamp", "ecs.version"):
        if _get(doc, required) is None:
            errors.append(f"{required}: required")
    for name, value in _leaves(doc, ""):
        if name == CUSTOM or name.startswith(CUSTOM + "."):
            continue
        spec = defs.get(name)
        if spec is None:
            errors.append(f"{name}: not an ECS field")
            continue
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and "array" not in (spec.get("normalize") or []):
            errors.append(f"{name}: is an array but ECS does not normalize it to one")
        for item in values:
            problem = _type_problem(spec["type"], item)
            if problem:
                errors.append(f"{name}: {problem}")
            allowed = spec.get("allowed_values")
            if allowed and item not in {a["name"] for a in allowed}:
                errors.append(f"{name}: {item!r} is not an allowed value")
    category = _get(doc, "event.category") or []
    types = _get(doc, "event.type") or []
    for cat in category:
        spec = next((a for a in defs["event.category"]["allowed_values"] if a["name"] == cat), None)
        expected = (spec or {}).get("expected_event_types")
        if expected and not set(types) <= set(expected):
            errors.append(f"event.type: {types} not expected with category {cat} ({expected})")
    return errors


def _leaves(node: Any, prefix: str):
    if isinstance(node, dict):
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else key
            if name.startswith(CUSTOM):
                yield name, value
            elif isinstance(value, dict):
                yield from _leaves(value, name)
            else:
                yield name, value
    else:
        yield prefix, node


def _get(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split(".") if dotted != "@timestamp" else [dotted]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _type_problem(kind: str, value: Any) -> str | None:
    if kind in _TEXT:
        return None if isinstance(value, str) else f"expected a string for {kind}"
    if kind == "date":
        if not isinstance(value, str):
            return "expected an ISO-8601 date string"
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return f"{value!r} is not an ISO-8601 date"
        return None if parsed.tzinfo is not None else "date without a zone"
    if kind == "ip":
        try:
            ipaddress.ip_address(value)
        except (ValueError, TypeError):
            return f"{value!r} is not an IP address"
        return None
    if kind in _INTEGER:
        return None if isinstance(value, int) and not isinstance(value, bool) else "expected an integer"
    if kind in _NUMBER:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "expected a number"
    if kind == "boolean":
        return None if isinstance(value, bool) else "expected a boolean"
    return f"type {kind} is not produced by this collector"
