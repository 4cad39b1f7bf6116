"""The commands behind the CLI: run, once, state show, state reset."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TextIO

import structlog

from collector.config import Config
from collector.daemon import Collector, Hangup
from collector.errors import ConfigError, StateCorruptError
from collector.logging import configure_logging
from collector.poller import CycleResult
from collector.state import SIDE_FILES, StateStore

__all__ = ["doctor", "once", "print_results", "reload", "run", "state_reset", "state_show"]


def _logging(config: Config) -> None:
    configure_logging(config.logging.level, config.logging.format, secrets=config.secrets())
    for text in config.collection.deprecations():
        structlog.get_logger("collector.config").warning("config.deprecated", reason=text)


def run(config: Config, hangup: Hangup | None = None) -> int:
    """``run``: the daemon; ``hangup`` is the SIGHUP handler installed before the checkpoint lock is taken."""
    _logging(config)
    collector = Collector(config, hangup=hangup)
    try:
        return collector.run_forever()
    finally:
        collector.close()


def reload(config: Config | None, pid: int | None = None) -> int:
    """``reload``: SIGHUP to ``pid`` if it is a collector, or to the collector holding this config's state lock."""
    if pid is not None:
        refusal = _not_a_collector(pid)
        if refusal:
            print(f"not signalling process {pid}: {refusal}", file=sys.stderr)
            return 1
    if pid is None:
        assert config is not None
        pid = StateStore(config.collection.state_file).holder()
        if pid is None:
            print(f"no collector is running on {config.collection.state_file}", file=sys.stderr)
            return 1
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"cannot signal process {pid}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _not_a_collector(pid: int) -> str:
    """Why ``pid`` is not a running mimecast-collector (its command line says), or ``""`` when it is one."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "no such process"
    if any(os.path.basename(a) == "mimecast-collector" for a in argv[:2]):
        return ""
    if argv[1:3] == ["-m", "collector"]:
        return ""
    program = os.path.basename(argv[0]) if argv else "unknown"
    return f"it is not a mimecast-collector (it runs {program})"


def doctor(config: Config, create: bool = False) -> int:
    """``doctor``: a verdict and a fix for each thing the collector depends on (``create``: make missing folders)."""
    from collector.doctor import run_doctor

    configure_logging("error", config.logging.format, secrets=config.secrets())
    return run_doctor(config, sys.stdout, create=create)


def once(config: Config, watches: Sequence[str] | None = None, hangup: Hangup | None = None) -> int:
    """``once``: one cycle of every (or the named) watch; 1 if any failed."""
    _logging(config)
    unknown = sorted(set(watches or ()) - {w.name for w in config.watches})
    if unknown:
        raise ConfigError([f"--watch: no watch named {name!r}" for name in unknown])
    progress = _Progress(sys.stderr) if sys.stderr.isatty() else None
    collector = Collector(config, on_chunk=progress.update if progress else None, hangup=hangup)
    try:
        results = collector.run_once(watches)
    finally:
        collector.close()
        if progress:
            progress.finish()
    print_results(results, sys.stderr)
    return 0 if all(r.ok for r in results) else 1


def print_results(results: Sequence[CycleResult], out: TextIO) -> None:
    """One plain line per watch: what was shipped, or why it failed."""
    for r in results:
        status = "ok" if r.ok else f"FAILED ({r.error.error_type}: {r.error})" if r.error else "interrupted"
        print(f"{r.watch}: {r.shipped} events shipped, {r.duplicates} duplicates dropped, "
              f"{r.invalid} invalid set aside, {r.chunks} windows ({r.splits} split at the result cap) - {status}",
              file=out)


def state_show(config: Config) -> int:
    """``state show``: the checkpoint of every watch as JSON (read-only: safe while the collector runs)."""
    store = StateStore(config.collection.state_file).open(lock=False)
    try:
        now = datetime.now(timezone.utc)
        configured = [w.name for w in config.watches]
        view = {
            "state_file": str(store.path),
            "watches": {name: _watch_view(store, name, now) for name in configured},
            "unconfigured_watches": sorted(set(store.watch_names()) - set(configured)),
            "outputs": {name: {"path": m.path, "committed_bytes": m.size} for name, m in store.outputs.items()},
        }
    finally:
        store.close()
    print(json.dumps(view, indent=2))
    return 0


def _watch_view(store: StateStore, name: str, now: datetime) -> dict[str, object]:
    watch = store.watch(name)
    mark, since = watch.watermark, watch.remembered_from
    return {"watermark": mark.isoformat() if mark else None,
            "behind_seconds": int((now - mark).total_seconds()) if mark else None,
            "remembered_keys": store.remembered(name),
            "remembered_from": since.isoformat() if since else None,
            "settled_to": watch.horizon.isoformat() if watch.horizon else None,
            "followed_seconds": sum(stage > 0 for _count, stage in watch.seconds.values()),
            "density_per_second": watch.density}


def state_reset(config: Config, watch: str | None = None) -> int:
    """``state reset``: forget one watch, or everything (an unreadable file is moved aside, never deleted)."""
    path = config.collection.state_file
    store = StateStore(path)
    try:
        store.open()
    except StateCorruptError:
        if watch is not None:
            raise
        backup = path.with_name(f"{path.name}.corrupt-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
        for side in ("", *SIDE_FILES):
            source = path.with_name(path.name + side)
            if source.exists():
                source.rename(backup.with_name(backup.name + side))
        print(f"moved the unreadable state file aside to {backup}; the next run starts afresh", file=sys.stderr)
        return 0
    try:
        if not store.reset(watch):
            print(f"watch {watch!r} has no checkpoint; nothing to reset", file=sys.stderr)
            return 0
    finally:
        store.close()
    what = f"watch {watch!r}" if watch else "every watch"
    print(f"reset {what}: the next run searches back {config.collection.initial_lookback} "
          "(events already shipped within that span and no longer remembered will be shipped again)",
          file=sys.stderr)
    return 0


class _Progress:
    """A one-line progress bar on a terminal for long catch-ups."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._shown = False

    def update(self, watch: str, done: int, total: int) -> None:
        """Redraw the bar after ``done`` of ``total`` seconds of the span searched (catch-ups over an hour)."""
        if total < 3600:
            return
        width = 30
        filled = width * done // total
        self._stream.write(f"\r{watch}: [{'#' * filled}{'.' * (width - filled)}] {100 * done // total:3d}% ")
        self._stream.flush()
        self._shown = True

    def finish(self) -> None:
        """End the bar's line."""
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()
