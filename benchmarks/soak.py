"""Benchmark: the daemon's steady state, what doing little costs in log lines, disk writes, CPU and memory.

    .venv/bin/python benchmarks/soak.py                 # 5 minutes
    .venv/bin/python benchmarks/soak.py --minutes 30    # longer
    .venv/bin/python benchmarks/soak.py --against 8a5501f   # the daemon of an earlier revision, same load

`python -m collector run -c`, in the environment the systemd unit gives it, polls 20 watches every 30 s
against the simulator (in this process, with mail that keeps arriving, about one message every two
seconds) and ships to an ECS file and as CEF over TCP to a real rsyslogd. A third of the way in the file
is rotated (rename, then `reload`); two thirds of the way in the receiver is stopped for five seconds and
started again. The steady window starts once every watch has finished its first poll (the initial
backfill) and ends at SIGTERM. Reported per hour of that window: log lines at info, bytes the daemon wrote
(/proc/PID/io write_bytes, its log included), CPU seconds; RSS and open file descriptors at its start and
end, and RSS once a minute in between (shown at each quarter and as each quarter's median, so that growth
that levels off is told from a leak); the mean gap between one watch's polls against the interval; and
duplicates and losses in the ECS file against the simulator's truth (for this checkout, the statuses current at
a message's last read due before the end; the revision re-read every poll, so every status current then).

Each second is read again at ``settle: 21m``, the age an ``overlap: 20m`` re-read reached (lag + overlap), and
at the default follow ages. With ``--against REV`` the daemon (and its ``reload``) is that revision's, run from
a detached worktree with ``overlap: 20m`` as its own steady state, against the same simulator and receiver.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.simulator import MailFlow, Simulator  # noqa: E402
from collector.simulator.flow import EXTERNAL, INTERNAL, Filter  # noqa: E402
from tests.rsyslog import Rsyslog  # noqa: E402

RATE = 0.5  # messages per second
LOOKBACK = timedelta(hours=1)
LAG = timedelta(minutes=1)
SETTLE = timedelta(minutes=21)  # the age an overlap of 20 minutes re-read up to (lag + overlap)
RSS_EVERY = 60.0  # seconds between RSS samples in the steady window
TICKS = os.sysconf("SC_CLK_TCK")
# What an operator acts on: the rotation and the receiver restart cause these, once each.
STATE_CHANGES = {"sinks.reopened", "poll.failed", "poll.recovered", "collector.started", "collector.stopping",
                 "collector.stopped"}


def watch_filters(count: int) -> list[dict[str, str]]:
    """``count`` watches on recipient and sender domains, then single addresses."""
    domains = [*INTERNAL, *EXTERNAL]
    filters = [{"to": d} for d in domains] + [{"from": d} for d in domains]
    filters += [{"to": f"{who}@{d}"} for d in INTERNAL for who in ("alice", "bob", "carol", "dave")]
    return filters[:count]


def config(folder: Path, sim: Simulator, receiver: Rsyslog, watches: int, interval: int,
           rereads: dict[str, str]) -> Path:
    """The daemon's configuration, written as YAML; ``rereads`` says when a second is read again."""
    creds = sim.credentials
    data = {
        "mimecast": {"base_url": sim.base_url, "timeout": "10s",
                     "auth": {"type": "oauth2", "client_id": creds.client_id, "client_secret": creds.client_secret}},
        "collection": {"interval": f"{interval}s", "window": "15m", "lag": f"{int(LAG.total_seconds())}s",
                       **rereads, "initial_lookback": f"{int(LOOKBACK.total_seconds())}s", "result_cap": 1000,
                       "state_file": str(folder / "state.db")},
        "watches": [{"name": f"w{i:02d}", **f} for i, f in enumerate(watch_filters(watches))],
        "outputs": [
            {"name": "ecs", "format": "ecs", "sink": {"type": "file", "path": str(folder / "ecs.ndjson")}},
            {"name": "siem", "format": "cef", "sink": {"type": "syslog", "host": "127.0.0.1", "port": receiver.tcp_port,
                                                       "transport": "tcp", "framing": "octet-counting"}},
        ],
        "metrics": {"listen": None},
        "logging": {"level": "info", "format": "json"},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def unit_environment() -> dict[str, str]:
    """The environment the systemd unit gives the daemon, less the configuration's path."""
    unit = (ROOT / "systemd" / "mimecast-collector.service").read_text(encoding="utf-8")
    pairs = (line.removeprefix("Environment=").split("=", 1) for line in unit.splitlines()
             if line.startswith("Environment="))
    return {key: value for key, value in pairs if key != "MIMECAST_COLLECTOR_CONFIG"}


def sample(pid: int) -> dict[str, float]:
    """write_bytes, CPU seconds, RSS (MiB) and open file descriptors of ``pid`` now."""
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return {"write_bytes": int(io["write_bytes"]), "cpu_s": (int(stat[11]) + int(stat[12])) / TICKS,
            "rss_mib": rss / 1024, "fds": len(os.listdir(f"/proc/{pid}/fd")), "at": time.monotonic()}


def written(folder: Path) -> dict[str, int]:
    """Bytes now in the ECS files (current and rotated) and in the daemon's log."""
    return {"ecs": sum(p.stat().st_size for p in folder.glob("ecs.ndjson*")),
            "log": (folder / "collector.log").stat().st_size}


def log_events(path: Path) -> list[dict[str, Any]]:
    """The daemon's JSON log lines (anything else, e.g. a traceback, is kept under ``event: "?"``)."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"event": "?", "text": line})
    return out


def quarter_medians(series: list[float]) -> list[float]:
    """The median of the minute samples in each quarter of the window: one sample may catch a poll mid-way."""
    samples = series[1:] or series
    n = len(samples)
    return [statistics.median(samples[n * q // 4:max(n * (q + 1) // 4, n * q // 4 + 1)]) for q in range(4)]


def quarter(series: list[float], q: int) -> float:
    """The sample at ``q`` quarters of the way through ``series`` (0 is the first, 4 the last)."""
    return series[round(q * (len(series) - 1) / 4)]


def due_truth(flow: MailFlow, flt: Filter, first: datetime, cut: datetime, interval: timedelta) -> set[tuple[str, str]]:
    """The ``(mimecast id, status)`` pairs current at ``cut`` that were already current at the message's last
    read due by then (its first read, or its settle read once that is due): a later change waits for the
    next due read, which the window may end before."""
    found = set()
    for m in flow.between(first, cut - LAG):
        if not flt.matches(m):
            continue
        due = m.received + SETTLE + interval
        due = due if due <= cut else m.received + LAG + interval
        now, then = m.state_at(cut), m.state_at(due)
        if now is not None and due <= cut and now == then:
            found.add((m.id, now[0]))
    return found


def stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def shipped(folder: Path) -> Counter[tuple[str, str]]:
    """(mimecast id, status) of every ECS line, in the current and the rotated file."""
    found: Counter[tuple[str, str]] = Counter()
    for path in sorted(folder.glob("ecs.ndjson*")):
        for line in path.read_text(encoding="utf-8").splitlines():
            doc = json.loads(line)
            found[(doc["email"]["local_id"], doc["mimecast"].get("status", ""))] += 1
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the steady window (default 5)")
    parser.add_argument("--watches", type=int, default=20)
    parser.add_argument("--interval", type=int, default=30, help="seconds between one watch's polls")
    parser.add_argument("--against", metavar="REV", help="run this revision's daemon instead, with overlap: 20m")
    args = parser.parse_args()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    span = LOOKBACK + timedelta(minutes=args.minutes + 30)
    flow = MailFlow(seed=17, start=now - LOOKBACK - timedelta(minutes=5), end=now - LOOKBACK + span,
                    count=int(span.total_seconds() * RATE))
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, Simulator(flow, cap=1000) as sim:
        folder = Path(tmp)
        code = ROOT
        if args.against:
            code = folder / "rev"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(code), args.against],
                           check=True)
        receiver = Rsyslog(folder / "rsyslog").start()
        try:
            return soak(args, folder, sim, receiver, flow, code)
        finally:
            receiver.stop()
            if args.against:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(code)], check=False)


def soak(args: argparse.Namespace, folder: Path, sim: Simulator, receiver: Rsyslog, flow: MailFlow, code: Path) -> int:
    rereads = {"overlap": "20m"} if args.against else {"settle": f"{int(SETTLE.total_seconds() // 60)}m"}
    cfg = config(folder, sim, receiver, args.watches, args.interval, rereads)
    log = folder / "collector.log"
    env = {**os.environ, **unit_environment(), "PYTHONPATH": str(code)}
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "collector", "run", "-c", str(cfg)], cwd=code, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    started_utc = datetime.now(timezone.utc)
    try:
        def first_polls() -> bool:
            return len({e.get("watch") for e in log_events(log) if e["event"] == "poll.done"}) >= args.watches
        wait_until(first_polls, 600, "every watch's first poll")
        begin_utc, begin = time.time(), {**sample(proc.pid), **written(folder)}
        length = args.minutes * 60
        print(f"steady window of {args.minutes:g} min starts; {args.watches} watches, interval {args.interval}s")
        rss: list[float] = [begin["rss_mib"]]

        def pause_until(at: float) -> None:
            """Sleep until ``at`` (monotonic), noting the daemon's RSS every RSS_EVERY seconds meanwhile."""
            while (left := at - time.monotonic()) > 0:
                time.sleep(min(left, RSS_EVERY))
                rss.append(sample(proc.pid)["rss_mib"])

        pause_until(begin["at"] + length / 3)
        (folder / "ecs.ndjson").rename(folder / "ecs.ndjson.1")
        subprocess.run([sys.executable, "-m", "collector", "reload", "-c", str(cfg)], cwd=code, env=env, check=True,
                       capture_output=True, timeout=60)
        pause_until(begin["at"] + 2 * length / 3)
        receiver.stop()
        time.sleep(5)
        receiver.start()
        pause_until(begin["at"] + length)
        end_utc, end = time.time(), {**sample(proc.pid), **written(folder)}
        begin["rss_series"] = rss  # type: ignore[assignment]
        proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        code = proc.wait(timeout=60)
        stop_s = time.monotonic() - stopping
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report(args, folder, log, flow, started_utc, (begin_utc, begin), (end_utc, end), code, stop_s, receiver)
    return 0


def report(args: argparse.Namespace, folder: Path, log: Path, flow: MailFlow, started_utc: datetime,
           begin: tuple[float, dict[str, float]], end: tuple[float, dict[str, float]], code: int, stop_s: float,
           receiver: Rsyslog) -> None:
    events = log_events(log)
    (t0, s0), (t1, s1) = begin, end
    medians = quarter_medians(s0["rss_series"])
    hours = (s1["at"] - s0["at"]) / 3600
    window = [e for e in events if e["event"] != "?" and t0 <= stamp(e) < t1]
    done = [e for e in window if e["event"] == "poll.done"]
    others = Counter(e["event"] for e in window if e["event"] != "poll.done")
    gaps: list[float] = []
    by_watch: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e["event"] == "poll.done":
            by_watch[e["watch"]].append(stamp(e))
    for times in by_watch.values():
        steady = [t for t in times if t >= t0 - args.interval and t < t1]
        gaps += [b - a for a, b in zip(steady, steady[1:])]
    mean_gap = sum(gaps) / len(gaps) if gaps else float("nan")
    got = shipped(folder)
    cut = datetime.fromtimestamp(t1, timezone.utc) - timedelta(seconds=2 * args.interval) - LAG
    first = started_utc - LOOKBACK + timedelta(minutes=1)
    expected: set[tuple[str, str]] = set()
    for f in watch_filters(args.watches):
        flt = Filter(to=f.get("to"), from_=f.get("from"))
        if args.against:  # overlap: every poll re-read the last 20 minutes, so every status current at the cut
            expected |= flow.ground_truth(flt, first, cut - LAG, cut)
        else:
            expected |= due_truth(flow, flt, first, cut, timedelta(seconds=args.interval))
    cef = [m for m in receiver.messages() if "CEF:" in m.get("msg", m.get("rawmsg", ""))]
    lines_per_poll = len(window) / len(done) if done else float("nan")
    rows = [
        ("daemon", f"revision {args.against}, overlap: 20m" if args.against else "this checkout, settle: 21m"),
        ("watches x interval", f"{args.watches} x {args.interval} s, steady window {hours * 60:.1f} min"),
        ("polls (poll.done lines)", f"{len(done)}"),
        ("log lines at info", f"{len(window)} = {len(window) / hours:,.0f}/h; {lines_per_poll:.3f} per watch per poll"),
        ("  besides poll.done", ", ".join(f"{k} {v}" for k, v in sorted(others.items())) or "none"),
        ("bytes written", f"{(s1['write_bytes'] - s0['write_bytes']) / hours / 1e6:,.1f} MB/h"),
        ("  of which ECS file, log", f"{(s1['ecs'] - s0['ecs']) / hours / 1e6:,.1f} MB/h, "
                                     f"{(s1['log'] - s0['log']) / hours / 1e6:,.1f} MB/h"),
        ("CPU", f"{(s1['cpu_s'] - s0['cpu_s']) / hours:,.1f} s/h"),
        ("RSS start -> end", f"{s0['rss_mib']:.1f} -> {s1['rss_mib']:.1f} MiB"),
        ("RSS at each quarter", " -> ".join(f"{quarter(s0['rss_series'], q):.1f}" for q in range(5)) + " MiB"),
        ("RSS median in each quarter", " -> ".join(f"{m:.1f}" for m in medians) + " MiB"),
        ("RSS growth, second half", f"{medians[3] - medians[1]:+.1f} MiB between the medians of the second and fourth "
                                    f"quarters (first half {medians[1] - s0['rss_mib']:+.1f} from the start)"),
        ("FDs start -> end", f"{s0['fds']:.0f} -> {s1['fds']:.0f}"),
        ("mean poll gap", f"{mean_gap:.2f} s vs {args.interval} s ({(mean_gap / args.interval - 1) * 100:+.2f}%), "
                          f"min {min(gaps, default=0):.2f} max {max(gaps, default=0):.2f}"),
        ("ECS events / duplicates", f"{sum(got.values())} / {sum(n - 1 for n in got.values() if n > 1)}"),
        ("losses against truth", f"{len(expected - set(got))} of {len(expected)} expected"),
        ("CEF messages received", f"{len(cef)}"),
        ("exit on SIGTERM", f"code {code} in {stop_s:.1f} s"),
    ]
    lost = expected - set(got)
    if lost:
        by_id = {m.id: m for m in flow.between(first, cut)}
        for key in sorted(lost)[:5]:
            m = by_id[key[0]]
            print(f"lost {key[1]} of a message received {m.received.isoformat()} lifecycle {m.lifecycle}")
    print()
    print("| measure | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    routine = len(window) - sum(n for k, n in others.items() if k in STATE_CHANGES)
    print()
    print(f"targets: log lines besides state changes {routine} <= 1.2 x polls ({1.2 * len(done):.0f}): "
          f"{'holds' if routine <= 1.2 * len(done) else 'MISSED'}; "
          f"bytes/h < 200 MB: {'holds' if (s1['write_bytes'] - s0['write_bytes']) / hours < 200e6 else 'MISSED'}; "
          f"gap within 2%: {'holds' if abs(mean_gap / args.interval - 1) <= 0.02 else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
