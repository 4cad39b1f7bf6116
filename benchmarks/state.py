"""Benchmark: what the checkpoint costs per chunk as it remembers more keys, and a busy day of 64 watches.

    .venv/bin/python benchmarks/state.py                   # both parts
    .venv/bin/python benchmarks/state.py --part commit     # commit cost at 1,000 / 100,000 / 1,000,000 keys
    .venv/bin/python benchmarks/state.py --part day --watches 64 --messages 9600 --polls 8

Part 1 fills a checkpoint with N keys through the store itself (chunks of 100, so the keys carry
the times real chunks give them), then delivers chunks of 100 new events, each forgetting the
100 oldest keys (the steady state). It reports the store's share (asking which keys are known,
then the commit) and the whole delivery (format, write and fsync a file output, commit), and the
database size per million keys. Part 2 runs 64 watches with `overlap: 1d` against the simulator
over a busy day, starting from an empty checkpoint, and compares chunks per second of the last
polls with the first. Times are ratios within one run: compare them, not their absolute values.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from collector.config import load_config  # noqa: E402
from collector.daemon import Collector  # noqa: E402
from collector.formats import build_formatter  # noqa: E402
from collector.logging import configure_logging  # noqa: E402
from collector.metrics import Metrics  # noqa: E402
from collector.pipeline import Chunk, Output, Pipeline  # noqa: E402
from collector.records import parse_tracked_email  # noqa: E402
from collector.simulator import MailFlow, Simulator  # noqa: E402
from collector.sinks.file import FileSink  # noqa: E402
from collector.state import Advance, StateStore  # noqa: E402

T0 = datetime(2026, 11, 28, tzinfo=timezone.utc)
CHUNK = 100
MEASURED = 300


@dataclass
class CommitCost:
    """One size's timings, in milliseconds per chunk."""

    keys: int
    store_mean: float
    store_median: float
    chunk_mean: float
    chunk_median: float
    db_bytes: int


def _raw(i: int, when: datetime) -> dict[str, object]:
    return {"id": f"eNpBench{i:012d}", "status": "delivered", "received": when.strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "fromEnv": {"emailAddress": "a@partner.example.net"}, "to": [{"emailAddress": "b@example.com"}],
            "subject": "Quarterly report", "senderIP": "203.0.113.9", "route": "inbound", "info": "Delivered",
            "attachments": False, "spamScore": 0, "detectionLevel": "relaxed"}


class _Filled:
    """A checkpoint holding ``n`` keys, with a pipeline delivering to one file output."""

    def __init__(self, n: int, folder: Path) -> None:
        self.n, self.folder = n, folder
        self.store = StateStore(folder / "state.json").open()
        self.store.prepare(["bench"])
        self.fills = n // CHUNK
        self.overlap = timedelta(seconds=self.fills)  # one second per chunk: each new chunk forgets the oldest
        for c in range(self.fills):
            end = T0 + timedelta(seconds=c + 1)
            self.store.commit(Advance("bench", end, end - self.overlap - timedelta(seconds=1),
                                      new_keys=[(f"fill-{c}-{i}", "delivered") for i in range(CHUNK)]))
        metrics = Metrics(CollectorRegistry(), process=False)
        self.pipeline = Pipeline([Output("file", build_formatter("raw", {}), FileSink("file", folder / "out.ndjson"))],
                                 self.store, dead_letter=folder / "dead.ndjson", metrics=metrics)
        self.pipeline.reconcile()
        self.step = 0
        self.store_ms: list[float] = []
        self.chunk_ms: list[float] = []

    def next_records(self) -> tuple[datetime, list]:
        self.step += 1
        end = T0 + timedelta(seconds=self.fills + self.step)
        return end, [parse_tracked_email(_raw(self.step * CHUNK + i, end - timedelta(seconds=1)))
                     for i in range(CHUNK)]

    def store_chunk(self) -> None:
        end, records = self.next_records()
        started = time.perf_counter()
        self.store.known("bench", [r.key for r in records])
        self.store.commit(Advance("bench", end, end - self.overlap, new_keys=[r.key for r in records]))
        self.store_ms.append((time.perf_counter() - started) * 1000)

    def whole_chunk(self) -> None:
        end, records = self.next_records()
        started = time.perf_counter()
        self.pipeline.deliver(Chunk("bench", records, (), end, end - self.overlap, end))
        self.chunk_ms.append((time.perf_counter() - started) * 1000)

    def finish(self) -> CommitCost:
        remembered = self.store.remembered("bench")
        self.pipeline.close()
        self.store.close()
        assert abs(remembered - self.n) <= 2 * CHUNK, f"steady state drifted: {remembered} keys for {self.n}"
        return CommitCost(self.n, statistics.fmean(self.store_ms), statistics.median(self.store_ms),
                          statistics.fmean(self.chunk_ms), statistics.median(self.chunk_ms),
                          (self.folder / "state.json").stat().st_size)


def commit_costs(sizes: tuple[int, ...], folder: Path) -> list[CommitCost]:
    """Fill one checkpoint per size, then time steady-state chunks, taking turns so that a noisy
    machine slows every size alike."""
    filled = []
    for n in sizes:
        (folder / str(n)).mkdir()
        filled.append(_Filled(n, folder / str(n)))
    for _ in range(MEASURED // 2):
        for f in filled:
            f.store_chunk()
            f.whole_chunk()
    return [f.finish() for f in filled]


def busy_day(watches: int, messages: int, polls: int, folder: Path) -> list[tuple[int, int, float, float, int]]:
    """Polls of ``watches`` watches (overlap 1d) through one day.

    Per poll: chunks, events shipped, seconds in all, seconds delivering (dedup, outputs and commit), keys.
    """
    day = timedelta(days=1)
    step = day / polls
    flow = MailFlow(seed=17, start=T0 - day, end=T0 + day, count=2 * messages, cache=True)
    clock = {"now": T0}
    rows = []
    with Simulator(flow, cap=100_000, clock=lambda: clock["now"]) as sim:
        creds = sim.credentials
        config = {
            "mimecast": {"base_url": sim.base_url, "auth": {"type": "oauth2", "client_id": creds.client_id,
                                                             "client_secret": creds.client_secret}},
            "collection": {"window": f"{int(step.total_seconds())}s", "lag": "0s", "overlap": "1d",
                           "initial_lookback": "1d", "result_cap": 100_000, "state_file": str(folder / "state.json")},
            "watches": [{"name": f"w{i:02d}", "to": "example.com"} for i in range(watches)],
            "outputs": [{"name": "file", "format": "raw", "sink": {"type": "file", "path": str(folder / "out")}}],
            "metrics": {"listen": None}, "logging": {"level": "warning", "format": "json"},
        }
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        collector = Collector(load_config(folder / "config.yaml", env={}), registry=CollectorRegistry())
        delivering = {"s": 0.0}
        deliver = collector.pipeline.deliver

        def timed(chunk: Chunk) -> None:
            started = time.perf_counter()
            try:
                deliver(chunk)
            finally:
                delivering["s"] += time.perf_counter() - started

        collector.pipeline.deliver = timed  # type: ignore[method-assign]
        try:
            for k in range(polls + 1):
                clock["now"] = T0 + k * step
                delivering["s"] = 0.0
                started = time.perf_counter()
                results = collector.run_once(now=lambda: clock["now"])
                elapsed = time.perf_counter() - started
                assert all(r.ok for r in results), [r.error for r in results if not r.ok]
                remembered = sum(collector.state.remembered(f"w{i:02d}") for i in range(watches))
                rows.append((sum(r.chunks for r in results), sum(r.shipped for r in results), elapsed,
                             delivering["s"], remembered))
        finally:
            collector.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["commit", "day", "all"], default="all")
    parser.add_argument("--watches", type=int, default=64)
    parser.add_argument("--messages", type=int, default=9600, help="messages per simulated day")
    parser.add_argument("--polls", type=int, default=8, help="polls through the day")
    args = parser.parse_args()
    configure_logging("error", "json")
    if args.part in ("commit", "all"):
        with tempfile.TemporaryDirectory() as tmp:
            costs = commit_costs((1_000, 100_000, 1_000_000), Path(tmp))
        base = costs[0]
        print(f"Checkpoint cost per chunk of {CHUNK} events ({MEASURED // 2} chunks each way, ms)")
        print("| keys remembered | store: known + commit, mean | median | vs 1,000 | whole chunk (file + commit), "
              "mean | median | vs 1,000 | database size |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for c in costs:
            print(f"| {c.keys:,} | {c.store_mean:.2f} | {c.store_median:.2f} | {c.store_mean / base.store_mean:.2f}x | "
                  f"{c.chunk_mean:.2f} | {c.chunk_median:.2f} | {c.chunk_mean / base.chunk_mean:.2f}x | "
                  f"{c.db_bytes / 1e6:.1f} MB |")
        print(f"Database size per million keys: {costs[-1].db_bytes / costs[-1].keys * 1e6 / 1e6:.0f} MB")
    if args.part in ("day", "all"):
        with tempfile.TemporaryDirectory() as tmp:
            rows = busy_day(args.watches, args.messages, args.polls, Path(tmp))
        print(f"\n{args.watches} watches, overlap 1d, {args.messages:,} messages a day, {args.polls} polls through "
              "the day (poll 0 catches up the previous day)")
        print("| poll | chunks | events shipped | keys remembered | seconds | chunks/s | seconds delivering "
              "| chunks/s delivered |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for k, (chunks, shipped, elapsed, delivering, keys) in enumerate(rows):
            print(f"| {k} | {chunks:,} | {shipped:,} | {keys:,} | {elapsed:.1f} | {chunks / elapsed:.0f} | "
                  f"{delivering:.2f} | {chunks / delivering:.0f} |")
        for label, index in (("chunks/s", 2), ("chunks/s delivered", 3)):
            first = sum(r[0] for r in rows[1:3]) / sum(r[index] for r in rows[1:3])
            last = sum(r[0] for r in rows[-2:]) / sum(r[index] for r in rows[-2:])
            print(f"{label}: polls 1-2 {first:.0f}, last two {last:.0f} ({last / first:.0%} of the start)")

if __name__ == "__main__":
    main()
