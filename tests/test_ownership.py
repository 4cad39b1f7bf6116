"""A file written under a checkpoint belongs to it: `search -o` refuses it, and no writer cuts another's bytes."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from collector.daemon import Collector
from collector.ownership import claim_path
from collector.simulator import Filter, MailFlow, Simulator
from tests.conftest import config_dict, make_config, run_cli, write_config
from tests.test_search import (
    AT, DENSE, SPARSE, _start_search, _wait_for_lines, keys_in_order, read_raw, sim_config, span_args, truth,
)


@pytest.fixture(name="sparse")
def _sparse() -> Iterator[Simulator]:
    with Simulator(SPARSE, cap=40, clock=lambda: AT) as sim:
        yield sim


def _one_line_refusal(done: object, *names: str) -> None:
    assert done.returncode == 78, done.stderr  # type: ignore[attr-defined]
    err = done.stderr.strip()  # type: ignore[attr-defined]
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for name in names:
        assert name in err, err


def test_search_refuses_the_daemons_file_output(sparse: Simulator, tmp_path: Path) -> None:
    """`search -o` onto the daemon's file output exits 78 naming the output and its checkpoint, before any
    request, and leaves the file as it was; so does the checkpoint itself."""
    cfg = sim_config(tmp_path, sparse)
    assert run_cli("once", "-c", str(cfg)).returncode == 0
    out, state = tmp_path / "out.ndjson", tmp_path / "state.json"
    before, asked = out.read_bytes(), len(sparse.requests)
    assert before, "the daemon's file must hold something to protect"
    done = run_cli("search", "-c", str(cfg), "--from", "example.org", *span_args(), "--format", "raw", "-o", str(out))
    _one_line_refusal(done, "output 'archive'", str(state), "--output archive")
    _one_line_refusal(run_cli("search", "-c", str(cfg), "--from", "example.org", *span_args(), "-o", str(state)),
                      "checkpoint")
    assert out.read_bytes() == before and len(sparse.requests) == asked


def test_search_refuses_a_file_only_the_daemons_checkpoint_still_claims(sparse: Simulator, tmp_path: Path) -> None:
    """An output removed from the configuration still has its mark in the checkpoint: the file is refused."""
    cfg = sim_config(tmp_path, sparse)
    assert run_cli("once", "-c", str(cfg)).returncode == 0
    renamed = config_dict(sparse, tmp_path, collection={"result_cap": 40, "window": "1h", "lag": "0s"},
                          outputs=[{"name": "elsewhere", "format": "raw",
                                    "sink": {"type": "file", "path": str(tmp_path / "new.ndjson")}}])
    cfg = write_config(tmp_path, renamed)
    done = run_cli("search", "-c", str(cfg), "--from", "example.org", *span_args(), "-o", str(tmp_path / "out.ndjson"))
    _one_line_refusal(done, "output 'archive' recorded in the collector's checkpoint")


def test_the_daemon_keeps_what_another_writer_appended_to_its_file(sparse: Simulator, tmp_path: Path) -> None:
    """A search the refusal cannot see (another configuration, another checkpoint) appends to the daemon's file:
    the daemon's next start keeps those events, says so and counts it, and ships its own after them."""
    cfg = sim_config(tmp_path, sparse)
    assert run_cli("once", "-c", str(cfg)).returncode == 0
    out = tmp_path / "out.ndjson"
    other = tmp_path / "other"
    other.mkdir()
    other_cfg = sim_config(other, sparse)
    done = run_cli("search", "-c", str(other_cfg), "--from", "example.org", *span_args(), "--format", "raw",
                   "-o", str(out))
    assert done.returncode == 0, done.stderr
    appended = out.read_bytes()
    again = run_cli("once", "-c", str(cfg))
    assert again.returncode == 0, again.stderr
    assert out.read_bytes().startswith(appended), "the daemon cut events another writer appended"
    assert "sink.file.foreign_tail_kept" in again.stderr


def test_a_resumed_search_keeps_what_another_search_appended(tmp_path: Path) -> None:
    """Search A is interrupted; search B onto A's file is refused (it names A's progress); bytes another writer
    appends anyway are kept when A resumes, which then completes its own set exactly once after them."""
    expected = truth(DENSE, Filter(to="example.com"))
    with Simulator(DENSE, cap=40, clock=lambda: AT, latency=0.01) as sim:
        cfg = sim_config(tmp_path, sim)
        out, resume = tmp_path / "found.ndjson", tmp_path / "progress.db"
        first = _start_search(cfg, out, resume)
        try:
            _wait_for_lines(out, first, len(expected) // 4)
            first.send_signal(signal.SIGTERM)
            _stdout, stderr = first.communicate(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
                first.communicate(timeout=10)
        assert first.returncode == 130, stderr
        sim.latency = 0.0
        mine = out.read_bytes()
        other = run_cli("search", "-c", str(cfg), "--from", "example.org", *span_args(), "--format", "raw",
                        "-o", str(out))
        _one_line_refusal(other, str(resume), f"--resume {resume}")
        assert out.read_bytes() == mine
        # A writer the refusal cannot stop (another host, an older release) appends anyway.
        theirs = tmp_path / "theirs.ndjson"
        done = run_cli("search", "-c", str(cfg), "--from", "example.org", *span_args(), "--format", "raw",
                       "-o", str(theirs))
        assert done.returncode == 0, done.stderr
        with open(out, "ab") as f:
            f.write(theirs.read_bytes())
        kept = out.read_bytes()
        again = _start_search(cfg, out, resume)
        _stdout, stderr = again.communicate(timeout=60)
        assert again.returncode == 0, stderr
    data = out.read_bytes()
    assert data.startswith(kept), "the resumed search cut events another search appended"
    assert "sink.file.foreign_tail_kept" in stderr
    found = keys_in_order(read_raw(mine.decode().splitlines())) + \
        keys_in_order(read_raw(data[len(kept):].decode().splitlines()))
    assert len(found) == len(set(found)) and set(found) == expected
    assert not claim_path(out).exists(), "a search that ended complete still claims its file"


def test_a_failed_chunk_takes_back_only_its_own_bytes(tmp_path: Path, now: datetime) -> None:
    """Another process appended to the file between two polls; the next chunk fails on a second output (a pipe
    whose reader went away): the file is not cut back over the other process's bytes."""
    flow = MailFlow(seed=12, start=now - timedelta(hours=2), end=now, count=300)
    fifo, out = tmp_path / "pipe", tmp_path / "out.ndjson"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    drained = threading.Event()

    def drain() -> None:
        while not drained.is_set():
            try:
                os.read(reader, 1 << 16)
            except BlockingIOError:
                time.sleep(0.01)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    outputs = [{"name": "archive", "format": "raw", "sink": {"type": "file", "path": str(out)}},
               {"name": "pipe", "format": "raw", "sink": {"type": "file", "path": str(fifo)}}]
    with Simulator(flow, clock=lambda: now) as sim:
        c = Collector(make_config(sim, tmp_path, outputs=outputs), registry=CollectorRegistry())
        try:
            (first,) = c.run_once(now=lambda: now - timedelta(hours=1))
            assert first.ok and out.stat().st_size > 0
            drained.set()
            thread.join()
            os.close(reader)
            theirs = b'{"appended by another process": 1}\n'
            with open(out, "ab") as f:
                f.write(theirs)
            kept = out.read_bytes()
            with capture_logs() as logs:
                (failed,) = c.run_once(now=lambda: now)
        finally:
            c.close()
    assert not failed.ok and failed.error.error_type == "sink", failed.error
    assert out.read_bytes().startswith(kept), "the failed chunk was cut back over another process's bytes"
    assert [e for e in logs if e["event"] == "sink.file.foreign_tail_kept"]
    assert c.metrics.registry.get_sample_value("mimecast_collector_sink_errors_total", {"output": "archive"}) == 1
