"""config.schema.json: generated from the models, printed by check-config --schema, true to the loader."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from pydantic_core import PydanticUndefined

from collector.config import parse_config
from collector.config.document import Config
from collector.config.schema import _models, json_schema
from tests.conftest import ROOT, run_cli, write_config
from tests.schema_check import SCHEMA_FILE, schema_problems
from tests.test_config import base, check_three_mistakes


def test_schema_file_is_what_check_config_prints() -> None:
    """`check-config --schema` prints config.schema.json exactly, without reading any configuration."""
    result = run_cli("check-config", "--schema", "-c", "/nonexistent/config.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout == SCHEMA_FILE.read_text(encoding="utf-8")
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def _keys(node: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        for key, value in (node.get("properties") or {}).items():
            found.append((f"{where}.{key}", value))
        for key, value in node.items():
            found += _keys(value, f"{where}/{key}")
    elif isinstance(node, list):
        for value in node:
            found += _keys(value, where)
    return found


def test_every_key_has_a_description_and_an_example() -> None:
    """Editors show a description and an example for every key, and the example passes the key's schema."""
    keys = _keys(json_schema())
    assert len(keys) > 60
    root = json_schema()
    for where, prop in keys:
        assert prop.get("description"), where
        assert prop.get("examples"), where
        for example in prop["examples"]:
            sub = {**root, **{k: v for k, v in prop.items() if k not in ("examples", "default")}}
            sub.pop("properties", None), sub.pop("required", None), sub.pop("additionalProperties", None)
            sub.pop("type", None)
            assert not list(Draft202012Validator(sub).iter_errors(example)), (where, example)


def test_every_fixed_default_is_in_the_schema() -> None:
    """A key with a fixed default shows it (metrics listens on 127.0.0.1:9464 unless told otherwise)."""
    schema = json_schema()
    missing = []
    for model in _models(Config):
        node = schema if model is Config else schema["$defs"][model.__name__]
        for name, field in model.__pydantic_fields__.items():
            key = field.alias or name
            fixed = field.init is not False and field.default is not PydanticUndefined
            if fixed and "default" not in node["properties"][key]:
                missing.append(f"{model.__name__}.{key}")
    assert missing == []
    assert schema["properties"]["metrics"]["default"] == {"listen": "127.0.0.1:9464"}


def test_example_config_names_the_schema_and_passes_it() -> None:
    """config.example.yaml starts with the yaml-language-server line and validates against the schema."""
    text = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=config.schema.json"
    assert schema_problems(yaml.safe_load(text)) == []


def test_schema_rejects_what_an_editor_should_flag(tmp_path: Path) -> None:
    """A misspelt key, a wrong type and an unknown choice are flagged by the schema as by the loader."""
    for mutate in (lambda d: d["collection"].update(windw="5m"), lambda d: d["mimecast"].update(retries="five"),
                   lambda d: d["outputs"][0].update(format="xml"), lambda d: d["watches"][0].pop("name"),
                   lambda d: d["mimecast"].update(quota_reserve=-1), lambda d: d["collection"].update(lag="5 min")):
        data = base(tmp_path)
        mutate(data)
        assert schema_problems(data), data


def test_env_references_pass_the_schema_wherever_a_string_goes(tmp_path: Path) -> None:
    """`${VAR}` in a duration, a choice, a name or a path passes both the loader (with VAR set) and the schema."""
    data = base(tmp_path)
    data["collection"].update(interval="${INTERVAL}", lag="${LAG:-1m}")
    data["outputs"][0].update(format="${FORMAT}", name="${OUTPUT_NAME}")
    data["mimecast"].update(quota_reserve="${RESERVE}", proxy="${PROXY}")
    data["logging"] = {"level": "${LEVEL:-info}"}
    env = {"INTERVAL": "90s", "FORMAT": "cef", "OUTPUT_NAME": "siem", "RESERVE": "5%", "PROXY": "http://p:3128",
           "LEVEL": "debug"}
    config = parse_config(data, env=env, base_dir=tmp_path)
    assert (config.collection.interval.total_seconds(), config.outputs[0].format) == (90, "cef")
    assert config.mimecast.quota_reserve.of(100) == 5
    assert schema_problems(data) == []


def test_readme_three_mistakes_are_printed_byte_for_byte(tmp_path: Path) -> None:
    """The error listing in docs/configuration.md is exactly what check-config prints."""
    readme = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    shown = re.search(r"```\n(mimecast-collector: configuration is invalid \(3 problems\):\n.*?)```", readme,
                      re.S)
    assert shown
    result = check_three_mistakes(tmp_path)
    assert result.returncode == 78
    assert result.stdout == ""
    assert result.stderr == shown.group(1)
