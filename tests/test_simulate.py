"""``simulator`` served on a port, ``run -c`` against it, a Prometheus scrape, and ``search`` beside the daemon."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import ROOT, run_cli
from tests.rsyslog import free_port

_ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _collector(*args: str, stdout: int | None = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "collector", *args], cwd=ROOT, env=_ENV, text=True,
                            stdout=stdout, stderr=subprocess.PIPE)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate(timeout=10)
    return proc.returncode, err


def _read_block(proc: subprocess.Popen[str]) -> str:
    """What the simulator printed before it waits for a signal: the ``mimecast:`` block and a comment."""
    assert proc.stdout is not None
    text, deadline = "", time.monotonic() + 20
    while "# " not in text and time.monotonic() < deadline and proc.poll() is None:
        ready, _w, _x = select.select([proc.stdout], [], [], 0.5)
        if ready:
            text += os.read(proc.stdout.fileno(), 4096).decode()
    assert "# " in text, f"the simulator printed no configuration block: {text!r}"
    return text


@pytest.fixture(name="served")
def _served() -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = _collector("simulator", "--port", "0", "--density", "5", "--cap", "50", "--quota", "200/0.05")
    try:
        yield proc, _read_block(proc)
    finally:
        _stop(proc)


def _metrics(port: int) -> str:
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return ""


def _snapshot(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in state.parent.iterdir() if p.name.startswith(state.name)}


def test_simulator_run_scrape_and_search_beside_the_daemon(served: tuple[subprocess.Popen[str], str],
                                                           tmp_path: Path) -> None:
    sim, block = served
    mimecast = yaml.safe_load(block)["mimecast"]
    assert mimecast["base_url"].startswith("http://127.0.0.1:")
    port, state = free_port(), tmp_path / "state.db"
    config = {"collection": {"interval": "1h", "initial_lookback": "2h", "result_cap": 50, "state_file": str(state)},
              "watches": [{"name": "inbound", "to": "example.com"}],
              "outputs": [{"name": "archive", "format": "ecs",
                           "sink": {"type": "file", "path": str(tmp_path / "a.ndjson")}}],
              "metrics": {"listen": f"127.0.0.1:{port}"}, "logging": {"level": "warning", "format": "json"}}
    cfg = tmp_path / "config.yaml"
    # As the README shows: the simulator's own output, with the rest of a configuration appended.
    cfg.write_text(block + yaml.safe_dump(config), encoding="utf-8")
    daemon = _collector("run", "-c", str(cfg), stdout=subprocess.DEVNULL)
    try:
        deadline, text = time.monotonic() + 30, ""
        while 'poll_runs_total{outcome="success",watch="inbound"} 1.0' not in text and time.monotonic() < deadline:
            assert daemon.poll() is None, "the daemon ended"
            time.sleep(0.1)
            text = _metrics(port)
        assert 'poll_runs_total{outcome="success",watch="inbound"} 1.0' in text, text[-2000:]
        shipped = (tmp_path / "a.ndjson").read_text(encoding="utf-8").count("\n")
        assert shipped > 0
        before, own = _snapshot(state), (tmp_path / "a.ndjson").read_bytes()
        # A backfill of the daemon's own output while it runs: into a file beside the daemon's.
        found = run_cli("search", "-c", str(cfg), "--watch", "inbound", "--since", "1d", "--output", "archive",
                        timeout=60)
        assert found.returncode == 0, found.stderr
        assert _snapshot(state) == before, "search changed the daemon's checkpoint"
        assert (tmp_path / "a.ndjson").read_bytes() == own, "search wrote into the daemon's file"
        [backfill] = tmp_path.glob("a.backfill-*.ndjson")
        assert backfill.read_text(encoding="utf-8").count("\n") > shipped
        assert daemon.poll() is None, "the daemon stopped while search ran"
    finally:
        code, err = _stop(daemon)
    assert code == 0, err
    code, err = _stop(sim)
    assert code == 0, err
    assert "answered" in err


def test_simulator_refuses_bad_knobs() -> None:
    done = run_cli("simulator", "--port", "0", "--quota", "lots", timeout=30)
    assert done.returncode == 78
    assert "--quota" in done.stderr
    for knobs, named in ((("--step", "1h:10m"), "--step"), (("--step", "40d:10m:5"), "--step 40d:10m:5"),
                         (("--held", "1.5"), "--held"), (("--held", "0.1", "--hold-delay", "5m-2x"), "'2x'"),
                         (("--late", "0.1", "--late-max", "0s"), "--late")):
        done = run_cli("simulator", "--port", "0", *knobs, timeout=30)
        assert done.returncode == 78 and named in done.stderr, (knobs, done.stderr)


def _search(base_url: str, since: timedelta, until: timedelta) -> list[dict[str, object]]:
    """What one search of ``[now - since, now - until)`` for ``to: example.com`` answers."""
    token = requests.post(f"{base_url}/oauth/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-client-secret",
    }).json()["access_token"]
    now = datetime.now(timezone.utc)
    answer = requests.post(f"{base_url}/api/tracking/search", timeout=30, headers={"Authorization": f"Bearer {token}"},
                           json={"data": [{"start": (now - since).strftime("%Y-%m-%dT%H:%M:%S+0000"),
                                           "end": (now - until).strftime("%Y-%m-%dT%H:%M:%S+0000"),
                                           "advancedTrackAndTraceOptions": {"to": "example.com"}}]})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"][0]["trackedEmails"]


def test_simulator_serves_pending_holds_late_mail_and_a_density_step() -> None:
    """``--pending 1`` holds every message, ``--late 1`` hides the freshest mail, ``--step`` adds a dense
    stretch, all over the port the command serves."""
    proc = _collector("simulator", "--port", "0", "--density", "100", "--cap", "10000", "--pending", "1",
                      "--late", "1", "--late-max", "10m", "--step", "2h:10m:3000")
    try:
        base_url = yaml.safe_load(_read_block(proc))["mimecast"]["base_url"]
        dense = _search(base_url, timedelta(minutes=118), timedelta(minutes=113))
        quiet = _search(base_url, timedelta(minutes=170), timedelta(minutes=165))
        settled = _search(base_url, timedelta(minutes=40), timedelta(minutes=30))
        fresh = _search(base_url, timedelta(minutes=10), timedelta(0))
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    assert {e["status"] for e in dense + quiet + settled + fresh} == {"held"}
    assert len(dense) > 20 * len(quiet) > 0, (len(dense), len(quiet))
    assert 0.25 < len(fresh) / len(settled) < 0.75, (len(fresh), len(settled))  # about half is indexed yet
