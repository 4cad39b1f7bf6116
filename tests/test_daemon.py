"""The collector as a real process: crashes, signals, systemd notifications, metrics, locking."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from collector.simulator import Fault, Filter, MailFlow, Simulator
from tests.conftest import ROOT, config_dict, run_cli, write_config
from tests.statedb import read_state

FLT = Filter(to="example.com")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition", every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class Daemon:
    """A collector process whose output goes to files (a full pipe would block it)."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log = tmp_path / f"collector-{time.monotonic_ns()}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "collector", *args], cwd=ROOT, text=True,
                                         stdout=subprocess.DEVNULL, stderr=log,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> str:
        """Wait for exit; return what it logged."""
        self.proc.wait(timeout=timeout)
        return self.log.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def keys_in(path: Path) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        email = json.loads(line)["tracked_email"]
        found[(email["id"], email["status"])] += 1
    return found


@pytest.fixture(name="steady")
def _steady(now: datetime) -> Iterator[Simulator]:
    """A simulator whose statuses do not change while the test runs."""
    flow = MailFlow(seed=11, start=now - timedelta(hours=3, minutes=50), end=now - timedelta(minutes=10), count=5000)
    with Simulator(flow, cap=10_000, clock=lambda: now) as sim:
        yield sim


def test_sigkill_in_the_middle_of_a_chunk_loses_and_duplicates_nothing(steady: Simulator, tmp_path: Path,
                                                                         now: datetime) -> None:
    """Killed while one output is written and the other blocks, the restart leaves every event exactly once."""
    fifo = tmp_path / "blocked.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # present but never reading: the writer blocks when full
    out = tmp_path / "out.ndjson"
    outputs = [{"name": "archive", "format": "raw", "sink": {"type": "file", "path": str(out)}},
               {"name": "second", "format": "raw", "sink": {"type": "file", "path": str(fifo)}}]
    cfg = write_config(tmp_path, config_dict(steady, tmp_path, outputs=outputs))
    proc = Daemon(tmp_path, "once", "-c", str(cfg))
    try:
        wait_for(lambda: out.exists() and out.stat().st_size > 0, what="the first output to be written")
        time.sleep(0.3)
        state = read_state(tmp_path / "state.json")
        committed = state["outputs"]["archive"]["size"]
        assert out.stat().st_size > committed, "the kill lands after a write and before its commit"
        proc.signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        os.close(reader)
    outputs[1]["sink"]["path"] = str(tmp_path / "second.ndjson")
    write_config(tmp_path, config_dict(steady, tmp_path, outputs=outputs))
    result = run_cli("once", "-c", str(cfg))
    assert result.returncode == 0, result.stderr
    assert "uncommitted_tail_removed" in result.stderr
    expected = steady.flow.ground_truth(FLT, steady.flow.start, steady.flow.end, now)
    got = keys_in(out)
    assert set(got) == expected and max(got.values()) == 1
    after_restart = keys_in(tmp_path / "second.ndjson")
    assert after_restart and set(after_restart) < expected and max(after_restart.values()) == 1


def test_run_serves_metrics_notifies_systemd_and_stops_cleanly_on_sigterm(steady: Simulator, tmp_path: Path) -> None:
    """run: READY, watchdog pings, /metrics during the run, a second instance refused, SIGTERM exits 0 with state."""
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(20)
    port = free_port()
    cfg = write_config(tmp_path, config_dict(steady, tmp_path, metrics={"listen": f"127.0.0.1:{port}"},
                                             collection={"interval": "10s"}))
    proc = Daemon(tmp_path, "run", "-c", str(cfg), env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"})
    try:
        messages = [notify.recv(4096).decode()]
        assert messages[0].startswith("READY=1")
        messages.append(notify.recv(4096).decode())
        assert messages[1] == "WATCHDOG=1"
        scrape = wait_for(lambda: _scrape_with(port, 'outcome="success"'), what="a successful poll in /metrics")
        for name in ("mimecast_collector_events_total", "mimecast_collector_api_requests_total",
                     "mimecast_collector_api_request_duration_seconds_bucket", "mimecast_collector_build_info",
                     "mimecast_collector_watermark_timestamp_seconds", "mimecast_collector_last_success_timestamp_seconds",
                     "process_resident_memory_bytes"):
            assert name in scrape, name
        second = run_cli("once", "-c", str(cfg))
        assert second.returncode == 1 and "in use by another mimecast-collector" in second.stderr
        began = time.monotonic()
        proc.signal(signal.SIGTERM)
        stderr = proc.wait()
        assert proc.proc.returncode == 0, stderr
        assert time.monotonic() - began < 15
        while True:
            message = notify.recv(4096).decode()
            if message.startswith("STOPPING=1"):
                break
    finally:
        proc.kill()
        notify.close()
    state = read_state(tmp_path / "state.json")
    assert state["watches"]["inbound"]["watermark"]
    assert '"event": "collector.stopped"' in stderr or '"event":"collector.stopped"' in stderr.replace(" ", "")
    tokens = {r.headers.get("authorization", "")[7:] for r in steady.searches()} - {""}
    assert tokens and not any(t in stderr for t in tokens)
    assert steady.credentials.client_secret not in stderr


def _scrape_with(port: int, needle: str) -> str | None:
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return None
    return text if needle in text else None


def test_sigterm_during_a_long_rate_limit_wait_exits_promptly(steady: Simulator, tmp_path: Path) -> None:
    """A 429 asking for two minutes does not hold up shutdown, and nothing is committed."""
    steady.inject(Fault("rate_limit", reset_ms=120_000))
    cfg = write_config(tmp_path, config_dict(steady, tmp_path))
    proc = Daemon(tmp_path, "run", "-c", str(cfg))
    try:
        wait_for(lambda: any(r.status == 429 for r in steady.searches()), what="the 429")
        time.sleep(0.3)
        began = time.monotonic()
        proc.signal(signal.SIGTERM)
        stderr = proc.wait()
    finally:
        proc.kill()
    assert proc.proc.returncode == 0, stderr
    assert time.monotonic() - began < 10
    assert "mimecast.rate_limited" in stderr
    assert '"poll.failed"' not in stderr, "a shutdown during a wait interrupts the poll; it is not a failure"
    assert read_state(tmp_path / "state.json")["watches"] == {}


def test_corrupt_state_stops_start_and_state_reset_recovers(steady: Simulator, tmp_path: Path) -> None:
    """A corrupt checkpoint exits 65 naming `state reset`; the reset keeps the file aside; the next run works."""
    cfg = write_config(tmp_path, config_dict(steady, tmp_path))
    (tmp_path / "state.json").write_text("{garbage")
    result = run_cli("once", "-c", str(cfg))
    assert result.returncode == 65 and "mimecast-collector state reset" in result.stderr
    assert "Traceback" not in result.stderr
    assert run_cli("state", "reset", "-c", str(cfg)).returncode == 0
    assert list(tmp_path.glob("state.json.corrupt-*"))
    assert run_cli("once", "-c", str(cfg)).returncode == 0
    shown = json.loads(run_cli("state", "show", "-c", str(cfg)).stdout)
    assert shown["watches"]["inbound"]["watermark"]
    # Keys are forgotten an overlap after the last search that found them: the last chunks' keys are remembered.
    assert shown["watches"]["inbound"]["remembered_keys"] > 0
    assert run_cli("state", "reset", "--watch", "inbound", "-c", str(cfg)).returncode == 0
    assert json.loads(run_cli("state", "show", "-c", str(cfg)).stdout)["watches"]["inbound"]["watermark"] is None


def test_once_exits_non_zero_when_a_watch_fails(steady: Simulator, tmp_path: Path) -> None:
    """Bad credentials fail the watch: once says why and exits 1."""
    data = config_dict(steady, tmp_path)
    data["mimecast"]["auth"]["client_secret"] = "wrong"
    result = run_cli("once", "-c", str(write_config(tmp_path, data)))
    assert result.returncode == 1
    assert "inbound: 0 events shipped" in result.stderr and "FAILED (auth" in result.stderr


def test_once_watch_selects_one_watch(steady: Simulator, tmp_path: Path) -> None:
    """--watch polls only that watch; an unknown name is a config error."""
    data = config_dict(steady, tmp_path, watches=[{"name": "a", "to": "example.com"}, {"name": "b", "from": "x.test"}])
    cfg = write_config(tmp_path, data)
    result = run_cli("once", "--watch", "b", "-c", str(cfg))
    assert result.returncode == 0 and result.stderr.count("events shipped") == 1 and "b: " in result.stderr
    assert run_cli("once", "--watch", "zz", "-c", str(cfg)).returncode == 78


def test_reload_reopens_the_file_output_after_rotation(steady: Simulator, tmp_path: Path) -> None:
    """logrotate moves the file away and runs reload (SIGHUP): the next delivery writes a new file at the path."""
    cfg = write_config(tmp_path, config_dict(steady, tmp_path, collection={"interval": "10s"},
                                             logging={"level": "info"}))
    out = tmp_path / "out.ndjson"
    daemon = Daemon(tmp_path, "run", "-c", str(cfg))
    try:
        wait_for(lambda: out.exists() and out.stat().st_size > 0, what="the first poll")
        wait_for(lambda: read_state(tmp_path / "state.json")["watches"], what="the first commit")
        out.rename(tmp_path / "out.ndjson.1")
        reload = run_cli("reload", "-c", str(cfg))  # finds the running collector through the state lock
        assert reload.returncode == 0, reload.stderr
        wait_for(lambda: out.exists(), timeout=30, what="the reopened file")
        wait_for(lambda: read_state(tmp_path / "state.json")["outputs"]["archive"]["inode"]
                 == out.stat().st_ino, timeout=30, what="the checkpoint to record the new file")
    finally:
        daemon.signal(signal.SIGTERM)
        log = daemon.wait()
        daemon.kill()
    assert '"sinks.reopened"' in log and daemon.proc.returncode == 0
    before, after = keys_in(tmp_path / "out.ndjson.1"), keys_in(out)
    assert before and not set(before) & set(after), "the reopen happens between chunks: no event in both files"


def test_once_on_a_terminal_shows_a_progress_bar(steady: Simulator, tmp_path: Path) -> None:
    """With stderr on a terminal, a catch-up of many windows draws a progress bar."""
    import pty

    cfg = write_config(tmp_path, config_dict(steady, tmp_path, logging={"level": "warning"}))
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "collector", "once", "-c", str(cfg)], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = screen.decode(errors="replace")
    assert "\rinbound: [" in text and "] 100% " in text
    assert "inbound: " in text and "events shipped" in text


def test_reload_without_a_running_collector_says_so(steady: Simulator, tmp_path: Path) -> None:
    """reload finds no lock holder and exits 1 with a plain message; --pid refuses a process that is not ours."""
    cfg = write_config(tmp_path, config_dict(steady, tmp_path))
    result = run_cli("reload", "-c", str(cfg))
    assert result.returncode == 1 and "no collector is running" in result.stderr
    with subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGHUP, "
                           "lambda *a: exit(7)); print('ready', flush=True); time.sleep(30)"],
                          stdout=subprocess.PIPE, text=True) as sleeper:
        assert sleeper.stdout is not None and sleeper.stdout.readline() == "ready\n", "the handler is installed"
        result = run_cli("reload", "--pid", str(sleeper.pid))
        assert result.returncode == 1 and "it is not a mimecast-collector" in result.stderr
        time.sleep(0.5)
        assert sleeper.poll() is None, "the process was signalled"
        sleeper.kill()


def test_sigterm_with_an_output_blocked_in_write_exits_within_the_shutdown_timeout(
        steady: Simulator, tmp_path: Path, now: datetime) -> None:
    """A FIFO output whose reader stopped reading blocks a poll in write(): SIGTERM still ends the process
    within collection.shutdown_timeout, exit 75, saying where it was blocked; the next start delivers it all."""
    fifo = tmp_path / "stalled.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    out = tmp_path / "out.ndjson"
    outputs = [{"name": "archive", "format": "raw", "sink": {"type": "file", "path": str(out)}},
               {"name": "pipe", "format": "raw", "sink": {"type": "file", "path": str(fifo)}}]
    cfg = write_config(tmp_path, config_dict(steady, tmp_path, outputs=outputs,
                                             collection={"shutdown_timeout": "3s", "window": "5m"}))
    daemon = Daemon(tmp_path, "run", "-c", str(cfg))
    try:
        wait_for(lambda: _read_some(reader), what="the first events in the pipe")  # then it stops reading
        time.sleep(1.5)
        assert daemon.proc.poll() is None
        began = time.monotonic()
        daemon.signal(signal.SIGTERM)
        log = daemon.wait(timeout=30)
        took = time.monotonic() - began
    finally:
        daemon.kill()
        os.close(reader)
    assert daemon.proc.returncode == 75, log
    assert 3 <= took < 10, took  # the timeout, plus a start-up margin on a loaded machine
    [line] = [json.loads(x) for x in log.splitlines() if '"collector.shutdown_timeout"' in x]
    assert line["exit_status"] == 75 and line["timeout_s"] == 3 and "inbound" in line["polls_running_s"]
    assert any("collector/sinks/file.py" in where or "collector/fileio.py" in where for where in line["blocked_in"])
    outputs[1]["sink"]["path"] = str(tmp_path / "pipe.ndjson")
    write_config(tmp_path, config_dict(steady, tmp_path, outputs=outputs))
    result = run_cli("once", "-c", str(cfg))
    assert result.returncode == 0, result.stderr
    expected = steady.flow.ground_truth(FLT, steady.flow.start, steady.flow.end, now)
    got = keys_in(out)
    assert set(got) == expected and max(got.values()) == 1


def _read_some(fd: int) -> bool:
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return False


def _lock_seen(lock: Path) -> str | None:
    """What a reader finds in the lock file while it is held (None while nobody holds it)."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 64, 0).decode()
    else:
        return None
    finally:
        os.close(fd)


def test_sighup_as_soon_as_the_pid_shows_never_kills_a_starting_collector(steady: Simulator, tmp_path: Path) -> None:
    """Start after start, SIGHUP lands the moment the lock shows the pid (as a reload during start-up would):
    no start dies of it (129), and whoever finds the lock held reads the holder's whole pid, never an empty
    file or the pid of the collector before."""
    from collector.state.lock import lock_holder

    cfg = write_config(tmp_path, config_dict(steady, tmp_path, collection={"interval": "10s"},
                                             logging={"level": "info"}))
    lock = tmp_path / "state.json.lock"
    seen: Counter[str] = Counter()
    for _ in range(8):
        daemon = Daemon(tmp_path, "run", "-c", str(cfg))
        try:
            expected = f"{daemon.proc.pid}\n"
            while (found := _lock_seen(lock)) is None:
                assert daemon.proc.poll() is None, daemon.log.read_text()
            daemon.signal(signal.SIGHUP)
            seen[found == expected] += 1
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                found = _lock_seen(lock)
                if found is not None:
                    seen[found == expected] += 1
                    assert lock_holder(lock) in (daemon.proc.pid, None)
            wait_for(lambda: "collector.started" in daemon.log.read_text(), what="the collector to start")
            assert daemon.proc.poll() is None, daemon.log.read_text()
            daemon.signal(signal.SIGTERM)
            log = daemon.wait()
        finally:
            daemon.kill()
        assert daemon.proc.returncode == 0, (daemon.proc.returncode, log)
    assert seen[True] >= 8 and seen[False] == 0, seen
