"""The Debian package, end to end on this machine: build, apt-get install, run, rotate, remove, purge.

It installs into the real system (/opt, /etc, /var), so it runs only as root, on a machine that may be
changed (CI's throwaway machine); it purges the package again at the end. Run it alone with -m package.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.test_daemon import wait_for

pytestmark = pytest.mark.package

PACKAGE = "mimecast-collector"
BIN = Path("/usr/bin/mimecast-collector")
ETC = Path("/etc/mimecast-collector")
STATE = Path("/var/lib/mimecast-collector")
LOGS = Path("/var/log/mimecast-collector")
LOGROTATE = Path("/etc/logrotate.d/mimecast-collector")
UNITS = Path("/lib/systemd/system")
FORWARDER = "mc-test-forwarder"
# Build tools and what installs them (.ci/run installs these).
TOOLS = {"dpkg-buildpackage": "dpkg-dev", "dh": "debhelper", "dh_virtualenv": "dh-virtualenv",
         "apt-get": "apt", "logrotate": "logrotate", "systemd-analyze": "systemd", "runuser": "util-linux",
         "useradd": "passwd"}
# What the build must not copy from a working tree.
NOT_SOURCE = (".git", ".venv", ".venv-*", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis", "build",
              "dist", ".debhelper", "debhelper-build-stamp", "files", "*.substvars")


def need(condition: bool, why: str) -> None:
    """Skip with the reason; under CI=true a missing prerequisite fails instead."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def sh(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure the assertion shows its output."""
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)
    if check:
        assert result.returncode == 0, f"{' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def installed() -> bool:
    """Whether dpkg knows the package in any state other than purged."""
    result = sh("dpkg-query", "-W", "-f=${Status}", PACKAGE, check=False)
    return result.returncode == 0 and "not-installed" not in result.stdout


@pytest.fixture(name="deb", scope="module")
def _deb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The package, built from a copy of this tree by the documented command."""
    need(os.geteuid() == 0, "the package test installs into the system: run it as root (CI does)")
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    need(not missing, f"apt-get install {' '.join(missing)} (.ci/run installs them)")
    need(not installed(), f"{PACKAGE} is installed on this machine already; the test would replace it")
    work = tmp_path_factory.mktemp("deb")
    source = work / PACKAGE
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE), symlinks=True)
    shutil.rmtree(source / "debian" / PACKAGE, ignore_errors=True)
    started = time.monotonic()
    sh("dpkg-buildpackage", "-us", "-uc", "-b", cwd=source, timeout=1200)
    print(f"package built in {time.monotonic() - started:.0f} s")
    (deb,) = work.glob(f"{PACKAGE}_*.deb")
    yield deb
    if installed():
        sh("apt-get", "purge", "-y", "-q", PACKAGE, check=False)
    sh("userdel", FORWARDER, check=False)


@pytest.fixture(name="simulator", scope="module")
def _simulator(deb: Path) -> Iterator[str]:
    """The installed package: its own simulator, serving on loopback; yields the ``mimecast:`` block it prints."""
    sh("apt-get", "install", "-y", "-q", f"./{deb.name}", cwd=deb.parent, env={**os.environ,
                                                                             "DEBIAN_FRONTEND": "noninteractive"})
    proc = subprocess.Popen([str(BIN), "simulator", "--port", str(free_port()), "--density", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    block = []
    for line in proc.stdout:
        if line.startswith("#"):
            break
        block.append(line)
    try:
        yield "".join(block)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def with_block(text: str, block: str) -> str:
    """The configuration ``text`` with its ``mimecast:`` block replaced, as docs/install.md does it."""
    start, end = text.index("\nmimecast:\n") + 1, text.index("\ncollection:\n") + 1
    return text[:start] + block + "\n" + text[end:]


def test_install_lays_out_the_application_and_starts_nothing(simulator: str) -> None:
    """The venv, the command, the units (not enabled), the conffile, the user and the folders with their modes."""
    assert os.path.realpath(BIN) == "/opt/mimecast-collector/bin/mimecast-collector"
    assert Path("/opt/mimecast-collector/bin/python3").resolve().parent == Path("/usr/bin")
    sh(str(BIN), "--version")
    assert "--create" in sh(str(BIN), "doctor", "--help").stdout
    for unit in ("mimecast-collector.service", "mimecast-collector@.service"):
        assert (UNITS / unit).is_file()
    assert not list(Path("/etc/systemd/system").rglob("mimecast-collector*")), "installing enabled the service"
    conffiles = sh("dpkg-query", "-W", "-f=${Conffiles}", PACKAGE).stdout
    assert str(ETC / "config.yaml") in conffiles and str(LOGROTATE) in conffiles
    user, group = pwd.getpwnam(PACKAGE), grp.getgrnam(PACKAGE)
    assert user.pw_gid == group.gr_gid and user.pw_shell == "/usr/sbin/nologin"
    for folder, mode, owner in ((STATE, 0o700, PACKAGE), (LOGS, 0o750, PACKAGE), (ETC / "credentials", 0o700, "root")):
        st = folder.stat()
        assert (st.st_mode & 0o7777, pwd.getpwuid(st.st_uid).pw_name) == (mode, owner), folder
    pip = sh("/opt/mimecast-collector/bin/python", "-m", "pip", "freeze", "--all").stdout.lower()
    locked = [line.split(" ")[0].lower() for line in (ROOT / "requirements.lock").read_text().splitlines()
              if "==" in line and not line.startswith("#")]
    assert all(pin.replace("_", "-") in pip.replace("_", "-") for pin in locked), (locked, pip)


def test_installed_demo_check_config_and_doctor(simulator: str, tmp_path: Path) -> None:
    """The installed demo runs; the shipped example is refused as is, and passes with the simulator's block."""
    demo = sh(str(BIN), "demo", "--messages", "200", cwd=tmp_path)
    assert demo.stdout.count("\n") > 0 and "Traceback" not in demo.stderr
    shipped = ETC / "config.yaml"
    refused = sh(str(BIN), "check-config", "-c", str(shipped), check=False)
    assert refused.returncode == 78 and "mimecast.auth.client_id: 'replace-with-" in refused.stderr
    assert shipped.read_text() == (ROOT / "config.example.yaml").read_text()
    shipped.write_text(with_block(shipped.read_text(), simulator))
    sh(str(BIN), "check-config")
    before = sorted(str(p) for folder in (STATE, LOGS) for p in folder.rglob("*"))
    doctor = sh(str(BIN), "doctor", check=False)
    assert doctor.returncode == 0 and "0 failed" in doctor.stdout, doctor.stdout
    assert sorted(str(p) for folder in (STATE, LOGS) for p in folder.rglob("*")) == before, "doctor wrote"


def test_installed_units_pass_systemd_analyze_verify(simulator: str) -> None:
    """systemd-analyze verify on the units as installed (their ExecStart exists, their user too)."""
    for unit in ("mimecast-collector.service", "mimecast-collector@emea.service"):
        result = sh("systemd-analyze", "verify", unit, check=False)
        assert result.returncode == 0 and result.stderr.strip() == "", (unit, result.stderr)


def test_logrotate_with_the_installed_file_and_a_forwarder_reads(simulator: str, tmp_path: Path) -> None:
    """The service's user writes the output; logrotate -f rotates it; after reload the next events go to the new file.

    No systemd runs here, so the test does what the unit does: runs the collector as its user with UMask=0027,
    and, after rotation, what ExecReload= runs (reload --pid MAINPID, as that user).
    """
    config = ETC / "rotate.yaml"
    text = with_block((ROOT / "config.example.yaml").read_text(), simulator)
    config.write_text(text.replace("interval: 5m ", "interval: 10s").replace("lag: 2m ", "lag: 0s")
                      .replace("listen: 127.0.0.1:9464", "listen: null"))
    log = tmp_path / "collector.log"
    out = LOGS / "tracking.ndjson"
    with open(log, "w") as stderr:
        daemon = subprocess.Popen([str(BIN), "run", "-c", str(config)], stderr=stderr, user=PACKAGE, group=PACKAGE,
                                  extra_groups=[], umask=0o027, cwd="/")
    try:
        wait_for(lambda: out.exists() and out.stat().st_size > 0, 120, f"events in {out}")
        st = out.stat()
        assert (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, st.st_mode & 0o777) == \
            (PACKAGE, PACKAGE, 0o640)

        sh("useradd", "--system", "--no-create-home", FORWARDER)
        denied = sh("runuser", "-u", FORWARDER, "--", "head", "-c", "1", str(out), check=False)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        sh("usermod", "--append", "--groups", PACKAGE, FORWARDER)
        read = sh("runuser", "-u", FORWARDER, "--", "head", "-n", "1", str(out))
        assert json.loads(read.stdout)["event"]["module"] == "mimecast", read.stdout
        assert sh("runuser", "-u", FORWARDER, "--", "ls", str(STATE), check=False).returncode != 0

        sh("logrotate", "-f", "-s", str(tmp_path / "logrotate.status"), str(LOGROTATE))
        rotated = LOGS / "tracking.ndjson.1"
        assert rotated.exists() and out.exists(), sorted(os.listdir(LOGS))
        st = out.stat()
        assert (pwd.getpwuid(st.st_uid).pw_name, st.st_mode & 0o777) == (PACKAGE, 0o640)
        sh("runuser", "-u", PACKAGE, "--", str(BIN), "reload", "--pid", str(daemon.pid))
        wait_for(lambda: out.stat().st_size > 0, 60, "the next events in the new file")
        size_old = rotated.stat().st_size
        time.sleep(11)
        assert rotated.stat().st_size == size_old, "events still went to the rotated file"
        ids = [json.loads(line)["event"]["id"] for f in (rotated, out) for line in f.read_text().splitlines()]
        assert len(ids) == len(set(ids)), "an event was written twice across the rotation"
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=90)
    assert daemon.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text() and "permission denied" not in log.read_text().lower()


def test_remove_keeps_configuration_and_checkpoint_purge_removes_them(simulator: str) -> None:
    """apt-get remove leaves /etc, the checkpoint and the outputs; apt-get purge takes them away, and the links of
    the service and of an instance that the operator enabled."""
    assert (STATE / "state.db").exists(), "the collector ran and left a checkpoint"
    wants = Path("/etc/systemd/system/multi-user.target.wants")
    links = [wants / "mimecast-collector.service", wants / "mimecast-collector@emea.service"]
    for link in links:  # what systemctl enable makes (it needs no running systemd for that)
        sh("systemctl", "enable", link.name, check=False)
        assert link.is_symlink(), link
    sh("apt-get", "remove", "-y", "-q", PACKAGE)
    assert not BIN.exists() and not Path("/opt/mimecast-collector").exists()
    for kept in (ETC / "config.yaml", ETC / "credentials", STATE / "state.db", LOGS / "tracking.ndjson", LOGROTATE):
        assert kept.exists(), kept
    sh("apt-get", "purge", "-y", "-q", PACKAGE)
    for gone in (ETC, STATE, LOGS, LOGROTATE, UNITS / "mimecast-collector.service", *links):
        assert not gone.exists() and not gone.is_symlink(), gone
    assert not installed()
