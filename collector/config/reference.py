"""The configuration reference (docs/configuration-reference.md), rendered from the JSON Schema.

The schema is built from the models' own descriptions, examples and defaults, so the reference
says what the loader accepts and cannot drift from it. Regenerate it after changing a model::

    python -m collector.config.reference > docs/configuration-reference.md

``tests/test_docs.py`` fails while the file differs from what this prints.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

__all__ = ["COMMAND", "reference_text"]

COMMAND = "python -m collector.config.reference > docs/configuration-reference.md"
_ENV_PATTERN = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"
_PLAIN_PATTERNS = {r"\S"}  # "not blank": already said by "string"
_INTRO = """\
# Configuration reference

<!-- Generated from the models by `{command}`; do not edit by hand. -->

Every key of the configuration file, generated from the models that check it (the same text an editor
shows from [`config.schema.json`](../config.schema.json)). [Configuration](configuration.md) explains how
the file is read, checked and kept secret. A string value may also be written as `${{VAR}}` or
`${{VAR:-default}}`, read from the environment. A key marked *required* has no default; every other key
may be left out.
"""


def reference_text(schema: dict[str, Any]) -> str:
    """The Markdown reference for ``schema`` (as built by ``collector.config.schema.json_schema``)."""
    sections: list[tuple[str, str, dict[str, Any]]] = []
    _collect(schema, schema, "", "Top level", sections)
    anchors = {id(node): _anchor(title) for title, _, node in sections}
    parts = [_INTRO.format(command=COMMAND)]
    parts.append("\n".join(f"- [{title}](#{_anchor(title)})" for title, _, _ in sections) + "\n")
    for title, path, node in sections:
        parts.append(_section(schema, title, path, node, anchors))
    return "\n".join(parts)


def _collect(schema: dict[str, Any], node: dict[str, Any], path: str, title: str,
             found: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Every object reachable from ``node``, depth first, as (heading, dotted path, schema)."""
    found.append((title, path, node))
    for key, prop in node.get("properties", {}).items():
        child = f"{path}.{key}" if path else key
        for target, suffix in _objects(schema, prop):
            sub = f"{child}[]" if suffix == "[]" else child
            kind = target.get("properties", {}).get("type", {}).get("const")
            _collect(schema, target, sub, f"`{sub}`" + (f", type `{kind}`" if kind else ""), found)


def _objects(schema: dict[str, Any], prop: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """The models a property holds (itself, in a list, or one of several), with "[]" for a list."""
    if "$ref" in prop:
        return [(_resolve(schema, prop["$ref"]), "")]
    if prop.get("type") == "array" and "items" in prop:
        return [(target, "[]") for target, _ in _objects(schema, prop["items"])]
    return [found for branch in (*prop.get("anyOf", ()), *prop.get("oneOf", ())) for found in _objects(schema, branch)]


def _resolve(schema: dict[str, Any], ref: str) -> dict[str, Any]:
    return schema["$defs"][ref.rsplit("/", 1)[1]]


def _section(schema: dict[str, Any], title: str, path: str, node: dict[str, Any], anchors: dict[int, str]) -> str:
    required = set(node.get("required", ()))
    lines = [f"## {title}", "", _cell(node.get("description", "")) if node is not schema else
             "The keys at the top of the file.", "",
             "| key | type | default | description | example |", "| --- | --- | --- | --- | --- |"]
    for key, prop in node.get("properties", {}).items():
        nested = _objects(schema, prop)
        default = "*required*" if key in required else _code(prop.get("default"))
        example = "" if nested or not prop.get("examples") else _code(prop["examples"][0])
        lines.append(f"| `{key}` | {_type(schema, prop, anchors)} | {default} | "
                     f"{_cell(prop.get('description', ''))} | {example} |")
    return "\n".join(lines) + "\n"


def _type(schema: dict[str, Any], prop: dict[str, Any], anchors: dict[int, str]) -> str:
    """A short name for what a property accepts, linking to the section of a nested model."""
    if "$ref" in prop:
        target = _resolve(schema, prop["$ref"])
        kind = target.get("properties", {}).get("type", {}).get("const")
        return f"[{kind or 'object'}](#{anchors[id(target)]})"
    branches = [*prop.get("anyOf", ()), *prop.get("oneOf", ())]
    if branches:
        names = [_type(schema, b, anchors) for b in branches
                 if b.get("pattern") != _ENV_PATTERN and b.get("type") != "null"]
        unique = list(dict.fromkeys(names))
        if len(unique) == 2 and unique[1] == f"list of {unique[0]}":
            return f"{unique[0]}, or a list of them"
        return " or ".join(unique) if len(unique) > 1 or "oneOf" not in prop else "one of " + unique[0]
    if "enum" in prop:
        return " \\| ".join(f"`{value}`" for value in prop["enum"])
    if "const" in prop:
        return _code(prop["const"])
    kind = prop.get("type", "any")
    if kind == "array":
        return "list of " + _type(schema, prop.get("items", {}), anchors)
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return "map of " + _type(schema, prop["additionalProperties"], anchors)
    if kind in ("integer", "number") and "minimum" in prop and "maximum" in prop:
        return f"{kind}, {prop['minimum']} to {prop['maximum']}"
    if kind in ("integer", "number") and ("minimum" in prop or "maximum" in prop):
        return f"{kind}, at least {prop['minimum']}" if "minimum" in prop else f"{kind}, at most {prop['maximum']}"
    pattern = prop.get("pattern")
    if kind == "string" and pattern:
        if "(ms|s|m|h|d)" in pattern:
            return "duration (`90s`, `5m`, `1h`, `30d`)"
        if "%" in pattern:
            return "percentage (`10%`)"
        if pattern not in _PLAIN_PATTERNS:
            return f"string matching `{_cell(pattern)}`"
    if kind == "string" and prop.get("writeOnly"):
        return "string (secret)"
    return str(kind)


def _code(value: Any) -> str:
    """A value as the file writes it: a plain string bare, anything else in JSON (which YAML reads)."""
    if value is None:
        return ""
    bare = isinstance(value, str) and value and value.strip() == value
    text = value if bare else json.dumps(value, ensure_ascii=False)
    return "`" + _cell(text) + "`"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("``", "`").replace("|", "\\|").replace("\n", " ")


def _anchor(title: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def main() -> None:
    """Print the reference (redirect it into docs/configuration-reference.md)."""
    from collector.config.schema import json_schema

    sys.stdout.write(reference_text(json_schema()))


if __name__ == "__main__":
    main()
