"""Syslog message building: exact headers, PRI, framing, and truncation that never breaks a character."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector.config import parse_config
from collector.config import SyslogSinkConfig
from collector.sinks.syslogmsg import MessageBuilder, frame, syslog_severity, truncate_utf8

T = datetime(2026, 11, 7, 9, 5, 3, 250000, tzinfo=timezone.utc)


def sink_config(tmp_path: Path, **sink: object) -> SyslogSinkConfig:
    data = {"mimecast": {"base_url": "https://api.services.mimecast.com",
                         "auth": {"type": "oauth2", "client_id": "c", "client_secret": "s"}},
            "collection": {"state_file": str(tmp_path / "s.json")},
            "watches": [{"name": "w", "to": "example.com"}],
            "outputs": [{"name": "o", "format": "cef", "sink": {"type": "syslog", "host": "127.0.0.1",
                                                                "hostname": "collector01", **sink}}]}
    return parse_config(data, env={}, base_dir=tmp_path).outputs[0].sink


def test_rfc5424_header_is_exact(tmp_path: Path) -> None:
    """<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG, local0, severity from the event."""
    cfg = sink_config(tmp_path, msgid="tracking")
    message, truncated = MessageBuilder(cfg).build("CEF:0|x", 7, T)
    pid = message.split(b" ")[4].decode()
    assert message == f"<132>1 2026-11-07T09:05:03.250Z collector01 mimecast-collector {pid} tracking - CEF:0|x".encode()
    assert not truncated and pid.isdigit()


def test_rfc3164_cef_form_has_no_tag_and_a_padded_day(tmp_path: Path) -> None:
    """<PRI>Mmm dd hh:mm:ss HOST CEF:0|... for CEF; other messages get an app[pid]: tag."""
    cfg = sink_config(tmp_path, protocol="rfc3164", facility="mail", transport="tcp")
    builder = MessageBuilder(cfg)
    assert builder.build("CEF:0|x", 3, T)[0] == b"<22>Nov  7 09:05:03 collector01 CEF:0|x"
    assert builder.build('{"a":1}', 3, T)[0].startswith(b"<22>Nov  7 09:05:03 collector01 mimecast-collector[")


def test_bom_is_optional(tmp_path: Path) -> None:
    """bom: true puts the UTF-8 BOM right before MSG."""
    message, _ = MessageBuilder(sink_config(tmp_path, bom=True)).build("hé", 3, T)
    assert message.endswith(b" - \xef\xbb\xbfh\xc3\xa9")


@pytest.mark.parametrize(("severity", "syslog"), [(0, 6), (3, 6), (4, 5), (6, 5), (7, 4), (8, 4), (9, 3), (10, 3)])
def test_severity_bands(severity: int, syslog: int) -> None:
    """CEF low/medium/high/very-high map to info/notice/warning/err."""
    assert syslog_severity(severity) == syslog


def test_framing() -> None:
    """Octet counting counts bytes, not characters; LF framing appends one LF."""
    assert frame("é".encode(), "octet-counting") == b"2 \xc3\xa9"
    assert frame(b"abc", "lf") == b"abc\n"


def test_truncation_respects_characters_and_escapes() -> None:
    """A cut never splits a UTF-8 character and never leaves a dangling backslash."""
    assert truncate_utf8("ab€".encode(), 4) == b"ab"
    assert truncate_utf8(b"abc\\=def", 4) == b"abc"
    assert truncate_utf8(b"ab\\\\cd", 4) == b"ab\\\\"
    assert truncate_utf8(b"short", 10) == b"short"
    for n in range(0, 40):
        cut = truncate_utf8(("€\\=" * 10).encode(), n)
        cut.decode("utf-8")
        assert len(cut) <= n and (len(cut) - len(cut.rstrip(b"\\"))) % 2 == 0


def test_oversize_message_is_cut_to_the_limit(tmp_path: Path) -> None:
    """A message over max_message_bytes is cut to exactly fit, and says so."""
    cfg = replace(sink_config(tmp_path, transport="udp"), max_message_bytes=600)
    message, truncated = MessageBuilder(cfg).build("x" * 5000, 3, T)
    assert truncated and len(message) == 600


def test_syslog_config_defaults_by_transport(tmp_path: Path) -> None:
    """TLS defaults to port 6514 and octet counting; TCP to 514 and LF; UDP to a 1472-byte datagram."""
    tls, tcp, udp = (sink_config(tmp_path, transport=t) for t in ("tls", "tcp", "udp"))
    assert (tls.port, tls.framing, tls.max_message_bytes, tls.tls_verify) == (6514, "octet-counting", 8192, True)
    assert (tcp.port, tcp.framing) == (514, "lf")
    assert (udp.port, udp.max_message_bytes) == (514, 1472)
