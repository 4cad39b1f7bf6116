"""A small evaluator for the Splunk eval expressions the add-on's calculated fields use.

Values are a string, a list of strings (a multivalue field) or ``None`` (null). String literals follow
eval's rule: ``\\"`` and ``\\\\`` are escapes, any other backslash stays, so ``"\\d"`` is the regex ``\\d``.
Only the functions listed in ``_FUNCTIONS`` are known; any other name is an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Union

__all__ = ["Value", "comparisons", "evaluate", "references"]

Value = Union[str, list[str], None]
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:\\.|[^"\\])*")|(?P<field>\'[^\']+\')|(?P<num>\d+)'
                    r'|(?P<name>[A-Za-z_]\w*)|(?P<op>==|!=|[(),.]))')


def _tokens(expression: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expression.rstrip()):
        match = _TOKEN.match(expression, pos)
        assert match, f"cannot read eval expression at {expression[pos:]!r}"
        kind = match.lastgroup or ""
        out.append((kind, match[kind]))
        pos = match.end()
    return out


def _parse(expression: str) -> Any:
    tokens = _tokens(expression)
    pos = 0

    def peek() -> tuple[str, str]:
        return tokens[pos] if pos < len(tokens) else ("end", "")

    def take(value: str | None = None) -> tuple[str, str]:
        nonlocal pos
        token = peek()
        assert value is None or token[1] == value, f"expected {value!r} in {expression!r}, got {token[1]!r}"
        pos += 1
        return token

    def binary(operators: tuple[str, ...], operand: Callable[[], Any]) -> Any:
        node = operand()
        while peek()[1] in operators:
            node = ("op", take()[1], node, operand())
        return node

    def primary() -> Any:
        kind, text = take()
        if kind == "str":
            return ("str", re.sub(r'\\(["\\])', r"\1", text[1:-1]))
        if kind == "field":
            return ("field", text[1:-1])
        if kind == "num":
            return ("str", text)
        if kind == "op" and text == "(":
            node = disjunction()
            take(")")
            return node
        assert kind == "name", f"unexpected {text!r} in {expression!r}"
        if peek()[1] != "(":
            return ("field", text)
        take("(")
        args = []
        while peek()[1] != ")":
            args.append(disjunction())
            if peek()[1] == ",":
                take(",")
        take(")")
        assert text in _FUNCTIONS, f"eval function {text}() is not understood here"
        return ("call", text, args)

    def concatenation() -> Any:
        return binary((".",), primary)

    def comparison() -> Any:
        return binary(("==", "!="), concatenation)

    def conjunction() -> Any:
        return binary(("AND",), comparison)

    def disjunction() -> Any:
        return binary(("OR",), conjunction)

    tree = disjunction()
    assert pos == len(tokens), f"trailing text in {expression!r}"
    return tree


def _single(value: list[str]) -> Value:
    return None if not value else value[0] if len(value) == 1 else value


def _values(value: Value) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else value


def _text(value: Value, name: str) -> str | None:
    assert not isinstance(value, list), f"{name}() on a multivalue field"
    return value


def _replace(value: Value, pattern: Value, replacement: Value) -> Value:
    text = _text(value, "replace")
    return None if text is None else re.sub(str(pattern), str(replacement), text)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "replace": _replace,
    "split": lambda v, sep: None if v is None else _single(_text(v, "split").split(sep)),  # type: ignore[union-attr]
    "mvjoin": lambda v, sep: None if v is None else str(sep).join(_values(v)),
    "mvdedup": lambda v: _single(list(dict.fromkeys(_values(v)))),
    "mvcount": lambda v: None if v is None else str(len(_values(v))),
    "lower": lambda v: None if v is None else _text(v, "lower").lower(),  # type: ignore[union-attr]
    "in": lambda v, *options: v is not None and _text(v, "in") in options,
    "if": lambda condition, then, otherwise: then if condition is True else otherwise,
    "coalesce": lambda *values: next((v for v in values if v is not None), None),
    "null": lambda: None,
}


def _run(node: Any, fields: dict[str, Value]) -> Any:
    kind = node[0]
    if kind == "str":
        return node[1]
    if kind == "field":
        return fields.get(node[1])
    if kind == "call":
        return _FUNCTIONS[node[1]](*(_run(arg, fields) for arg in node[2]))
    op, left, right = node[1], _run(node[2], fields), _run(node[3], fields)
    if op == ".":
        return None if left is None or right is None else _text(left, ".") + _text(right, ".")  # type: ignore[operator]
    if op in ("==", "!="):
        equal = left is not None and right is not None and left == right
        return equal if op == "==" else (left is not None and right is not None and not equal)
    return (left is True and right is True) if op == "AND" else (left is True or right is True)


def evaluate(expression: str, fields: dict[str, Value]) -> Value:
    """The value of ``expression`` for an event with ``fields``; a boolean result is an error."""
    value = _run(_parse(expression), fields)
    assert not isinstance(value, bool), f"{expression!r} gives a boolean, not a field value"
    return value


def _walk(node: Any) -> list[Any]:
    children = node[2] if node[0] == "call" else list(node[2:]) if node[0] == "op" else []
    return [node, *(n for child in children for n in _walk(child))]


def references(expression: str) -> set[str]:
    """The field names ``expression`` reads."""
    return {node[1] for node in _walk(_parse(expression)) if node[0] == "field"}


def comparisons(expression: str) -> set[tuple[str, str]]:
    """``(field, literal)`` for every ``field=="literal"`` in ``expression``."""
    return {(node[2][1], node[3][1]) for node in _walk(_parse(expression))
            if node[0] == "op" and node[1] == "==" and node[2][0] == "field" and node[3][0] == "str"}
