"""The syslog sink against a real rsyslog on loopback: UDP, TCP (both framings), TLS and mutual TLS."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.config import parse_config
from collector.daemon import Collector
from collector.errors import SinkError
from collector.formats import Event
from collector.formats.cef import CefFormatter
from collector.metrics import Metrics
from collector.records import parse_tracked_email
from collector.simulator import Filter, MailFlow, Simulator
from collector.sinks import Line
from collector.sinks.syslog import SyslogSink
from tests.cef_decoder import decode
from tests.conftest import config_dict, run_cli, write_config
from tests.rsyslog import Certs, Rsyslog, make_certs, require_rsyslog

pytestmark = pytest.mark.rsyslog
T = datetime(2026, 11, 27, 9, 15, tzinfo=timezone.utc)
BOM = "\ufeff"


@pytest.fixture(scope="session", name="certs")
def _certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    require_rsyslog()
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(name="plain")
def _plain(tmp_path: Path) -> Iterator[Rsyslog]:
    require_rsyslog()
    with Rsyslog(tmp_path / "rsyslog") as server:
        yield server


def sink_cfg(tmp_path: Path, **sink: Any) -> Any:
    data = {"mimecast": {"base_url": "https://api.services.mimecast.com",
                         "auth": {"type": "oauth2", "client_id": "c", "client_secret": "s"}},
            "collection": {"state_file": str(tmp_path / "s.json")},
            "watches": [{"name": "w", "to": "example.com"}],
            "outputs": [{"name": "siem", "format": "cef",
                         "sink": {"type": "syslog", "host": "127.0.0.1", "hostname": "collector01", **sink}}]}
    return parse_config(data, env={}, base_dir=tmp_path).outputs[0].sink


def cef_lines(count: int) -> list[Line]:
    """CEF lines for simulated records, nasty subjects included."""
    flow = MailFlow(seed=9, start=T - timedelta(hours=1), end=T, count=count)
    fmt = CefFormatter()
    lines = []
    for m in flow.between(flow.start, flow.end):
        status, info = m.lifecycle[0][1], m.lifecycle[0][2]
        event = Event(parse_tracked_email(m.to_json(status, info)), "w", T)
        lines.append(Line(fmt.format(event), fmt.severity(event), event.record.received))
    return lines


def body(message: dict[str, Any]) -> str:
    """The message body rsyslog parsed (RFC 3164 CEF arrives as tag 'CEF:' plus the rest)."""
    msg = message["msg"]
    if message["protocol-version"] == "0" and message["syslogtag"] == "CEF:":
        return "CEF:" + msg
    return msg[1:] if msg.startswith(BOM) else msg


@pytest.mark.parametrize(("transport", "framing", "protocol"), [
    ("udp", None, "rfc5424"), ("tcp", "lf", "rfc5424"), ("tcp", "octet-counting", "rfc5424"),
    ("tcp", "lf", "rfc3164"), ("udp", None, "rfc3164"),
])
def test_every_event_arrives_intact_once_and_in_order(plain: Rsyslog, tmp_path: Path, transport: str,
                                                      framing: str | None, protocol: str) -> None:
    """Each event is one message, in order, its body identical, its header fields parsed as intended."""
    port = plain.udp_port if transport == "udp" else plain.tcp_port
    extra = {"framing": framing} if framing else {}
    cfg = sink_cfg(tmp_path, transport=transport, port=port, protocol=protocol, msgid="tracking",
                   max_message_bytes=60_000 if transport != "udp" else 8000, **extra)
    lines = cef_lines(120)
    sink = SyslogSink("siem", cfg)
    for start in range(0, len(lines), 40):
        sink.write(lines[start:start + 40])
        sink.flush()
    sink.close()
    got = plain.messages(expected=len(lines))
    assert [body(m) for m in got] == [line.text for line in lines]
    for message, line in zip(got, lines):
        assert message["hostname"] == "collector01"
        assert int(message["syslogfacility"]) == 16
        assert int(message["syslogseverity"]) == {0: 6, 1: 6, 2: 6, 3: 6, 4: 5, 5: 5, 6: 5, 7: 4, 8: 4}[line.severity]
        assert message["timereported"].startswith(line.timestamp.strftime("%Y-%m-%dT%H:%M:%S"))
        if protocol == "rfc5424":
            assert message["app-name"] == "mimecast-collector" and message["msgid"] == "tracking"
            assert message["procid"].isdigit()
        decode(body(message))


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
@pytest.mark.parametrize("oversize", ["truncate", "drop"])
def test_a_100kb_subject_is_handled_per_oversize_and_never_split(certs: Certs, tmp_path: Path, transport: str,
                                                                 oversize: str) -> None:
    """The huge event is cut to max_message_bytes or dropped, counted, and never becomes two messages."""
    with Rsyslog(tmp_path / "rs", tls="anon" if transport == "tls" else None, certs=certs) as server:
        _oversize_case(server, tmp_path, transport, oversize, certs)


def _oversize_case(plain: Rsyslog, tmp_path: Path, transport: str, oversize: str, certs: Certs) -> None:
    lines = cef_lines(5)
    huge = lines[2].text.replace("msg=", "msg=" + "S" * 100_000, 1)
    lines[2] = Line(huge, lines[2].severity, lines[2].timestamp)
    metrics = Metrics(CollectorRegistry(), process=False)
    port = plain.udp_port if transport == "udp" else plain.tcp_port
    extra = {"ca_file": str(certs.ca)} if transport == "tls" else {}
    cfg = sink_cfg(tmp_path, transport=transport, port=port, oversize=oversize, **extra)
    sink = SyslogSink("siem", cfg, metrics=metrics)
    sink.write(lines)
    sink.flush()
    sink.close()
    expected = len(lines) - (1 if oversize == "drop" else 0)
    got = plain.messages(expected=expected)
    assert len(got) == expected
    assert metrics.registry.get_sample_value("mimecast_collector_syslog_oversize_total",
                                             {"output": "siem", "action": oversize}) == 1
    if oversize == "truncate":
        cut = got[2]
        assert len(cut["rawmsg"].encode()) <= cfg.max_message_bytes
        assert body(cut).startswith(huge[:200]) and "S" * 1000 in body(cut)
    assert [body(m) for m in got if "S" * 1000 not in body(m)] == [x.text for i, x in enumerate(lines) if i != 2]


@pytest.mark.parametrize("framing", ["octet-counting", "lf"])
def test_tls_delivers_with_server_verification(certs: Certs, tmp_path: Path, framing: str) -> None:
    """TLS to rsyslog with a certificate from our CA: every event arrives."""
    with Rsyslog(tmp_path / "rs", tls="anon", certs=certs) as server:
        cfg = sink_cfg(tmp_path, transport="tls", port=server.tcp_port, ca_file=str(certs.ca), framing=framing)
        lines = cef_lines(60)
        sink = SyslogSink("siem", cfg)
        sink.write(lines)
        sink.flush()
        sink.close()
        assert [body(m) for m in server.messages(expected=len(lines))] == [x.text for x in lines]


def test_tls_server_from_an_unknown_ca_is_refused(certs: Certs, tmp_path: Path) -> None:
    """A receiver whose certificate our CA did not sign is refused with a clear error; nothing is sent."""
    with Rsyslog(tmp_path / "rs", tls="anon", certs=certs, server_cert=(certs.rogue_cert, certs.rogue_key)) as server:
        cfg = sink_cfg(tmp_path, transport="tls", port=server.tcp_port, ca_file=str(certs.ca))
        sink = SyslogSink("siem", cfg)
        with pytest.raises(SinkError, match="certificate verification failed"):
            sink.write(cef_lines(3))
        assert server.messages() == []


def test_mutual_tls_needs_the_client_certificate(certs: Certs, tmp_path: Path) -> None:
    """A server that demands a client certificate rejects us without one and accepts us with it."""
    with Rsyslog(tmp_path / "rs", tls="mutual", certs=certs) as server:
        bare = SyslogSink("siem", sink_cfg(tmp_path, transport="tls", port=server.tcp_port, ca_file=str(certs.ca)))
        with pytest.raises(SinkError, match="client certificate"):
            bare.write(cef_lines(3))
            bare.flush()
        bare.close()
        assert server.messages() == []
        cfg = sink_cfg(tmp_path, transport="tls", port=server.tcp_port, ca_file=str(certs.ca),
                       cert_file=str(certs.client_cert), key_file=str(certs.client_key))
        sink = SyslogSink("siem", cfg)
        lines = cef_lines(20)
        sink.write(lines)
        sink.flush()
        sink.close()
        assert [body(m) for m in server.messages(expected=len(lines))] == [x.text for x in lines]


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_receiver_restart_mid_run_ends_with_every_event_delivered(certs: Certs, tmp_path: Path, now: datetime,
                                                                  transport: str) -> None:
    """While rsyslog is down the chunk fails and the state stays; after the restart everything arrives."""
    flow = MailFlow(seed=21, start=now - timedelta(hours=2), end=now, count=1200)
    clock = {"now": now - timedelta(minutes=40)}
    tls = "anon" if transport == "tls" else None
    server = Rsyslog(tmp_path / "rs", tls=tls, certs=certs).start()
    try:
        with Simulator(flow, clock=lambda: clock["now"]) as sim:
            sink = {"type": "syslog", "host": "127.0.0.1", "port": server.tcp_port, "transport": transport}
            if transport == "tls":
                sink["ca_file"] = str(certs.ca)
            data = config_dict(sim, tmp_path, outputs=[{"name": "siem", "format": "cef", "sink": sink}])
            collector = Collector(parse_config(data, env={}, base_dir=tmp_path), registry=CollectorRegistry())
            (first,) = collector.run_once(now=lambda: clock["now"])
            assert first.ok
            # Syslog has no application-level ack: a receiver stopped with unread data in its socket drops it.
            # Stop it after it has written what it was sent, as a planned restart would.
            assert len(server.messages(expected=first.shipped)) == first.shipped
            server.stop()
            clock["now"] = now
            (down,) = collector.run_once(now=lambda: now)
            assert not down.ok and down.error.error_type == "sink"
            assert collector.state.watch("inbound").watermark == clock["now"] - timedelta(minutes=40)
            server.start()
            deadline = datetime.now(timezone.utc) + timedelta(seconds=20)
            while True:
                (after,) = collector.run_once(now=lambda: now)
                if after.ok or datetime.now(timezone.utc) > deadline:
                    break
            collector.close()
            assert after.ok, after.error
    finally:
        server.stop()
    delivered = {(e.extension["cs1"], e.extension["act"]) for e in (decode(body(m)) for m in server.messages())}
    expected = flow.ground_truth(Filter(to="example.com"), now - timedelta(hours=4, minutes=40),
                                 now - timedelta(minutes=40), now - timedelta(minutes=40))
    expected |= flow.ground_truth(Filter(to="example.com"), now - timedelta(minutes=50), now, now)
    assert delivered == expected


def test_once_delivers_cef_over_tls_end_to_end(certs: Certs, tmp_path: Path, now: datetime) -> None:
    """mimecast-collector once with a CEF output to syslog over TLS delivers every expected event, once."""
    flow = MailFlow(seed=33, start=now - timedelta(hours=3, minutes=50), end=now - timedelta(minutes=5), count=2000)
    with Rsyslog(tmp_path / "rs", tls="anon", certs=certs) as server, Simulator(flow, clock=lambda: now) as sim:
        sink = {"type": "syslog", "host": "127.0.0.1", "port": server.tcp_port, "transport": "tls",
                "ca_file": str(certs.ca), "server_name": "localhost"}
        data = config_dict(sim, tmp_path, outputs=[{"name": "siem", "format": "cef", "sink": sink}])
        result = run_cli("once", "-c", str(write_config(tmp_path, data)))
        assert result.returncode == 0, result.stderr
        expected = flow.ground_truth(Filter(to="example.com"), flow.start, flow.end, now)
        got = server.messages(expected=len(expected))
    keys = [(e.extension["cs1"], e.extension["act"]) for e in (decode(body(m)) for m in got)]
    assert len(keys) == len(set(keys)) and set(keys) == expected and len(expected) > 500
