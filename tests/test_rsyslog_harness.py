"""The rsyslog test receiver: whichever TLS driver is installed, and no rsyslogd left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collector.config import parse_config
from collector.sinks.syslog import SyslogSink
from tests.rsyslog import Certs, Rsyslog, installed_tls_drivers, make_certs, require_rsyslog, tls_driver
from tests.test_syslog_rsyslog import body, cef_lines

pytestmark = pytest.mark.rsyslog


@pytest.fixture(scope="module", name="certs")
def _certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    require_rsyslog()
    return make_certs(tmp_path_factory.mktemp("certs"))


def modules(tmp_path: Path, *names: str) -> list[Path]:
    """A module folder holding exactly ``names``."""
    folder = tmp_path / "modules"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"\x7fELF")
    return [folder]


def test_the_installed_tls_driver_is_used_gnutls_first(tmp_path: Path) -> None:
    """GnuTLS when present, OpenSSL when it is the only one; $RSYSLOG_TLS_DRIVER picks an installed one."""
    both = modules(tmp_path, "lmnsd_ptcp.so", "lmnsd_ossl.so", "lmnsd_gtls.so")
    assert installed_tls_drivers(both) == ["gtls", "ossl"]
    assert tls_driver(both, env={}) == "gtls"
    assert tls_driver(both, env={"RSYSLOG_TLS_DRIVER": "ossl"}) == "ossl"
    (both[0] / "lmnsd_gtls.so").unlink()
    assert tls_driver(both, env={}) == "ossl"


def test_without_a_tls_driver_tls_tests_skip_with_the_reason_outside_ci(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither driver: skipped, naming both packages; in CI the same is a failure."""
    plain_only = modules(tmp_path, "lmnsd_ptcp.so", "imtcp.so")
    assert installed_tls_drivers(plain_only) == []
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="rsyslog-gnutls or rsyslog-openssl"):
        tls_driver(plain_only, env={})
    with pytest.raises(pytest.skip.Exception, match="lmnsd_gtls.so is not installed"):
        tls_driver(plain_only, env={"RSYSLOG_TLS_DRIVER": "gtls"})
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no TLS driver"):
        tls_driver(plain_only, env={})


def tls_sink(tmp_path: Path, port: int, certs: Certs, **extra: str) -> SyslogSink:
    data = {"mimecast": {"base_url": "https://api.services.mimecast.com",
                         "auth": {"type": "oauth2", "client_id": "c", "client_secret": "s"}},
            "collection": {"state_file": str(tmp_path / "s.json")},
            "watches": [{"name": "w", "to": "example.com"}],
            "outputs": [{"name": "siem", "format": "cef",
                         "sink": {"type": "syslog", "host": "127.0.0.1", "port": port, "transport": "tls",
                                  "ca_file": str(certs.ca), **extra}}]}
    return SyslogSink("siem", parse_config(data, env={}, base_dir=tmp_path).outputs[0].sink)


@pytest.mark.parametrize("driver", ["gtls", "ossl"])
@pytest.mark.parametrize("tls", ["anon", "mutual"])
def test_tls_delivery_through_each_installed_driver(certs: Certs, tmp_path: Path, driver: str, tls: str) -> None:
    """The receiver works with GnuTLS and with OpenSSL; a driver that is not installed is skipped (CI: failed)."""
    if driver not in installed_tls_drivers():
        tls_driver(env={"RSYSLOG_TLS_DRIVER": driver})  # skips (fails in CI) with the reason
    client = {"cert_file": str(certs.client_cert), "key_file": str(certs.client_key)} if tls == "mutual" else {}
    with Rsyslog(tmp_path / "rs", tls=tls, certs=certs, driver=driver) as server:
        assert f'streamDriver.name="{driver}"' in server.conf.read_text()
        sink = tls_sink(tmp_path, server.tcp_port, certs, **client)
        lines = cef_lines(20)
        sink.write(lines)
        sink.flush()
        sink.close()
        got = server.messages(expected=len(lines))
    assert [body(m) for m in got] == [x.text for x in lines]


def test_a_receiver_that_never_listens_is_stopped(certs: Certs, tmp_path: Path) -> None:
    """rsyslogd asked for a TLS driver that does not exist never listens: start fails and the process is gone."""
    server = Rsyslog(tmp_path / "rs", tls="anon", certs=certs, driver="nosuchdriver")
    with pytest.raises(RuntimeError, match="rsyslogd"):
        server.start(timeout=3)
    assert server.pid is not None and server.proc is None
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
    assert server not in Rsyslog.running
