"""Shared fixtures: a real simulator on loopback and configs written as real YAML files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from collector.config import Config, load_config
from collector.metrics import Metrics
from collector.simulator import Credentials, MailFlow, Simulator
from tests.schema_check import assert_schema_accepts_if_valid

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


def utcnow() -> datetime:
    """The current time in UTC, to the whole second."""
    return datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _no_receiver_left_behind() -> Iterator[None]:
    """Whatever a test did, every rsyslogd it started is stopped when it ends."""
    yield
    from tests.rsyslog import Rsyslog

    Rsyslog.stop_all()


@pytest.fixture(name="now")
def _now() -> datetime:
    return utcnow()


@pytest.fixture(name="flow")
def _flow(now: datetime) -> MailFlow:
    return MailFlow(seed=42, start=now - timedelta(hours=3), end=now, count=900)


@pytest.fixture(name="sim")
def _sim(flow: MailFlow) -> Iterator[Simulator]:
    with Simulator(flow, cap=1000) as sim:
        yield sim


@pytest.fixture(name="metrics")
def _metrics() -> Metrics:
    return Metrics(CollectorRegistry(), process=False)


def config_dict(sim: Simulator, tmp_path: Path, *, auth: str = "oauth2", **sections: Any) -> dict[str, Any]:
    """A complete configuration for ``sim`` as a plain dict; ``sections`` override whole keys."""
    creds: Credentials = sim.credentials
    auth_block = ({"type": "oauth2", "client_id": creds.client_id, "client_secret": creds.client_secret}
                  if auth == "oauth2" else
                  {"type": "hmac", "app_id": creds.app_id, "app_key": creds.app_key,
                   "access_key": creds.access_key, "secret_key": creds.secret_key})
    data: dict[str, Any] = {
        "mimecast": {"base_url": sim.base_url, "auth": auth_block, "timeout": "5s", "retries": 3,
                     "backoff_initial": "0s", "backoff_max": "0s"},
        "collection": {"interval": "1m", "window": "15m", "lag": "0s", "settle": "10m",
                       "initial_lookback": "4h", "result_cap": 1000, "state_file": str(tmp_path / "state.json")},
        "watches": [{"name": "inbound", "to": "example.com"}],
        "outputs": [{"name": "archive", "format": "raw", "sink": {"type": "file", "path": str(tmp_path / "out.ndjson")}}],
        "metrics": {"listen": None},
        "logging": {"level": "debug", "format": "json"},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def write_config(tmp_path: Path, data: dict[str, Any], name: str = "config.yaml") -> Path:
    """Write ``data`` as YAML and return its path."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert_schema_accepts_if_valid(data, tmp_path)
    return path


def make_config(sim: Simulator, tmp_path: Path, **kwargs: Any) -> Config:
    """Write and load a configuration for ``sim`` through the real loader."""
    return load_config(write_config(tmp_path, config_dict(sim, tmp_path, **kwargs)), env={})


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m collector`` as a real process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd or ROOT, check=False)
