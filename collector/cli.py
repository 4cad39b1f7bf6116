"""Command line: ``mimecast-collector <command>``; the composition root of the daemon."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

from collector import __version__
from collector.config import Config, load_config
from collector.config import default_config_path, format_duration
from collector.errors import CollectorError, ConfigError, StateCorruptError, StateResourceError
from collector.search import add_search_parser, run_search
from collector.signals import Hangup
from collector.simulate import add_simulator_parser, run_simulator

__all__ = ["EX_BROKEN_PIPE", "EX_CONFIG", "EX_DATAERR", "EX_TEMPFAIL", "build_parser", "main"]

EX_CONFIG = 78
EX_DATAERR = 65
# The checkpoint's file system is full, read-only or not permitted: the service restarts and continues.
EX_TEMPFAIL = 75
EX_BROKEN_PIPE = 128 + 13


class _Parser(argparse.ArgumentParser):
    """argparse, but a wrong option is one line and exit 78 like every other invalid setting."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line and exit 78."""
        self.exit(EX_CONFIG, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _count(most: int) -> Callable[[str], int]:
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 1 <= value <= most:
            raise argparse.ArgumentTypeError(f"{value} is out of range (1 to {most})")
        return value
    return check


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = _Parser(prog="mimecast-collector",
                     description="Ship Mimecast message tracking to syslog or files as ECS or CEF.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("-c", "--config", type=Path, default=None,
                        help="configuration file (default: $MIMECAST_COLLECTOR_CONFIG, "
                             "else /etc/mimecast-collector/config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser("check-config", parents=[common],
                           help="validate the configuration and print a redacted summary")
    check.add_argument("--schema", action="store_true",
                       help="print the configuration's JSON Schema (for editors) instead, and exit")
    sub.add_parser("run", parents=[common], help="run the daemon: poll every watch on its interval")
    doctor = sub.add_parser("doctor", parents=[common],
                            help="check state, outputs, credentials and a search per watch (reads only)")
    doctor.add_argument("--create", action="store_true",
                        help="first create the missing folders of the state file and of the file outputs")
    reload = sub.add_parser("reload", parents=[common],
                            help="make a running collector reopen its output files (after log rotation)")
    # 0 and negative numbers would signal a whole process group, or every process there is.
    reload.add_argument("--pid", type=_count(2**22),
                        help="the collector's process id (default: the one holding the state)")
    once = sub.add_parser("once", parents=[common], help="poll every watch once, then exit (non-zero if any failed)")
    once.add_argument("--watch", action="append", help="only this watch (repeatable)")
    demo = sub.add_parser("demo", help="run the real pipeline against the built-in simulator, no setup needed")
    demo.add_argument("-c", "--config", type=Path, default=None,
                      help="take watches and outputs from this file (mimecast and state are the demo's)")
    demo.add_argument("--format", choices=("ecs", "cef", "raw"), default="ecs", help="event format on stdout")
    demo.add_argument("--messages", type=_count(100_000), default=800, help="messages in the simulated mail flow")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulated mail flow")
    add_search_parser(sub, common)
    add_simulator_parser(sub)
    state = sub.add_parser("state", help="inspect or reset the checkpoint")
    state_sub = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    state_sub.add_parser("show", parents=[common], help="print the checkpoint of every watch")
    reset = state_sub.add_parser("reset", parents=[common], help="forget the checkpoint (all, or one watch)")
    reset.add_argument("--watch", help="only this watch")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        # Before anything takes the checkpoint lock, which is where `reload` finds this pid.
        with Hangup().installed() as hangup:
            code = _command(args, hangup)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`check-config | head`): stop quietly with the status of a tool killed by
        # SIGPIPE; stdout goes to /dev/null so that the flush at exit cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EX_BROKEN_PIPE
    return code


def _command(args: argparse.Namespace, hangup: Hangup) -> int:
    try:
        if args.command == "demo":
            from collector.demo import run_demo

            return run_demo(config_path=args.config, fmt=args.format, messages=args.messages, seed=args.seed)
        if args.command == "simulator":
            return run_simulator(args)
        if args.command == "reload" and args.pid:
            from collector.commands import reload

            return reload(None, pid=args.pid)
        if args.command == "check-config" and args.schema:
            from collector.config.schema import schema_text

            sys.stdout.write(schema_text())
            return 0
        config = load_config(args.config or default_config_path())
        if args.command == "check-config":
            for text in config.collection.deprecations():
                print(f"warning: {text}", file=sys.stderr)
            print(summarize(config))
            return 0
        from collector import commands

        if args.command == "run":
            return commands.run(config, hangup=hangup)
        if args.command == "doctor":
            return commands.doctor(config, create=args.create)
        if args.command == "reload":
            return commands.reload(config)
        if args.command == "search":
            return run_search(config, args)
        if args.command == "once":
            return commands.once(config, watches=args.watch, hangup=hangup)
        if args.state_command == "show":
            return commands.state_show(config)
        return commands.state_reset(config, watch=args.watch)
    except ConfigError as exc:
        print(f"mimecast-collector: configuration is invalid ({len(exc.problems)} problem"
              f"{'s' if len(exc.problems) != 1 else ''}):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EX_CONFIG
    except StateCorruptError as exc:
        print(f"mimecast-collector: {exc}", file=sys.stderr)
        return EX_DATAERR
    except StateResourceError as exc:
        print(f"mimecast-collector: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except CollectorError as exc:  # a runtime condition found after the configuration passed: one line
        print(f"mimecast-collector: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def summarize(config: Config) -> str:
    """A redacted, human-readable summary of a valid configuration."""
    mc, col = config.mimecast, config.collection
    auth = mc.auth
    who = (f"oauth2, client_id {auth.client_id}, client_secret ***" if auth.type == "oauth2"
           else f"hmac, app_id {auth.app_id}, app_key ***, access_key ***, secret_key ***")
    lines = [
        f"configuration {config.source} is valid",
        f"mimecast: POST {mc.base_url}{mc.search_path} ({who})",
        f"  timeout {mc.timeout:g}s, retries {mc.retries}, tls_verify {mc.tls_verify}, proxy {mc.proxy or 'none'}, "
        f"quota reserve {mc.quota_reserve}",
        f"collection: every {_d(col.interval)}, window {_d(col.window)}, lag {_d(col.lag)}, "
        f"settle {_d(col.settle)}, follow [{', '.join(_d(a) for a in col.follow)}], initial lookback {_d(col.initial_lookback)}, result cap {col.result_cap}",
        f"  state {col.state_file}, dead letters {col.dead_letter_file}",
        f"watches ({len(config.watches)}):",
    ]
    for w in config.watches:
        filters = {"from": w.from_, "to": w.to, "subject": w.subject, "sender_ip": w.sender_ip,
                   "message_id": w.message_id, "status": ",".join(w.status), "route": ",".join(w.route)}
        lines.append(f"  {w.name}: " + ", ".join(f"{k}={v}" for k, v in filters.items() if v))
    lines.append(f"outputs ({len(config.outputs)}):")
    for o in config.outputs:
        sink = o.sink
        where = {"file": lambda: f"file {sink.path}", "stdout": lambda: "stdout",
                 "syslog": lambda: f"syslog {sink.transport}://{sink.host}:{sink.port} "
                                   f"({sink.protocol}, {'-' if sink.transport == 'udp' else sink.framing})"}
        lines.append(f"  {o.name}: {o.format} -> {where[sink.type]()}")
    listen = config.metrics.listen
    lines.append(f"metrics: {'http://%s:%d/metrics' % listen if listen else 'disabled'}")
    lines.append(f"logging: {config.logging.level}, {config.logging.format}")
    return "\n".join(lines)


def _d(value: timedelta) -> str:
    return format_duration(value)
