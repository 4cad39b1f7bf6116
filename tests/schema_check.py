"""Every configuration the loader accepts must also pass config.schema.json, so an editor never flags it."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from collector.config import parse_config
from collector.errors import ConfigError

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "config.schema.json"


@lru_cache(maxsize=1)
def validator() -> Draft202012Validator:
    """The validator of the schema file at the repository root."""
    return Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def schema_problems(data: Any) -> list[str]:
    """What the schema finds wrong with ``data`` (empty when it passes)."""
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(data)]


def assert_schema_accepts_if_valid(data: Any, base_dir: Path, env: Any = None) -> None:
    """If the loader accepts ``data``, the schema must too."""
    try:
        parse_config(data, env=os.environ if env is None else env, base_dir=base_dir)
    except ConfigError:
        return
    found = schema_problems(data)
    assert not found, f"the loader accepts this config but the schema rejects it: {found}"
