"""Benchmark: the collector's `once` in raw, ecs and cef against the floor, in one run, on one machine.

    .venv/bin/python benchmarks/run.py                 # N = 10,000 and 100,000
    .venv/bin/python benchmarks/run.py --million       # also N = 1,000,000

The simulator (in this process, its messages generated ahead of time) serves N tracked emails spread
over the last 24 hours. Each contender runs as its own process, so its CPU seconds and peak RSS are its
own (os.wait4). The floor issues the same searches with requests, parses the JSON and writes each record
back as one JSON line, with no transformation, de-duplication or state. Ratios compare contenders
measured in the same run, which is what stays meaningful on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.simulator import MailFlow, Simulator  # noqa: E402

WINDOW = timedelta(minutes=15)
PERIOD = timedelta(hours=24)


@dataclass
class Result:
    """One contender's run."""

    name: str
    events: int
    wall_s: float
    cpu_s: float
    rss_mib: float
    state_bytes: int | None = None

    @property
    def rate(self) -> float:
        return self.events / self.wall_s if self.wall_s else 0.0


def measure(name: str, argv: list[str], count_events: callable) -> Result:
    """Run ``argv`` as a child process; wall time, CPU and peak RSS are the child's own.

    The peak RSS is read from the child's VmHWM while it runs: ru_maxrss would include this (large)
    process's memory, which the child holds between fork and exec.
    """
    out = tempfile.TemporaryFile("w+")
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL, text=True)
    peak_kib = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak_kib = max(peak_kib, _hwm_kib(proc.pid))
        time.sleep(0.005)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    output = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed: {output[-2000:]}")
    return Result(name, count_events(output), wall, usage.ru_utime + usage.ru_stime, peak_kib / 1024)


def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def collector_run(sim: Simulator, tmp: Path, fmt: str, start: datetime) -> Result:
    """`mimecast-collector once` to a file output in ``fmt``."""
    folder = tmp / fmt
    folder.mkdir()
    out = folder / "out.txt"
    creds = sim.credentials
    config = {
        "mimecast": {"base_url": sim.base_url, "auth": {"type": "oauth2", "client_id": creds.client_id,
                                                         "client_secret": creds.client_secret}},
        "collection": {"window": "15m", "lag": "0s", "overlap": "10m", "result_cap": 100_000,
                       "initial_lookback": f"{int((datetime.now(timezone.utc) - start).total_seconds()) + 60}s",
                       "state_file": str(folder / "state.json")},
        "watches": [{"name": "inbound", "to": "example.com"}],
        "outputs": [{"name": "file", "format": fmt, "sink": {"type": "file", "path": str(out)}}],
        "metrics": {"listen": None}, "logging": {"level": "warning", "format": "json"},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = measure(fmt, [sys.executable, "-m", "collector", "once", "-c", str(path)],
                     lambda _: sum(1 for _line in open(out, encoding="utf-8")))
    result.state_bytes = (folder / "state.json").stat().st_size
    return result


def floor_run(sim: Simulator, tmp: Path, start: datetime, end: datetime) -> Result:
    """The minimal loop over the same searches."""
    creds = sim.credentials
    argv = [sys.executable, str(ROOT / "benchmarks" / "floor.py"), sim.base_url, creds.client_id,
            creds.client_secret, start.isoformat(), end.isoformat(), str(int(WINDOW.total_seconds())),
            str(tmp / "floor.ndjson")]
    return measure("floor", argv, lambda out: int(out.strip()))


def bench(n: int, formats: list[str]) -> list[Result]:
    """All contenders against one simulator serving ``n`` tracked emails."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = now - PERIOD
    flow = MailFlow(seed=2026, start=start, end=now - timedelta(minutes=1), count=n, cache=True)
    for i in range(n):
        flow.message(i)
    results = []
    with Simulator(flow, cap=100_000, clock=lambda: now) as sim, tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        results.append(floor_run(sim, tmp, start, now))
        for fmt in formats:
            results.append(collector_run(sim, tmp, fmt, start))
    return results


def table(n: int, results: list[Result]) -> str:
    floor = next(r for r in results if r.name == "floor")
    lines = [f"N = {n:,} tracked emails over 24 h ({floor.events:,} match the watch)",
             "| run | events | wall s | events/s | CPU s | CPU us/event | peak RSS MiB | throughput vs floor | "
             "state bytes |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        per_event = r.cpu_s / r.events * 1e6 if r.events else 0
        ratio = r.rate / floor.rate if floor.rate else 0
        state = f"{r.state_bytes:,}" if r.state_bytes is not None else "-"
        lines.append(f"| {r.name} | {r.events:,} | {r.wall_s:.2f} | {r.rate:,.0f} | {r.cpu_s:.2f} | {per_event:.0f} | "
                     f"{r.rss_mib:.1f} | {ratio:.0%} | {state} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def main() -> int:
    """Run the benchmark and print the tables and the targets."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--million", action="store_true", help="also N = 1,000,000")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--formats", nargs="*", default=["raw", "ecs", "cef"])
    args = parser.parse_args()
    sizes = args.sizes + ([1_000_000] if args.million else [])
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    runs = {}
    for n in sizes:
        runs[n] = bench(n, args.formats)
        print(table(n, runs[n]) + "\n", flush=True)
    small, large = min(sizes), max(sizes)
    print("targets:")
    for fmt in ("ecs", "cef"):
        for n, results in runs.items():
            floor = next(r for r in results if r.name == "floor")
            mine = next((r for r in results if r.name == fmt), None)
            if mine:
                ratio = mine.rate / floor.rate
                print(f"  {fmt} at N={n:,}: {ratio:.0%} of the floor's throughput (target >= 50%): "
                      f"{'met' if ratio >= 0.5 else 'NOT met'}")
    if small != large:
        for fmt in args.formats:
            a = next(r for r in runs[small] if r.name == fmt)
            b = next(r for r in runs[large] if r.name == fmt)
            growth = b.rss_mib / a.rss_mib
            print(f"  {fmt} peak RSS at N={large:,} is {growth:.2f}x that at N={small:,} (target <= 1.25x): "
                  f"{'met' if growth <= 1.25 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
