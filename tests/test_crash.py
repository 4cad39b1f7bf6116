"""Crash suite: SIGKILL at random moments, restart, and compare with the simulator's ground truth.

Runs in the normal suite with CRASH_KILLS (default 12) kills; run it alone with more:
    CRASH_KILLS=40 .venv/bin/python -m pytest -m crash -n 0 -s
CRASH_SEED reproduces a run; the seed is printed, and every assertion message repeats it.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from collector.simulator import Filter, MailFlow, Simulator
from tests.cef_decoder import decode
from tests.conftest import config_dict, run_cli, write_config
from tests.rsyslog import Rsyslog, require_rsyslog
from tests.statedb import read_state
from tests.test_daemon import Daemon, keys_in

pytestmark = [pytest.mark.crash, pytest.mark.rsyslog]


def test_random_sigkills_lose_nothing_and_duplicate_nothing_in_files(tmp_path: Path, now: datetime) -> None:
    """After many SIGKILLs and restarts the file holds every event exactly once and syslog at least once."""
    require_rsyslog()
    kills = int(os.environ.get("CRASH_KILLS", "12"))
    seed = int(os.environ.get("CRASH_SEED", str(random.SystemRandom().randrange(1 << 30))))
    print(f"crash suite: seed {seed}, {kills} kills (CRASH_SEED={seed} reproduces the kill schedule)")
    rng = random.Random(seed)
    flow = MailFlow(seed=seed, start=now - timedelta(hours=11, minutes=50), end=now - timedelta(minutes=5), count=6000)
    out = tmp_path / "out.ndjson"
    with Rsyslog(tmp_path / "rsyslog") as receiver, Simulator(flow, clock=lambda: now, latency=0.02) as sim:
        outputs = [{"name": "archive", "format": "raw", "sink": {"type": "file", "path": str(out)}},
                   {"name": "siem", "format": "cef", "sink": {"type": "syslog", "host": "127.0.0.1",
                                                             "port": receiver.tcp_port, "transport": "tcp"}}]
        cfg = write_config(tmp_path, config_dict(sim, tmp_path, outputs=outputs, logging={"level": "info"},
                                                 collection={"window": "1m", "initial_lookback": "12h"}))
        tails_cut, finished_early = 0, 0
        for n in range(kills):
            daemon = Daemon(tmp_path, "once", "-c", str(cfg))
            time.sleep(rng.uniform(0.2, 1.6))
            if daemon.proc.poll() is not None:
                finished_early += 1
            daemon.signal(signal.SIGKILL)
            log = daemon.wait()
            tails_cut += "uncommitted_tail_removed" in log
        sim.latency = 0.0  # slow searches only make the kills land mid-run; this run is not killed
        final = run_cli("once", "-c", str(cfg), timeout=300)
        tails_cut += "uncommitted_tail_removed" in final.stderr
        assert final.returncode == 0, f"seed {seed}: {final.stderr[-2000:]}"
        expected = flow.ground_truth(Filter(to="example.com"), flow.start, flow.end, now)
        delivered = [decode(m["msg"]) for m in receiver.messages(expected=len(expected), timeout=30)]
    got = keys_in(out)
    syslog = Counter((e.extension["cs1"], e.extension["act"]) for e in delivered)
    repeats = sum(syslog.values()) - len(syslog)
    print(f"crash suite: {kills} kills, {tails_cut} restarts cut an uncommitted tail, {finished_early} runs had "
          f"finished before their kill; {len(expected)} expected events; file {sum(got.values())} lines; "
          f"syslog {sum(syslog.values())} messages, {repeats} repeats")
    assert set(got) == expected, f"seed {seed}: file lost or invented events"
    assert max(got.values()) == 1, f"seed {seed}: file duplicated {sum(v - 1 for v in got.values())} events"
    assert set(syslog) >= expected, f"seed {seed}: syslog lost {len(expected - set(syslog))} events"
    assert tails_cut >= 1, f"seed {seed}: no kill landed between a write and its commit; raise CRASH_KILLS"
    state = read_state(tmp_path / "state.json")
    assert state["watches"]["inbound"]["watermark"]
