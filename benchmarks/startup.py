"""Benchmark: how long ``check-config`` takes on the example configuration, against an earlier revision.

    .venv/bin/python benchmarks/startup.py                   # this checkout alone
    .venv/bin/python benchmarks/startup.py --against af3b85b # and a revision, measured in turns

Each command runs as a fresh process (``python -m collector check-config -c config.example.yaml``),
with byte code written beforehand so that neither side pays for compiling. The two sides run in turns,
so that a busy machine slows both alike; the report gives medians and their ratio, and the floors that
no configuration code can go under: the interpreter alone, and the interpreter importing the libraries
the configuration is built on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ["-m", "collector", "check-config", "-c", "config.example.yaml"]
FLOORS = {"interpreter alone": ["-c", "pass"], "import yaml": ["-c", "import yaml"],
          "import yaml, pydantic.dataclasses": ["-c", "import yaml, pydantic.dataclasses"]}


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Milliseconds one ``python args`` run takes, start to exit."""
    began = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, check=True, capture_output=True)
    return (time.perf_counter() - began) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--against", metavar="REV", help="a git revision to compare with (e.g. the release before)")
    parser.add_argument("--runs", type=int, default=21, help="runs of each command (default 21)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        sides = {"this checkout": ROOT}
        if args.against:
            other = Path(tmp) / "other"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(other), args.against],
                           check=True)
            sides[args.against] = other
        try:
            return measure(sides, args.runs, env)
        finally:
            if args.against:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(sides[args.against])],
                               check=False)


def measure(sides: dict[str, Path], runs: int, env: dict[str, str]) -> int:
    commands = {f"check-config, {name}": (CHECK, folder) for name, folder in sides.items()}
    commands |= {name: (argv, ROOT) for name, argv in FLOORS.items()}
    for argv, folder in commands.values():  # write byte code, warm the page cache
        timed(argv, folder, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (argv, folder) in commands.items():
            times[name].append(timed(argv, folder, env))
    print(f"| command | median ms | min ms |  ({runs} runs each, in turns)")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} |")
    if len(sides) == 2:
        ours, theirs = (statistics.median(times[f"check-config, {name}"]) for name in sides)
        print(f"\nratio this checkout / {list(sides)[1]}: {ours / theirs:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
