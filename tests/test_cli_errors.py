"""Mistakes found after the configuration passed: one plain line and exit 78 (a setting or an option) or 1
(a runtime condition), never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli, write_config
from tests.test_config import base


@pytest.fixture(name="busy_port")
def _busy_port() -> Iterator[int]:
    """A port on loopback that another process (this test) listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _plain(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_a_busy_metrics_port_is_one_line_and_exit_1(tmp_path: Path, busy_port: int) -> None:
    """Another process on metrics.listen's port: run says so in one line and exits 1 (a restart may find it
    free), with nothing written and the checkpoint lock released."""
    data = base(tmp_path)
    data["metrics"] = {"listen": f"127.0.0.1:{busy_port}"}
    cfg = write_config(tmp_path, data)
    result = run_cli("run", "-c", str(cfg), timeout=60)
    assert result.returncode == 1, result.stderr
    assert _plain(result) == (f"mimecast-collector: metrics.listen: 127.0.0.1:{busy_port} is already in use by "
                              "another process; stop it or choose another port\n")
    assert run_cli("reload", "-c", str(cfg)).returncode == 1, "no collector holds the lock any more"


@pytest.mark.parametrize(("listen", "said"), [
    ("host.invalid:9464", "metrics.listen: cannot resolve 'host.invalid'"),
    ("192.0.2.1:9464", "metrics.listen: cannot listen on 192.0.2.1:9464 (Cannot assign requested address)"),
])
def test_a_metrics_address_this_machine_cannot_take_is_a_config_error(tmp_path: Path, listen: str,
                                                                      said: str) -> None:
    """A host that does not resolve, or an address that is not this machine's: exit 78 naming the key."""
    data = base(tmp_path)
    data["metrics"] = {"listen": listen}
    result = run_cli("run", "-c", str(write_config(tmp_path, data)), timeout=60)
    assert result.returncode == 78, result.stderr
    assert said in _plain(result)


@pytest.mark.parametrize(("option", "said"), [
    (("--since", "99999999999d"), "--since: '99999999999d' is too long"),
    (("--since", "3000000d"), "is 30 days ago or more"),
    (("--since", "9" * 5000 + "d"), "--since: "),
    (("--start", "0001-01-01T00:00:00+01:00"), "--start: '0001-01-01T00:00:00+01:00' is outside the years 1 to"),
    (("--since", "1d", "--end", "9999-12-31T23:59:59-01:00"), "--end: '9999-12-31T23:59:59-01:00' is outside"),
])
def test_search_spans_out_of_any_range_are_option_errors(tmp_path: Path, option: tuple[str, ...],
                                                         said: str) -> None:
    """Durations and dates past what Python's clock holds are refused as options (78), not OverflowError."""
    cfg = write_config(tmp_path, base(tmp_path))
    result = run_cli("search", "-c", str(cfg), "--to", "example.com", *option)
    assert result.returncode == 78, result.stderr
    assert said in _plain(result)


def test_a_duration_too_long_for_any_clock_is_out_of_range_in_the_file(tmp_path: Path) -> None:
    """The same duration in the configuration names the key and its range."""
    data = base(tmp_path)
    data["collection"]["initial_lookback"] = "9" * 5000 + "d"
    result = run_cli("check-config", "-c", str(write_config(tmp_path, data)))
    assert result.returncode == 78 and "collection.initial_lookback: 9999" in _plain(result)
    assert "is out of range (1m to 30d)" in result.stderr


@pytest.mark.parametrize(("args", "said"), [
    (("reload", "--pid", "0"), "mimecast-collector reload: argument --pid: 0 is out of range"),
    (("reload", "--pid", "x"), "mimecast-collector reload: argument --pid: 'x' is not a whole number"),
    (("demo", "--messages", "0"), "mimecast-collector demo: argument --messages: 0 is out of range (1 to 100000)"),
    (("search", "--since"), "mimecast-collector search: argument --since: expected one argument"),
    (("no-such-command",), "mimecast-collector: argument COMMAND: invalid choice: 'no-such-command'"),
    (("simulator", "--density", "nan"), "--density: must be above 0 and at most 1000"),
    (("simulator", "--quota", "5/inf"), "--quota: expected LIMIT/SECONDS"),
])
def test_odd_option_values_are_one_line_and_exit_78(args: tuple[str, ...], said: str) -> None:
    """A wrong option is exit 78 like any invalid setting; reload --pid 0 signals nobody (kill(0) would reach
    the caller's whole process group), and the command runs in a session of its own in case it did."""
    result = subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True, text=True, timeout=60,
                            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
                            check=False)
    assert result.returncode == 78, (result.returncode, result.stderr)
    assert said in _plain(result)
    assert len(result.stderr.strip().splitlines()) <= 2


def test_a_resume_file_in_a_missing_folder_is_an_option_error(tmp_path: Path) -> None:
    """search --resume in a folder that does not exist: exit 78 naming --resume, not FileNotFoundError."""
    cfg = write_config(tmp_path, base(tmp_path))
    result = run_cli("search", "-c", str(cfg), "--to", "example.com", "--since", "1h",
                     "--resume", str(tmp_path / "missing" / "progress"))
    assert result.returncode == 78, result.stderr
    assert f"--resume: cannot write {tmp_path / 'missing' / 'progress.search.json'}: No such file or directory" \
        in _plain(result)


def test_an_output_that_cannot_be_opened_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A file output in a folder that cannot be created (under /proc): run and once say which output and why."""
    data = base(tmp_path)
    data["outputs"][0]["sink"]["path"] = "/proc/no-such-folder/out.ndjson"
    cfg = write_config(tmp_path, data)
    for command in ("run", "once"):
        result = run_cli(command, "-c", str(cfg), timeout=60)
        assert result.returncode == 1, result.stderr
        assert _plain(result).endswith("mimecast-collector: output 'o1': cannot open /proc/no-such-folder/out.ndjson: "
                                       "No such file or directory\n"), result.stderr
