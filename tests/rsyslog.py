"""A real rsyslogd on loopback with a throwaway configuration, and throwaway TLS certificates."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
PROBE = "rsyslog-harness-probe"
# rsyslog's TLS netstream drivers, in order of preference: GnuTLS (rsyslog-gnutls), OpenSSL (rsyslog-openssl).
TLS_DRIVERS = ("gtls", "ossl")
MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/aarch64-linux-gnu/rsyslog", "/usr/lib64/rsyslog",
               "/usr/lib/rsyslog")


def require_rsyslog() -> None:
    """Skip with a reason outside CI; in CI a missing rsyslog is a failure."""
    if Path(RSYSLOGD).exists():
        return
    _missing("rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)")


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; .ci/run installs what the tests need")
    pytest.skip(reason)


def module_dirs() -> list[Path]:
    """Where rsyslog's loadable modules may be: the usual folders, and any other lib/*/rsyslog."""
    found = [*MODULE_DIRS, *sorted(glob.glob("/usr/lib/*/rsyslog")), *sorted(glob.glob("/usr/local/lib*/rsyslog"))]
    return [Path(d) for d in dict.fromkeys(found) if Path(d).is_dir()]


def installed_tls_drivers(dirs: list[Path] | None = None) -> list[str]:
    """The TLS drivers whose module (``lmnsd_<driver>.so``) is installed, in order of preference."""
    dirs = module_dirs() if dirs is None else dirs
    return [d for d in TLS_DRIVERS if any((folder / f"lmnsd_{d}.so").is_file() for folder in dirs)]


def tls_driver(dirs: list[Path] | None = None, env: dict[str, str] | None = None) -> str:
    """The TLS driver the receiver uses: ``$RSYSLOG_TLS_DRIVER`` if set and installed, else the first installed.

    Skips with the reason when none is installed (a failure in CI, where ``.ci/run`` installs one).
    """
    env = os.environ if env is None else env
    installed = installed_tls_drivers(dirs)
    wanted = env.get("RSYSLOG_TLS_DRIVER")
    if wanted:
        if wanted not in installed:
            _missing(f"RSYSLOG_TLS_DRIVER={wanted} but rsyslog's lmnsd_{wanted}.so is not installed")
        return wanted
    if not installed:
        _missing("rsyslog has no TLS driver (apt-get install rsyslog-gnutls or rsyslog-openssl)")
    return installed[0]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Certs:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and a second, unrelated CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_cert: Path
    rogue_key: Path


def make_certs(folder: Path) -> Certs:
    """Generate the throwaway certificates with openssl."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    for ca in ("ca", "rogue-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=Test {ca}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.pem")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ca in (("server", "ca"), ("client", "ca"), ("rogue", "rogue-ca")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem")
    f = folder
    return Certs(f / "ca.pem", f / "server.pem", f / "server.key", f / "client.pem", f / "client.key",
                 f / "rogue-ca.pem", f / "rogue.pem", f / "rogue.key")


class Rsyslog:
    """rsyslogd listening on UDP and TCP (plain, TLS or mutual TLS), writing each message as JSON."""

    # Every receiver started and not yet stopped, so a test that fails half-way leaves no rsyslogd behind.
    running: ClassVar[set[Rsyslog]] = set()

    def __init__(self, folder: Path, *, tls: str | None = None, certs: Certs | None = None,
                 server_cert: tuple[Path, Path] | None = None, max_message_size: str = "64k",
                 driver: str | None = None) -> None:
        self.folder = folder
        self.driver: str | None = None
        self.pid: int | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tcp_port = free_port()
        self.output = folder / "messages.jsonl"
        tls_global, tls_module = "", ""
        if tls is not None:
            assert certs is not None
            cert, key = server_cert or (certs.server_cert, certs.server_key)
            self.driver = driver or tls_driver()
            tls_global = (f' defaultNetstreamDriver="{self.driver}" defaultNetstreamDriverCAFile="{certs.ca}"'
                          f' defaultNetstreamDriverCertFile="{cert}" defaultNetstreamDriverKeyFile="{key}"')
            mode = "x509/certvalid" if tls == "mutual" else "anon"
            tls_module = f' streamDriver.name="{self.driver}" streamDriver.mode="1" streamDriver.authMode="{mode}"'
        self.conf = folder / "rsyslog.conf"
        self.conf.write_text(f"""
global(workDirectory="{folder}" maxMessageSize="{max_message_size}"{tls_global})
module(load="imudp")
module(load="imtcp"{tls_module})
input(type="imudp" address="127.0.0.1" port="{self.udp_port}" rcvbufSize="4m")
input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}")
template(name="json" type="string" string="%jsonmesg%\\n")
*.* action(type="omfile" file="{self.output}" template="json")
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15) -> Rsyslog:
        """Start rsyslogd and wait until it listens; stop it again if it does not."""
        with open(self.folder / "rsyslogd.out", "ab") as out:
            self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.folder / "pid")],
                                         stdout=out, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        Rsyslog.running.add(self)
        try:
            return self._wait_listening(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self, timeout: float) -> Rsyslog:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {(self.folder / 'rsyslogd.out').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.tcp_port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
                continue
            if self._udp_ready(deadline):
                return self
        raise RuntimeError(f"rsyslogd did not start listening: {(self.folder / 'rsyslogd.out').read_text()}")

    def _udp_ready(self, deadline: float) -> bool:
        """Send probe datagrams until one is written out: the UDP input is bound."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            while time.monotonic() < deadline:
                probe.sendto(f"<134>{PROBE}".encode(), ("127.0.0.1", self.udp_port))
                time.sleep(0.1)
                if self.output.exists() and PROBE in self.output.read_text(encoding="utf-8"):
                    return True
        return False

    def stop(self) -> None:
        """Stop rsyslogd (SIGTERM, flushing what it received; SIGKILL if it does not go)."""
        proc, self.proc = self.proc, None
        Rsyslog.running.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)

    @classmethod
    def stop_all(cls) -> None:
        """Stop every receiver still running."""
        for receiver in list(cls.running):
            receiver.stop()

    def messages(self, expected: int | None = None, timeout: float = 15) -> list[dict[str, Any]]:
        """The messages received so far (without the start-up probes), waiting until ``expected`` have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._read()
            if expected is None or len(found) >= expected or time.monotonic() > deadline:
                if expected is not None and len(found) >= expected:
                    time.sleep(0.3)  # anything beyond the expected count would show up now
                    found = self._read()
                return found
            time.sleep(0.05)

    def _read(self) -> list[dict[str, Any]]:
        if not self.output.exists():
            return []
        text = self.output.read_bytes().decode("utf-8", "replace")
        complete = text[:text.rfind("\n") + 1]  # rsyslog may be half-way through writing the last line
        return [m for m in map(json.loads, complete.splitlines()) if PROBE not in m.get("rawmsg", "")]

    def __enter__(self) -> Rsyslog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
