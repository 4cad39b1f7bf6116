"""The base of every configuration model: frozen, no unknown keys, ``null`` read as "not given"."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ConfigDict, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass

from collector.config.fields import problem

__all__ = ["MODEL", "Section", "type_tag"]

MODEL = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True, defer_build=True)


@dataclass(frozen=True, config=MODEL)
class Section:
    """Shared validation of every section.

    A key written as ``null`` counts as absent when it is listed in ``null_is_default`` (names,
    choices, paths and URLs, as in every release so far); a required key written as ``null`` is
    reported as required. Other ``null`` values reach the field's type, which names them.
    """

    null_is_default: ClassVar[tuple[str, ...]] = ()

    @field_validator("*", mode="before")
    @classmethod
    def _null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None or info.field_name is None:
            return value
        field = cls.__pydantic_fields__[info.field_name]  # type: ignore[attr-defined]
        if field.is_required():
            raise problem("is required")
        if info.field_name in cls.null_is_default:
            return field.get_default(call_default_factory=True)
        return value


def type_tag(value: Any) -> Any:
    """The ``type`` of a tagged section (``mimecast.auth``, an output's ``sink``), read or built."""
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
