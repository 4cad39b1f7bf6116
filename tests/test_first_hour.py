"""The first hour of an operator: the example configuration, doctor that only reads, and plain answers."""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.schedulers.background import BackgroundScheduler

from collector import __version__
from collector.cli import build_parser
from collector.logging import configure_logging
from collector.simulate import mimecast_block
from collector.simulator import Simulator
from tests.conftest import ROOT, config_dict, run_cli, write_config

EXAMPLE = ROOT / "config.example.yaml"


def example_for(sim: Simulator) -> str:
    """The shipped example with only its ``mimecast:`` block replaced by the one ``simulator`` prints."""
    text = EXAMPLE.read_text(encoding="utf-8")
    start, end = text.index("\nmimecast:\n") + 1, text.index("\ncollection:\n") + 1
    return text[:start] + mimecast_block(sim.base_url, sim) + "\n" + text[end:]


def tree(root: Path) -> list[str]:
    """Every path below ``root``, to see what a command left behind."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_example_placeholders_are_refused_with_the_key_to_fill_in(tmp_path: Path) -> None:
    """The example as shipped fails check-config with 78, naming the placeholder's dotted key and the missing secret."""
    (tmp_path / "credentials").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    result = run_cli("check-config", "-c", str(config))
    assert result.returncode == 78, result.stdout + result.stderr
    assert ("mimecast.auth.client_id: 'replace-with-your-api-2.0-client-id' is the example's placeholder: "
            "replace it with your api 2.0 client id") in result.stderr
    assert "mimecast.auth.client_secret_file:" in result.stderr
    (tmp_path / "credentials" / "client_secret").write_text("s3cret-value\n")
    result = run_cli("check-config", "-c", str(config))
    assert result.returncode == 78 and "(1 problem)" in result.stderr, result.stderr
    assert "s3cret-value" not in result.stdout + result.stderr


def test_example_names_its_state_for_what_it_is_and_reads_the_secret_from_a_file() -> None:
    """state.db (an SQLite database), client_secret_file, and no output that needs a receiver to exist."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "state_file: /var/lib/mimecast-collector/state.db\n" in text and "state.json" not in text
    assert "client_secret_file: client_secret\n" in text and "\n    client_secret:" not in text
    assert "\n  - name: siem" not in text, "a second output would fail doctor until a receiver exists"


def test_example_with_the_simulators_block_passes_check_config_and_doctor(sim: Simulator, tmp_path: Path) -> None:
    """Only the mimecast block changed: check-config passes; doctor passes once the folders are where they point."""
    text = example_for(sim)
    config = tmp_path / "config.yaml"
    config.write_text(text, encoding="utf-8")
    result = run_cli("check-config", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "state /var/lib/mimecast-collector/state.db" in result.stdout
    # The folders the package makes, here below tmp_path; nothing else changes.
    moved = tmp_path / "moved.yaml"
    moved.write_text(text.replace("/var/lib/mimecast-collector/", f"{tmp_path}/lib/")
                     .replace("/var/log/mimecast-collector/", f"{tmp_path}/log/"), encoding="utf-8")
    (tmp_path / "lib").mkdir()
    (tmp_path / "log").mkdir()
    result = run_cli("doctor", "-c", str(moved))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout


def test_doctor_only_reads(sim: Simulator, tmp_path: Path) -> None:
    """doctor creates no state, lock, output file or folder; missing folders fail with the --create fix."""
    before = tree(tmp_path)
    data = config_dict(sim, tmp_path, collection={"state_file": str(tmp_path / "new" / "lib" / "state.db")},
                       outputs=[{"name": "archive", "format": "ecs",
                                 "sink": {"type": "file", "path": str(tmp_path / "new" / "log" / "out.ndjson")}}])
    config = write_config(tmp_path, data)
    before = tree(tmp_path)
    result = run_cli("doctor", "-c", str(config))
    assert result.returncode == 1, result.stdout
    assert tree(tmp_path) == before, "doctor created files"
    assert f"[FAIL] state: the state folder {tmp_path}/new/lib does not exist" in result.stdout
    assert f"[FAIL] output archive: cannot append to {tmp_path}/new/log/out.ndjson: its folder" in result.stdout
    assert "mimecast-collector doctor --create" in result.stdout

    result = run_cli("doctor", "--create", "-c", str(config))
    assert result.returncode == 0, result.stdout
    assert tree(tmp_path) == sorted(before + ["new", "new/lib", "new/log"]), "--create makes the folders only"


def test_doctor_reads_an_existing_checkpoint_without_writing_beside_it(sim: Simulator, tmp_path: Path) -> None:
    """After a run, doctor checks the checkpoint but leaves no -wal, -shm or changed file behind."""
    config = write_config(tmp_path, config_dict(sim, tmp_path))
    assert run_cli("once", "-c", str(config)).returncode == 0
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    result = run_cli("doctor", "-c", str(config))
    assert result.returncode == 0, result.stdout
    assert "[OK  ] state: " in result.stdout and "is readable and writable" in result.stdout
    assert {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == before


def test_duplicate_watch_name_is_reported_with_the_type_errors(tmp_path: Path, sim: Simulator) -> None:
    """One pass: a repeated name and a bad value elsewhere are both reported."""
    watches = [{"name": "a", "to": "example.com"}, {"name": "a", "to": "example.com"},
               {"name": "b", "sender_ip": "300.1.1.1"}]
    data = config_dict(sim, tmp_path, watches=watches)
    data["mimecast"]["timeout"] = "5x"
    result = run_cli("check-config", "-c", str(write_config(tmp_path, data)))
    assert result.returncode == 78
    for problem in ("mimecast.timeout: '5x' is not a duration", "watches[2].sender_ip: '300.1.1.1' is not",
                    "watches[1].name: duplicate name 'a'"):
        assert problem in result.stderr, result.stderr
    assert "(3 problems)" in result.stderr


def test_unset_variable_is_reported_once(tmp_path: Path, sim: Simulator) -> None:
    """A secret from an unset ${VAR} is one problem, not a second 'empty' one at the same key."""
    data = config_dict(sim, tmp_path)
    data["mimecast"]["auth"]["client_secret"] = "${MC_TEST_UNSET_SECRET}"
    result = run_cli("check-config", "-c", str(write_config(tmp_path, data)))
    assert result.returncode == 78
    lines = [line for line in result.stderr.splitlines() if "client_secret" in line]
    assert lines == ["  mimecast.auth.client_secret: environment variable MC_TEST_UNSET_SECRET is not set"], lines


def test_state_directory_by_hand_says_what_to_write_instead(tmp_path: Path, sim: Simulator) -> None:
    """${STATE_DIRECTORY} exists only inside the service: by hand the problem says to write the folder itself."""
    data = config_dict(sim, tmp_path, collection={"state_file": "${STATE_DIRECTORY}/state.db"})
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    result = subprocess.run([sys.executable, "-m", "collector", "check-config", "-c",
                             str(write_config(tmp_path, data))], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 78
    assert ("collection.state_file: environment variable STATE_DIRECTORY is not set (systemd sets it for the "
            "service only; write the folder itself, e.g. /var/lib/mimecast-collector/NAME") in result.stderr


def test_output_cut_short_by_the_reader_ends_quietly(tmp_path: Path, sim: Simulator) -> None:
    """`check-config | head`: the reader is gone before we write; no BrokenPipe traceback, SIGPIPE's status."""
    config = write_config(tmp_path, config_dict(sim, tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "collector", "check-config", "-c", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert "BrokenPipe" not in err and "Traceback" not in err and "Exception ignored" not in err, err
    assert proc.returncode == 141


@pytest.mark.parametrize(("level", "shown"), [("info", False), ("debug", True)])
def test_schedulers_skipped_run_warning_is_debug_detail(level: str, shown: bool) -> None:
    """A real APScheduler job overrunning its interval: its 'maximum number of running instances' line is debug."""
    stream = io.StringIO()
    configure_logging(level, "json", stream=stream)
    skipped = []
    scheduler = BackgroundScheduler(job_defaults={"max_instances": 1, "coalesce": True})
    scheduler.add_listener(skipped.append, EVENT_JOB_MAX_INSTANCES)
    scheduler.add_job(time.sleep, "interval", seconds=1, args=(2.5,), id="slow")
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while not skipped and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        scheduler.shutdown(wait=False)
        logging.getLogger().handlers.clear()
    assert skipped, "the job overran its interval and a run was skipped"
    lines = [line for line in stream.getvalue().splitlines() if "maximum number of running instances" in line]
    if shown:
        assert lines and all('"level": "debug"' in line for line in lines), stream.getvalue()
    else:
        assert lines == [], lines


def test_reload_refuses_a_process_that_is_not_a_collector(tmp_path: Path) -> None:
    """reload --pid of an unrelated process sends nothing and exits non-zero."""
    other = subprocess.Popen(["sleep", "30"])
    try:
        result = run_cli("reload", "--pid", str(other.pid))
        time.sleep(0.2)
        assert other.poll() is None, "the unrelated process was signalled"
        assert result.returncode == 1
        assert f"not signalling process {other.pid}: it is not a mimecast-collector (it runs sleep)" in result.stderr
    finally:
        other.kill()
        other.wait()
    result = run_cli("reload", "--pid", str(other.pid))
    assert result.returncode == 1 and "no such process" in result.stderr


def full_help(parser: argparse.ArgumentParser) -> str:
    """What --help prints for ``parser`` and for each of its own sub-commands (``state show``, ``state reset``)."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser.format_help() + "".join(full_help(p) for a in nested for p in a.choices.values())


def test_help_and_the_readme_name_the_same_commands_and_options() -> None:
    """Every command --help lists has a row in the README's table, and every option a row shows exists."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Commands"):]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `mimecast-collector ([a-z-]+)[^`]*`.*$", table, re.M)}
    assert set(commands) == set(rows), (sorted(commands), sorted(rows))
    for name, row in rows.items():
        shown = set(re.findall(r"(--[a-z][a-z-]*)", row.split("|")[1]))
        helped = full_help(commands[name])
        for option in shown:
            assert option in helped, (name, option)


def test_an_instance_configured_as_the_install_page_says_uses_the_template_units_folders(tmp_path: Path) -> None:
    """The install page's commands for mimecast-collector@emea write the state and outputs where its unit lets it."""
    page = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    command = re.search(r"^sed -e .*?emea\.yaml$", page, re.M | re.S)
    assert command, "the install page makes emea.yaml from the example with sed"
    made = tmp_path / "emea.yaml"
    script = (command.group(0).replace("/usr/share/doc/mimecast-collector/examples/config.example.yaml", str(EXAMPLE))
              .replace("/etc/mimecast-collector/emea.yaml", str(made)))
    subprocess.run(["bash", "-c", script], check=True)
    unit = (ROOT / "systemd" / "mimecast-collector@.service").read_text()
    state_dir = "/var/lib/" + re.search(r"^StateDirectory=(\S+)$", unit, re.M).group(1).replace("%i", "emea")
    logs_dir = "/var/log/" + re.search(r"^LogsDirectory=(\S+)$", unit, re.M).group(1).replace("%i", "emea")
    data = yaml.safe_load(made.read_text())
    assert Path(data["collection"]["state_file"]).parent == Path(state_dir)
    assert all(Path(o["sink"]["path"]).parent == Path(logs_dir) for o in data["outputs"] if o["sink"]["type"] == "file")
    assert data["metrics"]["listen"] != "127.0.0.1:9464", "each instance its own metrics port"


def pins(lock: Path) -> dict[str, str]:
    """``name: version`` of every requirement in a pip-compile lock file."""
    found = re.findall(r"^([A-Za-z0-9._-]+)==(\S+) \\$", lock.read_text(encoding="utf-8"), re.M)
    return {name.lower().replace("_", "-"): version for name, version in found}


def test_the_package_and_the_tests_install_the_same_locked_versions() -> None:
    """Every dependency the package installs is at the same version in the test lock; every pin carries hashes."""
    runtime, test = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-test.lock")
    assert {"pydantic", "requests", "apscheduler", "structlog", "prometheus-client", "pyyaml"} <= set(runtime)
    assert {name: test.get(name) for name in runtime if name != "setuptools"} == \
        {name: v for name, v in runtime.items() if name != "setuptools"}
    for lock in ("requirements.lock", "requirements-test.lock"):
        text = (ROOT / lock).read_text(encoding="utf-8")
        blocks = [b for b in re.split(r"\n(?=[A-Za-z])", text) if "==" in b]
        assert blocks and all("--hash=sha256:" in b for b in blocks), lock


def test_the_debian_changelog_carries_the_collectors_version() -> None:
    """The .deb is named for the version the collector reports."""
    first = (ROOT / "debian" / "changelog").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"mimecast-collector ({__version__}) "), first
