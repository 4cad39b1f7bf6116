"""The README's first command: the demo, and format switching through the config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from collector.simulator import Simulator
from tests.cef_decoder import decode
from tests.conftest import config_dict, run_cli, write_config
from tests.ecs_validator import validate


@pytest.mark.parametrize("fmt", ["ecs", "cef", "raw"])
def test_demo_prints_events_and_matches_ground_truth(fmt: str) -> None:
    """demo needs no config, prints one valid event per line and says it matches the simulator."""
    result = run_cli("demo", "--format", fmt)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    shipped = int(re.search(r"(\d+) events shipped; matches", result.stderr).group(1))
    assert len(lines) == shipped > 300
    assert "split at the result cap" in result.stderr and "duplicates dropped" in result.stderr
    if fmt == "ecs":
        assert all(validate(json.loads(line)) == [] for line in lines)
    elif fmt == "cef":
        assert all(decode(line).extension["cs5"] in ("inbound", "outbound") for line in lines)
    else:
        assert all("tracked_email" in json.loads(line) for line in lines)


def test_demo_takes_watches_and_outputs_from_a_config(tmp_path: Path) -> None:
    """demo -c FILE uses that file's watches and outputs (here a CEF file output)."""
    out = tmp_path / "demo.cef"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "watches": [{"name": "held-only", "to": "example.com", "status": ["held"]}],
        "outputs": [{"name": "f", "format": "cef", "sink": {"type": "file", "path": str(out)}}]}))
    result = run_cli("demo", "-c", str(cfg))
    assert result.returncode == 0, result.stderr
    events = [decode(line) for line in out.read_text().splitlines()]
    assert events and all(e.extension["act"] == "held" for e in events)


@pytest.mark.parametrize("fmt", ["ecs", "cef", "raw"])
def test_once_file_output_format_is_switched_in_the_config(sim: Simulator, tmp_path: Path, fmt: str) -> None:
    """once writes ECS, CEF or raw to the file output as the config says."""
    out = tmp_path / "out.txt"
    data = config_dict(sim, tmp_path, outputs=[{"name": "f", "format": fmt, "sink": {"type": "file", "path": str(out)}}])
    result = run_cli("once", "-c", str(write_config(tmp_path, data)))
    assert result.returncode == 0, result.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 100
    first = lines[0]
    if fmt == "ecs":
        assert validate(json.loads(first)) == [] and json.loads(first)["ecs"]["version"] == "9.4.0"
    elif fmt == "cef":
        assert decode(first).vendor == "Mimecast"
    else:
        assert "tracked_email" in json.loads(first)
