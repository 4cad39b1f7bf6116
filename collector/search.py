"""``search``: one span searched completely with the daemon's engine, on a checkpoint of its own.

The daemon's checkpoint is never written (only read, to refuse a file it owns: see
``collector.ownership``): the search keeps its progress in a private checkpoint (the
``--resume`` file, else a temporary one), so it can run beside the daemon, be
interrupted, and continue where it stopped without writing an event twice.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from collector.config import Config, FileSinkConfig, MetricsConfig, OutputConfig, WatchConfig, parse_duration
from collector.errors import ConfigError
from collector.ownership import claim, owner, release
from collector.windows import RETENTION, floor_second

__all__ = ["Span", "add_search_parser", "resolve_span", "run_search"]

# Option name -> WatchConfig key: the same filters a configured watch has.
_FILTERS = {"to": "to", "from": "from", "subject": "subject", "sender_ip": "sender_ip",
            "message_id": "message_id", "status": "status", "route": "route"}
_NAME = "search"
# The daemon stays this far inside the retention too: an older start would be silently cut.
_MARGIN = timedelta(minutes=1)
# A file another checkpoint owns is refused like any bad option (EX_CONFIG).
_REFUSED = 78


@dataclass(frozen=True)
class Span:
    """The span ``[start, end)`` a search covers."""

    start: datetime
    end: datetime


def add_search_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the ``search`` sub-command."""
    p = sub.add_parser("search", parents=[common],
                       help="search a span once, completely, oldest first (investigation or backfill)")
    for name in ("to", "from", "subject", "sender_ip", "message_id"):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"{name.replace('_', ' ')} filter")
    p.add_argument("--status", action="append", help="keep only this status (repeatable)")
    p.add_argument("--route", action="append", help="keep only this route (repeatable)")
    p.add_argument("--watch", help="use the filters of this configured watch")
    p.add_argument("--since", help="search from this long ago (e.g. 3d, 12h; at most 29d)")
    p.add_argument("--start", help="search from this time (ISO 8601, e.g. 2026-05-01T00:00:00Z)")
    p.add_argument("--end", help="search up to this time (default: now less collection.lag)")
    p.add_argument("--format", choices=("ecs", "cef", "raw"), default=None, help="event format (default ecs)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("-o", "--out", type=Path,
                       help="append events to this file (default: stdout); a file a checkpoint owns is refused")
    where.add_argument("--output", help="deliver to this configured output (backfill)")
    p.add_argument("--resume", type=Path, metavar="FILE",
                   help="keep progress in FILE; running again with it continues without duplicates")


def resolve_span(args: argparse.Namespace, now: datetime, lag: timedelta) -> Span:
    """The span the options name, checked against Mimecast's 30-day retention.

    Raises:
        ConfigError: a bad time, an empty span, or one reaching back more than 30 days.
    """
    problems = []
    if args.since and args.start:
        problems.append("--since: give --since or --start, not both")
    end = floor_second(now - lag)
    start = None
    for option in ("end", "since", "start"):
        text = getattr(args, option)
        if not text:
            continue
        try:
            if option == "end":
                end = floor_second(_time(text))
            elif option == "since":
                start = floor_second(now) - min(parse_duration(text), RETENTION)  # longer is refused below
            else:
                start = floor_second(_time(text))
        except ValueError as exc:
            problems.append(f"--{option}: {exc}")
    if start is None and not problems:
        problems.append("--since: give a span with --since (e.g. 3d) or --start")
    if problems:
        raise ConfigError(problems)
    assert start is not None
    if end > floor_second(now):
        problems.append(f"--end: {_iso(end)} is in the future")
    if start >= end:
        problems.append(f"--start: the span is empty ({_iso(start)} is not before {_iso(end)})")
    if start < now - RETENTION + _MARGIN:
        problems.append(f"--since: {_iso(start)} is 30 days ago or more; Mimecast keeps tracking data 30 days "
                        "(search at most 29d back)")
    if problems:
        raise ConfigError(problems)
    return Span(start, end)


def run_search(config: Config, args: argparse.Namespace) -> int:
    """Run ``search``; 0 only when the whole span was searched and delivered."""
    from collector.commands import _logging

    watch, configured = _watch(config, args), _output(config, args)
    _logging(replace(config, logging=replace(config.logging, level="warning")))
    now = datetime.now(timezone.utc)
    resume = args.resume
    if resume is not None and resume.resolve() == config.collection.state_file.resolve():
        raise ConfigError(["--resume: that is the daemon's checkpoint (collection.state_file); use another file"])
    saved: dict[str, Any] | None = None
    if resume is not None and resume.exists():
        saved, span = _saved(resume)
        output = _beside(configured, saved, now)
        _same_search(resume, saved, watch, output)
    else:
        output, span = _beside(configured, None, now), resolve_span(args, now, config.collection.lag)
    target = Path(_path(output)) if _path(output) else None
    who = owner(target, config, resume) if target is not None else None
    if who is not None:
        print(f"search: refusing to append to {target}: it belongs to {who}; choose another file", file=sys.stderr)
        return _REFUSED
    if output is not configured:
        print(f"search: backfilling output {output.name!r} into {_path(output)} (beside the daemon's file, "
              "which only the daemon writes to)", file=sys.stderr)
    if resume is None:
        with tempfile.TemporaryDirectory(prefix="mimecast-search-") as tmp:
            return _search(config, watch, output, span, Path(tmp) / "search.state", resume=None)
    if saved is None:
        meta = {"start": _iso(span.start), "end": _iso(span.end), "watch": _describe(watch),
                "output": _describe(output), "file": _path(output)}
        try:
            _meta(resume).write_text(json.dumps(meta) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"--resume: cannot write {_meta(resume)}: {exc.strerror or exc}"]) from None
    if target is not None:
        claim(target, resume)
    code = _search(config, watch, output, span, resume, resume=resume)
    if code == 0 and target is not None:
        release(target)
    return code


def _search(config: Config, watch: WatchConfig, output: OutputConfig, span: Span, state_file: Path, *,
            resume: Path | None) -> int:
    from collector.commands import _Progress
    from collector.daemon import Collector, stopping_on_signals
    from collector.state import Advance

    collection = replace(config.collection, state_file=state_file, lag=timedelta(0), settle=timedelta(0), follow=(),
                         dead_letter_file=state_file.with_name(state_file.name + ".dead-letter.ndjson"))
    mine = replace(config, collection=collection, watches=(watch,), outputs=(output,), metrics=MetricsConfig(None))
    stop = threading.Event()
    progress = _Progress(sys.stderr) if sys.stderr.isatty() else None
    collector = Collector(mine, stop=stop, on_chunk=progress.update if progress else None)
    try:
        with stopping_on_signals(stop, on_stop=collector.arm_stop_deadline):
            if collector.state.watch(watch.name).watermark is None:
                collector.state.commit(Advance(watch.name, span.start, span.start))
            [result] = [p.run_cycle(datetime.now(timezone.utc), until=span.end) for p in collector.pollers]
            reached = collector.state.watch(watch.name).watermark or span.start
    finally:
        collector.close()
        if progress:
            progress.finish()
    complete = result.ok and reached >= span.end
    say = f"search: {result.shipped} events written, {result.duplicates} repeats dropped, " \
          f"{result.invalid} invalid set aside, {result.searches} searches"
    if complete:
        print(f"{say}; searched {_iso(span.start)} to {_iso(span.end)} completely", file=sys.stderr)
        return 0
    why = f"{result.error.error_type}: {result.error}" if result.error else "interrupted" if result.interrupted \
        else "Mimecast's clock has not reached the end of the span yet"
    again = f"run it again with --resume {resume} to continue" if resume else \
        "give --resume FILE to be able to continue an interrupted search"
    print(f"{say}; stopped ({why}) having searched {_iso(span.start)} to {_iso(reached)} of "
          f"{_iso(span.start)} to {_iso(span.end)}; {again}", file=sys.stderr)
    return 130 if result.interrupted else 1


def _watch(config: Config, args: argparse.Namespace) -> WatchConfig:
    given = {key: getattr(args, attr) for attr, key in _FILTERS.items() if getattr(args, attr)}
    if args.watch is not None:
        if given:
            raise ConfigError([f"--watch: give --watch or filter options ({', '.join(sorted(given))}), not both"])
        found = [w for w in config.watches if w.name == args.watch]
        if not found:
            raise ConfigError([f"--watch: no watch named {args.watch!r} (configured: "
                               f"{', '.join(w.name for w in config.watches)})"])
        return found[0]
    if not any(k in given for k in ("to", "from", "subject", "sender_ip", "message_id")):
        raise ConfigError(["--to: give at least one filter (--to, --from, --subject, --sender-ip or --message-id) "
                           "or --watch NAME; Mimecast refuses an empty search"])
    try:
        return TypeAdapter(WatchConfig).validate_python({"name": _NAME, **given})
    except ValidationError as exc:
        raise ConfigError([f"--{'.'.join(str(p) for p in e['loc']).replace('_', '-') or 'filters'}: {e['msg']}"
                           for e in exc.errors()]) from None


def _output(config: Config, args: argparse.Namespace) -> OutputConfig:
    if args.output is not None:
        if args.format is not None:
            raise ConfigError(["--format: an --output has its own format; give one or the other"])
        found = [o for o in config.outputs if o.name == args.output]
        if not found:
            raise ConfigError([f"--output: no output named {args.output!r} (configured: "
                               f"{', '.join(o.name for o in config.outputs)})"])
        return found[0]
    sink: dict[str, Any] = {"type": "file", "path": str(args.out.absolute())} if args.out else {"type": "stdout"}
    return TypeAdapter(OutputConfig).validate_python({"name": "search", "format": args.format or "ecs", "sink": sink})


def _beside(output: OutputConfig, saved: dict[str, Any] | None, now: datetime) -> OutputConfig:
    """A configured file output pointed at a backfill file beside the daemon's; any other output as it is.

    The daemon's checkpoint holds the committed length of its own file and cuts off anything longer at
    its next start, so a backfill never appends to that file: it writes ``<stem>.backfill-<UTC
    time><suffix>`` in the same folder, with the output's format and file settings. A resumed search
    keeps the file it started.
    """
    sink = output.sink
    if output.name == _NAME or not isinstance(sink, FileSinkConfig):
        return output
    chosen = Path(saved["file"]) if saved and isinstance(saved.get("file"), str) else \
        sink.path.with_name(f"{sink.path.stem}.backfill-{now:%Y%m%dT%H%M%SZ}{sink.path.suffix}")
    return replace(output, sink=replace(sink, path=chosen))


def _path(output: OutputConfig) -> str | None:
    return str(output.sink.path) if isinstance(output.sink, FileSinkConfig) else None


def _saved(resume: Path) -> tuple[dict[str, Any], Span]:
    """What ``FILE.search.json`` holds: the settings of the search that started it, and its span."""
    try:
        saved = json.loads(_meta(resume).read_text(encoding="utf-8"))
        return saved, Span(_time(saved["start"]), _time(saved["end"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError([f"--resume: {resume} is not the progress of a search (its {_meta(resume).name} "
                           "is missing or unreadable)"]) from None


def _same_search(resume: Path, saved: dict[str, Any], watch: WatchConfig, output: OutputConfig) -> None:
    if saved.get("watch") != _describe(watch) or saved.get("output") != _describe(output):
        raise ConfigError([f"--resume: {resume} belongs to a search with other filters or another output "
                           f"({saved.get('watch')} -> {saved.get('output')})"])


def _meta(resume: Path) -> Path:
    return resume.with_name(resume.name + ".search.json")


def _describe(section: Any) -> str:
    if isinstance(section, WatchConfig):
        filters = {k: getattr(section, "from_" if k == "from" else k) for k in _FILTERS.values()}
        return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in filters.items() if v}, sort_keys=True)
    return json.dumps({"name": section.name, "format": section.format,
                       "sink": str(getattr(section.sink, "path", section.sink.type))}, sort_keys=True)


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+01:00 or 9999-12-31T23:59-01:00: no such UTC time
        raise ValueError(f"{text.strip()!r} is outside the years 1 to 9999 in UTC") from None


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
