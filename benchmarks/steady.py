"""Benchmark: searches an hour in the steady state, by purpose, against the read-once limit.

    .venv/bin/python benchmarks/steady.py                        # 1, 100, 1,000 a minute, 5% pending
    .venv/bin/python benchmarks/steady.py --densities 100 --pending 0.005 0.05 1.0
    .venv/bin/python benchmarks/steady.py --densities 100 --against 8a5501f   # and an earlier revision

Polls every five simulated minutes (interval 5m, window 15m, lag 1m, settle 10m, result_cap 100) on the
simulator's clock, so that hours run in minutes; the first 70 minutes (a catch-up, the first settle and
follow reads) are not counted. ``pending`` is the share of mail held for ever; another 10% is held and
released or rejected 10 minutes to 20 hours later. A follow age costs the same whatever its length once the
collector has run that long, so each is measured with ``follow: [1h]``. Next to each row:

- the read-once limit: for each poll, the fewest whole-second windows under the cap covering its new span;
- the follow covering limit: for each poll, the fewest windows under the cap covering the seconds due for a
  follow read that still held a pending message at their previous read (from the ground truth);
- with ``--against REV``: that revision's collector with ``overlap`` at the last follow age (1h), the way an
  earlier release followed status changes;
- reads of a second: how many searches covered each second that held matching mail and went through its
  first, settle and follow reads inside the measured hours (mean and most), from the simulator's request log.

``--final-statuses`` sets ``final_statuses`` (given no status, every status is followed: the worst case).

Every row checks exactly once against the ground truth: no message-status twice, none the flow never showed,
and every status current from its second's settle read on shipped. Counts, not times.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.config import load_config  # noqa: E402
from collector.daemon import Collector  # noqa: E402
from collector.logging import configure_logging  # noqa: E402
from collector.simulator import Filter, MailFlow, Simulator  # noqa: E402
from collector.simulator.shapes import Statuses  # noqa: E402
from collector.simulator.truth import ideal_searches, match_share  # noqa: E402

FLT = Filter(to="example.com")
T0 = datetime(2026, 11, 28, 6, tzinfo=timezone.utc)
POLL = timedelta(minutes=5)
WARM, MEASURED = timedelta(hours=1, minutes=10), timedelta(hours=2)
SETTLE, FOLLOW = timedelta(minutes=10), timedelta(hours=1)
CAP, WINDOW = 100, timedelta(minutes=15)
PURPOSES = ("first", "settle", "follow", "split")
FINAL = ("archived", "rejected", "bounced")
# The revision's collector, driven on the simulated clock: it writes each poll's time where the simulator reads it.
_OLD = """
import json, sys
from datetime import datetime, timedelta
from pathlib import Path
from prometheus_client import CollectorRegistry
from collector.config import load_config
from collector.daemon import Collector
from collector.logging import configure_logging
configure_logging("error", "json")
cfg, clock, now, polls, warm = Path(sys.argv[1]), Path(sys.argv[2]), datetime.fromisoformat(sys.argv[3]), *map(int, sys.argv[4:6])
c, searches, out = Collector(load_config(cfg), registry=CollectorRegistry()), [], cfg.with_name("out.ndjson")
def written():
    io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(io["write_bytes"]) - (out.stat().st_size if out.exists() else 0)
for poll in range(polls):
    if poll == warm:
        before = written()
    clock.write_text(now.isoformat())
    (result,) = c.run_once(now=lambda: now)
    assert result.ok, result.error
    searches.append(result.searches)
    now += timedelta(minutes=5)
print(json.dumps({"searches": searches, "written": written() - before}))
c.close()
"""


def flow_for(per_minute: int, pending: float) -> MailFlow:
    """Mail at ``per_minute`` matching messages a minute from an hour before T0 until the run ends."""
    span = timedelta(hours=1) + WARM + MEASURED
    count = int(per_minute / match_share(FLT) * span.total_seconds() / 60)
    statuses = Statuses(pending=pending, held=min(0.1, 1 - pending), least=timedelta(minutes=10),
                        most=timedelta(hours=20))
    return MailFlow(seed=per_minute, start=T0 - timedelta(hours=1), end=T0 + WARM + MEASURED, count=count, cache=True,
                    statuses=statuses)


def config(sim: Simulator, tmp: str, collection: dict[str, Any]) -> Path:
    """The configuration file of one run."""
    data = {"mimecast": {"base_url": sim.base_url, "auth": {"type": "oauth2", "client_id": sim.credentials.client_id,
                                                            "client_secret": sim.credentials.client_secret}},
            "collection": {"interval": "5m", "window": "15m", "lag": "1m", "initial_lookback": "1h", "result_cap": CAP,
                           "state_file": f"{tmp}/state.db", **collection},
            "watches": [{"name": "w", "to": "example.com"}], "metrics": {"listen": None},
            "outputs": [{"name": "o", "format": "raw", "sink": {"type": "file", "path": f"{tmp}/out.ndjson"}}]}
    path = Path(tmp) / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def reads_per_second(flow: MailFlow, polls: list[tuple[datetime, list[Any]]]) -> dict[str, float]:
    """How often each second that held matching mail was covered, over the seconds whose every read (first,
    settle, follow) fell in the measured hours; ``polls`` gives each poll's time and its search requests.

    A read is an answer below the cap that covered the second; a capped answer is not one (nothing of it is
    delivered: its window is searched again) and is counted apart. Follow reads are those made once the second
    was a follow age old. Returns the mean and most reads, the most follow reads, and the mean capped answers."""
    start, end = T0 + WARM, T0 + WARM + MEASURED - FOLLOW - 2 * POLL - timedelta(minutes=1)
    span = int((end - start).total_seconds())
    reads, follow, capped = ([0] * (span + 1) for _ in range(3))

    def cover(counts: list[int], a: datetime, b: datetime) -> None:
        lo, hi = max(0, int((a - start).total_seconds())), min(span, int((b - start).total_seconds()))
        if lo < hi:
            counts[lo] += 1
            counts[hi] -= 1

    for at, requests in polls:
        for request in requests:
            (item,) = request.body["data"]
            a, b = (datetime.strptime(item[k], "%Y-%m-%dT%H:%M:%S%z") for k in ("start", "end"))
            if sum(1 for _ in itertools.islice(flow.visible(FLT, a, b, at), CAP)) >= CAP:
                cover(capped, a, b)
            else:
                cover(reads, a, b)
                cover(follow, a, min(b, at - FOLLOW))

    def running(counts: list[int]) -> list[int]:
        return list(itertools.accumulate(counts[:span]))

    held = {int((m.received - start).total_seconds()) for m in flow.between(start, end) if FLT.matches(m)}
    per = {name: [c[s] for s in held] for name, c in
           (("reads", running(reads)), ("follow", running(follow)), ("capped", running(capped)))}
    n = max(len(held), 1)
    return {"mean": sum(per["reads"]) / n, "most": max(per["reads"], default=0),
            "follow_most": max(per["follow"], default=0), "capped": sum(per["capped"]) / n}


def follow_limit(flow: MailFlow, now: datetime, final: tuple[str, ...]) -> int:
    """The fewest windows under the cap covering the seconds due for a follow read at ``now`` (age 1h, one poll's
    worth) that held a pending message when last read (at settle), from the ground truth."""
    start, end = now - FOLLOW - POLL, now - FOLLOW
    per_second: Counter[int] = Counter()
    pending: set[int] = set()
    for m, _status, _info in flow.visible(FLT, start, end, now):
        second = int((m.received - start).total_seconds())
        per_second[second] += 1
        state = m.state_at(m.received + SETTLE)  # its status at its settle read
        if state is not None and state[0] not in final:
            pending.add(second)
    windows, cursor, held = 0, None, 0
    for second in range(int((end - start).total_seconds())):
        if cursor is not None and held + per_second[second] < CAP and second - cursor < WINDOW.total_seconds():
            held += per_second[second]
            continue
        cursor = None
        if second in pending:  # greedy from the oldest pending second not yet covered: the fewest windows
            windows, cursor, held = windows + 1, second, per_second[second]
    return windows


def exact(flow: MailFlow, out: Path, end: datetime) -> str:
    """Whether the output holds every message-status once, as the ground truth says it must."""
    shipped: Counter[tuple[str, str]] = Counter()
    for line in out.read_text(encoding="utf-8").splitlines():
        email = json.loads(line)["tracked_email"]
        shipped[(email["id"], email["status"])] += 1
    messages = [m for m in flow.between(flow.start, end - SETTLE - POLL) if FLT.matches(m)]
    shown = {(m.id, s) for m in messages for s, *_ in m.spans(end)}
    required = set()
    for m in messages:
        settled, last = m.state_at(m.received + SETTLE), m.state_at(end)  # the earliest settle read
        if settled is not None and settled == last:
            required.add((m.id, last[0]))
    twice = sum(n > 1 for n in shipped.values())
    ids = {m.id for m in messages}  # once: built inside the comprehension, it was rebuilt for every key shipped
    unknown = len({k for k in shipped if k[0] in ids} - shown)
    missing = len(required - set(shipped))
    return "yes" if twice == unknown == missing == 0 else f"NO ({twice} twice, {unknown} unknown, {missing} missing)"


def _written(out: Path) -> int:
    """Bytes this process has written to storage, less the output file's: the checkpoint's (and the log's, none
    at level error)."""
    io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(io["write_bytes"]) - (out.stat().st_size if out.exists() else 0)


def run(per_minute: int, pending: float, follow: list[str], final: tuple[str, ...]) -> dict[str, Any]:
    """One row: searches an hour by purpose, the limits, reads of a second, bytes written to the checkpoint and
    the exactly-once check."""
    flow = flow_for(per_minute, pending)
    clock = {"now": T0}
    counted: Counter[str] = Counter()
    limit = covering = written = 0
    polls: list[tuple[datetime, list[Any]]] = []
    with Simulator(flow, clock=lambda: clock["now"]) as sim, tempfile.TemporaryDirectory() as tmp:
        collection = {"settle": "10m", "follow": follow, "final_statuses": list(final)}
        out = Path(tmp) / "out.ndjson"
        c = Collector(load_config(config(sim, tmp, collection)), registry=CollectorRegistry())
        try:
            while clock["now"] < T0 + WARM + MEASURED:
                if clock["now"] == T0 + WARM:
                    written = -_written(out)
                before, asked = c.state.watch("w").watermark, len(sim.searches())
                (result,) = c.run_once(now=lambda: clock["now"])
                assert result.ok, result.error
                polls.append((clock["now"], sim.searches()[asked:]))
                if clock["now"] >= T0 + WARM:
                    counted.update(result.purposes)
                    limit += ideal_searches(flow, FLT, before, c.state.watch("w").watermark, clock["now"], cap=CAP,
                                            window=WINDOW)
                    covering += follow_limit(flow, clock["now"], final) if follow else 0
                clock["now"] += POLL
            written += _written(out)
        finally:
            c.close()
        check = exact(flow, out, clock["now"])
    hours = MEASURED / timedelta(hours=1)
    return {"by": {p: counted[p] / hours for p in PURPOSES}, "limit": limit / hours, "covering": covering / hours,
            "exact": check, "reads": reads_per_second(flow, polls), "written": written / hours}


def against(rev: str, per_minute: int, pending: float) -> dict[str, Any]:
    """Revision ``rev``'s collector with ``overlap`` at the last follow age: its searches an hour, reads of a
    second and bytes written to the checkpoint an hour."""
    flow = flow_for(per_minute, pending)
    with tempfile.TemporaryDirectory() as tmp:
        other, tick = Path(tmp) / "rev", Path(tmp) / "clock"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(other), rev], check=True)
        tick.write_text(T0.isoformat())
        try:
            with Simulator(flow, clock=lambda: datetime.fromisoformat(tick.read_text())) as sim:
                cfg = config(sim, tmp, {"overlap": "1h"})
                polls = int((WARM + MEASURED) / POLL)
                done = subprocess.run([sys.executable, "-c", _OLD, str(cfg), str(tick), T0.isoformat(), str(polls),
                                       str(int(WARM / POLL))],
                                      cwd=other, env={"PYTHONPATH": str(other), "PATH": "/usr/bin:/bin"},
                                      capture_output=True, text=True, check=True)
                answer = json.loads(done.stdout)
                requests, each = sim.searches(), []
                for k, n in enumerate(answer["searches"]):  # each poll's searches, in the order they were made
                    each.append((T0 + k * POLL, requests[:n]))
                    requests = requests[n:]
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False)
    hours = MEASURED / timedelta(hours=1)
    return {"searches": sum(answer["searches"][int(WARM / POLL):]) / hours, "reads": reads_per_second(flow, each),
            "written": answer["written"] / hours}


def main() -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--densities", type=int, nargs="*", default=[1, 100, 1000])
    parser.add_argument("--pending", type=float, nargs="*", default=[0.05])
    parser.add_argument("--against", metavar="REV", help="also run this revision with overlap at the last follow age")
    parser.add_argument("--final-statuses", nargs="*", default=list(FINAL), metavar="STATUS",
                        help="final_statuses (default: archived rejected bounced; none given: follow every status)")
    args = parser.parse_args()
    final = tuple(args.final_statuses)
    if final != FINAL:
        print(f"final_statuses: [{', '.join(final)}]")
    configure_logging("error", "json")
    print("| matching a minute | pending | follow | first | settle | follow | split | an hour | a poll | read-once "
          "limit | x limit | follow covering limit | reads of a second | most follow reads | capped answers over a "
          "second | checkpoint MB an hour | exact |"
          + (f" {args.against}, overlap 1h | its reads of a second | its checkpoint MB an hour |" if args.against else ""))
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
          + ("---:|---:|---:|" if args.against else ""))
    for per_minute in args.densities:
        for pending in args.pending:
            for follow in ([], ["1h"]):
                row = run(per_minute, pending, follow, final)
                total, reads = sum(row["by"].values()), row["reads"]
                cells = [f"{per_minute:,}", f"{pending:.1%}", f"[{', '.join(follow)}]",
                         *(f"{row['by'][p]:.1f}" for p in PURPOSES), f"{total:.1f}", f"{total / 12:.1f}",
                         f"{row['limit']:.1f}", f"{total / max(row['limit'], 1e-9):.2f}",
                         f"{row['covering']:.1f}" if follow else "-", f"{reads['mean']:.2f}, most {reads['most']}",
                         str(reads["follow_most"]), f"{reads['capped']:.2f}", f"{row['written'] / 1e6:.2f}",
                         row["exact"]]
                if args.against and follow:
                    old = against(args.against, per_minute, pending)
                    cells += [f"{old['searches']:.1f}", f"{old['reads']['mean']:.2f}, most {old['reads']['most']}",
                              f"{old['written'] / 1e6:.2f}"]
                elif args.against:
                    cells += ["-", "-", "-"]
                print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
