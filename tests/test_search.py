"""``search``: a span searched completely, oldest first, once; refusals; interruption and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.cli import main
from collector.simulator import Filter, MailFlow, Simulator
from tests.conftest import ROOT, config_dict, run_cli, utcnow, write_config
from tests.rsyslog import Rsyslog, require_rsyslog

NOW = utcnow()
# The simulator's clock stands still, so every status is the one the ground truth computes.
AT = NOW
START, END = NOW - timedelta(days=7), NOW - timedelta(minutes=5)
SPARSE = MailFlow(seed=21, start=NOW - timedelta(days=8), end=NOW, count=1500)
DENSE = MailFlow(seed=22, start=NOW - timedelta(days=8), end=NOW, count=12000)


def _sample(flow: MailFlow) -> Any:
    return next(m for m in flow.between(START + timedelta(days=1), END) if m.route == "inbound")


# (search options, the filter Mimecast applies, statuses and routes kept client-side)
def _cases(flow: MailFlow) -> dict[str, tuple[list[str], Filter, set[str], set[str]]]:
    one = _sample(flow)
    return {
        "to": (["--to", "example.com"], Filter(to="example.com"), set(), set()),
        "from": (["--from", "example.org"], Filter(from_="example.org"), set(), set()),
        "subject": (["--subject", "invoice"], Filter(subject="invoice"), set(), set()),
        "sender_ip": (["--sender-ip", one.sender_ip], Filter(sender_ip=one.sender_ip), set(), set()),
        "message_id": (["--message-id", one.message_id], Filter(message_id=one.message_id), set(), set()),
        "status": (["--to", "example.com", "--status", "held"], Filter(to="example.com"), {"held"}, set()),
        "route": (["--from", "example.com", "--route", "outbound"], Filter(from_="example.com"), set(), {"outbound"}),
        "combined": (["--to", "example.com", "--subject", "re", "--status", "archived", "--status", "delivery",
                      "--route", "inbound"], Filter(to="example.com", subject="re"), {"archived", "delivery"},
                     {"inbound"}),
    }


def truth(flow: MailFlow, flt: Filter, statuses: set[str] = frozenset(), routes: set[str] = frozenset(),
          start: datetime = START, end: datetime = END) -> set[tuple[str, str]]:
    """What a complete search finds: the simulator's ground truth, less what the client-side filters drop."""
    return {(m.id, s) for m, s, _i in flow.visible(flt, start, end, AT)
            if (not statuses or s in statuses) and (not routes or m.route in routes)}


def read_raw(lines: list[str]) -> list[dict[str, Any]]:
    """The tracked emails of raw events, in the order written."""
    return [json.loads(line)["tracked_email"] for line in lines]


def keys_in_order(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The keys, after checking that the records are oldest first."""
    received = [r["received"] for r in records]
    assert received == sorted(received), "events are not oldest first"
    return [(r["id"], r["status"]) for r in records]


def sim_config(tmp_path: Path, sim: Simulator, **sections: Any) -> Path:
    data = config_dict(sim, tmp_path, collection={"result_cap": 40, "window": "1h", "lag": "0s"},
                       logging={"level": "warning", "format": "json"}, **sections)
    return write_config(tmp_path, data)


def span_args() -> list[str]:
    return ["--start", START.isoformat(), "--end", END.isoformat()]


@pytest.fixture(name="sparse")
def _sparse() -> Iterator[Simulator]:
    with Simulator(SPARSE, cap=40, clock=lambda: AT) as sim:
        yield sim


@pytest.mark.parametrize("case", list(_cases(SPARSE)))
def test_search_returns_the_ground_truth_in_order_once(sparse: Simulator, tmp_path: Path, case: str) -> None:
    options, flt, statuses, routes = _cases(SPARSE)[case]
    cfg = sim_config(tmp_path, sparse)
    done = run_cli("search", "-c", str(cfg), *options, *span_args(), "--format", "raw")
    assert done.returncode == 0, done.stderr
    assert "completely" in done.stderr
    found = keys_in_order(read_raw(done.stdout.splitlines()))
    expected = truth(SPARSE, flt, statuses, routes)
    assert len(found) == len(set(found)), "an event was written twice"
    assert set(found) == expected
    assert expected, "the case must find something to prove anything"


@pytest.mark.parametrize("case", ["to", "combined"])
def test_search_at_a_higher_density_splits_and_still_matches(tmp_path: Path, case: str) -> None:
    options, flt, statuses, routes = _cases(DENSE)[case]
    with Simulator(DENSE, cap=40, clock=lambda: AT) as sim:
        out = tmp_path / "found.ndjson"
        done = run_cli("search", "-c", str(sim_config(tmp_path, sim)), *options, *span_args(), "--format", "raw",
                       "-o", str(out))
        assert done.returncode == 0, done.stderr
    found = keys_in_order(read_raw(out.read_text(encoding="utf-8").splitlines()))
    assert len(found) == len(set(found))
    assert set(found) == truth(DENSE, flt, statuses, routes)
    assert done.stdout == ""


def test_backfill_into_a_file_of_its_own(sparse: Simulator, tmp_path: Path) -> None:
    out = tmp_path / "backfill.ndjson"
    cfg = sim_config(tmp_path, sparse)
    done = run_cli("search", "-c", str(cfg), "--watch", "inbound", *span_args(), "--format", "raw", "-o", str(out))
    assert done.returncode == 0, done.stderr
    found = keys_in_order(read_raw(out.read_text(encoding="utf-8").splitlines()))
    assert sorted(found) == sorted(truth(SPARSE, Filter(to="example.com")))
    assert not (tmp_path / "state.json").exists(), "search touched the daemon's checkpoint"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_backfill_into_a_file_output_writes_beside_the_daemons_file(sparse: Simulator, tmp_path: Path) -> None:
    cfg = sim_config(tmp_path, sparse)
    daemon = run_cli("once", "-c", str(cfg))
    assert daemon.returncode == 0, daemon.stderr
    assert (tmp_path / "out.ndjson").stat().st_size > 0, "the daemon's own file must hold something to protect"
    before = _files(tmp_path)
    done = run_cli("search", "-c", str(cfg), "--watch", "inbound", *span_args(), "--output", "archive")
    assert done.returncode == 0, done.stderr
    [backfill] = [p for p in tmp_path.glob("out.backfill-*.ndjson")]
    assert str(backfill) in done.stderr, "search must say where the backfill went"
    found = keys_in_order(read_raw(backfill.read_text(encoding="utf-8").splitlines()))
    assert len(found) == len(set(found))
    assert set(found) == truth(SPARSE, Filter(to="example.com"))
    after = _files(tmp_path)
    assert {name: after[name] for name in before} == before, "search changed the daemon's file or checkpoint"
    # The daemon's next start checks its own file against its checkpoint and leaves the backfill alone.
    again = run_cli("once", "-c", str(cfg))
    assert again.returncode == 0, again.stderr
    assert backfill.read_bytes() == after[backfill.name]


@pytest.mark.rsyslog
def test_backfill_into_a_real_rsyslog(sparse: Simulator, tmp_path: Path) -> None:
    require_rsyslog()
    expected = truth(SPARSE, Filter(to="example.com"))
    with Rsyslog(tmp_path / "rsyslog") as server:
        cfg = sim_config(tmp_path, sparse, outputs=[{"name": "siem", "format": "raw", "sink": {
            "type": "syslog", "host": "127.0.0.1", "port": server.tcp_port, "transport": "tcp"}}])
        done = run_cli("search", "-c", str(cfg), "--watch", "inbound", *span_args(), "--output", "siem")
        assert done.returncode == 0, done.stderr
        messages = server.messages(expected=len(expected))
    bodies = [m["msg"].lstrip("\ufeff") for m in messages]
    found = keys_in_order(read_raw(bodies))
    assert sorted(found) == sorted(expected)


@pytest.mark.parametrize(("options", "says"), [
    (["--to", "example.com", "--since", "31d"], "--since"),
    (["--to", "example.com", "--since", "30d"], "30 days"),
    (["--since", "3d"], "give at least one filter"),
    (["--since", "3d", "--status", "held"], "give at least one filter"),
    (["--watch", "nope", "--since", "3d"], "no watch named 'nope'"),
    (["--to", "example.com", "--since", "3d", "--output", "nope"], "no output named 'nope'"),
    (["--to", "example.com", "--start", "2020-01-01T00:00:00Z"], "30 days"),
    (["--to", "example.com", "--start", (NOW - timedelta(hours=1)).isoformat(),
      "--end", (NOW - timedelta(hours=2)).isoformat()], "empty"),
])
def test_refusals_exit_78_before_any_request(sparse: Simulator, tmp_path: Path, options: list[str], says: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = sim_config(tmp_path, sparse)
    assert main(["search", "-c", str(cfg), *options]) == 78
    assert says in capsys.readouterr().err
    assert list(sparse.requests) == [], "a refused search must not reach Mimecast"


def _start_search(cfg: Path, out: Path | None, resume: Path) -> subprocess.Popen[str]:
    """A search into ``out``, or into the configured file output (its backfill file) when ``out`` is None."""
    where = ["--format", "raw", "-o", str(out)] if out else ["--output", "archive"]
    return subprocess.Popen([sys.executable, "-m", "collector", "search", "-c", str(cfg), "--to", "example.com",
                             *span_args(), *where, "--resume", str(resume)],
                            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_lines(path: Path, proc: subprocess.Popen[str], lines: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            return
        time.sleep(0.02)
    raise AssertionError(f"search wrote fewer than {lines} lines before it ended or 30 s passed")


def _wait_for_backfill(folder: Path, proc: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if found := list(folder.glob("out.backfill-*.ndjson")):
            return found[0]
        time.sleep(0.02)
    raise AssertionError("search created no backfill file beside the configured output's")


@pytest.mark.parametrize(("sig", "into"), [(signal.SIGTERM, "-o"), (signal.SIGKILL, "-o"),
                                           (signal.SIGKILL, "--output")])
def test_killed_search_resumes_to_the_full_set_exactly_once(tmp_path: Path, sig: int, into: str) -> None:
    expected = truth(DENSE, Filter(to="example.com"))
    with Simulator(DENSE, cap=40, clock=lambda: AT, latency=0.01) as sim:
        cfg = sim_config(tmp_path, sim)
        out, resume = tmp_path / "found.ndjson", tmp_path / "progress.db"
        proc = _start_search(cfg, out if into == "-o" else None, resume)
        try:
            if into == "--output":
                out = _wait_for_backfill(tmp_path, proc)
            _wait_for_lines(out, proc, len(expected) // 4)
            proc.send_signal(sig)
            _stdout, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
        if sig == signal.SIGTERM:
            assert proc.returncode == 130, stderr
            assert f"run it again with --resume {resume}" in stderr
            assert out.read_bytes().endswith(b"\n"), "an interrupted search left a partial line"
        else:
            assert proc.returncode == -signal.SIGKILL
        before = out.read_bytes().count(b"\n")
        assert 0 < before < len(expected), "the search was not interrupted mid-way"
        sim.latency = 0.0  # slow searches only let the signal land mid-way; the resumed search is not interrupted
        again = _start_search(cfg, out if into == "-o" else None, resume)
        _stdout, stderr = again.communicate(timeout=60)
        assert again.returncode == 0, stderr
    if into == "--output":
        assert list(tmp_path.glob("out.backfill-*.ndjson")) == [out], "a resumed backfill must keep its file"
    found = keys_in_order(read_raw(out.read_text(encoding="utf-8").splitlines()))
    assert len(found) == len(set(found)), "resuming wrote an event twice"
    assert set(found) == expected


def test_resume_refuses_another_search(sparse: Simulator, tmp_path: Path) -> None:
    cfg, resume = sim_config(tmp_path, sparse), tmp_path / "progress.db"
    first = run_cli("search", "-c", str(cfg), "--to", "example.com", *span_args(), "--resume", str(resume),
                    "-o", str(tmp_path / "a.ndjson"))
    assert first.returncode == 0, first.stderr
    other = run_cli("search", "-c", str(cfg), "--to", "example.org", *span_args(), "--resume", str(resume),
                    "-o", str(tmp_path / "a.ndjson"))
    assert other.returncode == 78
    assert "belongs to a search with other filters" in other.stderr


def test_sigterm_while_the_output_is_blocked_ends_the_search_within_the_shutdown_timeout(
        sparse: Simulator, tmp_path: Path) -> None:
    """search -o onto a FIFO whose reader stopped: SIGTERM still ends it within collection.shutdown_timeout,
    exit 75, naming where it was blocked."""
    fifo, resume = tmp_path / "stalled.fifo", tmp_path / "progress.db"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    cfg = write_config(tmp_path, config_dict(sparse, tmp_path, collection={"result_cap": 40, "window": "1h",
                                                                           "lag": "0s", "shutdown_timeout": "2s"},
                                             logging={"level": "warning", "format": "json"}))
    proc = _start_search(cfg, fifo, resume)
    try:
        deadline = time.monotonic() + 60
        while len(sparse.searches()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the pipe is full: the search is blocked in write
        assert proc.poll() is None
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        os.close(reader)
    assert proc.returncode == 75, stderr
    assert 2 <= took < 10, took  # the timeout, plus a margin on a loaded machine
    assert '"collector.shutdown_timeout"' in stderr and "collector/fileio.py" in stderr
