"""Configuration of the sinks: ``file``, ``stdout`` and ``syslog``."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from collector.configreader import Reader, seconds

__all__ = ["FileSinkConfig", "StdoutSinkConfig", "SyslogSinkConfig", "SinkConfig", "read_sink"]

FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
              "ftp", "ntp", "security", "console", "solaris-cron",
              "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")
# RFC 5426 keeps UDP datagrams under the path MTU (1500 - 20 - 8); RFC 5425 receivers SHOULD take 8192,
# and rsyslog's default maxMessageSize is 8k, so that is the stream default.
DEFAULT_MAX_BYTES = {"udp": 1472, "tcp": 8192, "tls": 8192}


@dataclass(frozen=True)
class FileSinkConfig:
    """Append one event per line to ``path``."""

    path: Path
    type: str = "file"


@dataclass(frozen=True)
class StdoutSinkConfig:
    """Write one event per line to standard output."""

    type: str = "stdout"


@dataclass(frozen=True)
class SyslogSinkConfig:
    """Send each event as one syslog message over UDP, TCP or TLS."""

    host: str
    port: int
    transport: str
    protocol: str
    framing: str
    facility: str
    app_name: str
    hostname: str
    msgid: str | None
    bom: bool
    max_message_bytes: int
    oversize: str
    tls_verify: bool
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    server_name: str | None
    connect_timeout: float
    send_timeout: float
    type: str = "syslog"


SinkConfig = Union[FileSinkConfig, StdoutSinkConfig, SyslogSinkConfig]


def read_sink(r: Reader, raw: Any, p: str) -> SinkConfig | None:
    """Validate one ``sink:`` mapping."""
    if not isinstance(raw, dict):
        r.fail(p, "expected a mapping with type: file, stdout or syslog")
        return None
    kind = r.choice(raw, "type", p, ("file", "stdout", "syslog"))
    if kind == "file":
        m = r.mapping(raw, p, {"type", "path"}, required=("path",))
        return FileSinkConfig(path=r.path(m, "path", p))
    if kind == "stdout":
        r.mapping(raw, p, {"type"})
        return StdoutSinkConfig()
    if kind == "syslog":
        return _syslog(r, raw, p)
    return None


def _syslog(r: Reader, raw: dict[str, Any], p: str) -> SyslogSinkConfig:
    m = r.mapping(raw, p, {"type", "host", "port", "transport", "protocol", "framing", "facility", "app_name",
                           "hostname", "msgid", "bom", "max_message_bytes", "oversize", "tls_verify", "ca_file",
                           "cert_file", "key_file", "server_name", "connect_timeout", "send_timeout"},
                  required=("host",))
    transport = r.choice(m, "transport", p, ("udp", "tcp", "tls"), "tls")
    default_port = 6514 if transport == "tls" else 514
    default_framing = "octet-counting" if transport == "tls" else "lf"
    framing = r.choice(m, "framing", p, ("octet-counting", "lf"), default_framing)
    if transport == "udp" and "framing" in m:
        r.fail(f"{p}.framing", "does not apply to udp (one message per datagram)")
    tls_keys = ("ca_file", "cert_file", "key_file", "server_name")
    if transport != "tls":
        for key in tls_keys:
            if key in m:
                r.fail(f"{p}.{key}", "applies only to transport: tls")
    ca_file, cert_file, key_file = (r.path(m, key, p, None) for key in ("ca_file", "cert_file", "key_file"))
    if (cert_file is None) != (key_file is None):
        r.fail(f"{p}.cert_file", "cert_file and key_file go together (mutual TLS)")
    for key, value in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
        if value is not None and not value.is_file():
            r.fail(f"{p}.{key}", f"{value} does not exist")
    app_name = r.string(m, "app_name", p, "mimecast-collector")
    if app_name and (len(app_name) > 48 or not _printable(app_name)):
        r.fail(f"{p}.app_name", "must be 1-48 printable ASCII characters without spaces (RFC 5424)")
    msgid = r.string(m, "msgid", p, None)
    if msgid and (len(msgid) > 32 or not _printable(msgid)):
        r.fail(f"{p}.msgid", "must be 1-32 printable ASCII characters without spaces (RFC 5424)")
    hostname = r.string(m, "hostname", p, None) or socket.gethostname() or "-"
    if len(hostname) > 255 or not _printable(hostname):
        r.fail(f"{p}.hostname", "must be 1-255 printable ASCII characters without spaces (RFC 5424)")
    max_bytes = r.integer(m, "max_message_bytes", p, DEFAULT_MAX_BYTES.get(transport, 8192), 480, 1 << 20)
    if transport == "udp" and max_bytes and max_bytes > 65507:
        r.fail(f"{p}.max_message_bytes", "a UDP datagram holds at most 65507 bytes")
    return SyslogSinkConfig(
        host=r.string(m, "host", p), port=r.integer(m, "port", p, default_port, 1, 65535),
        transport=transport, protocol=r.choice(m, "protocol", p, ("rfc5424", "rfc3164"), "rfc5424"),
        framing=framing, facility=r.choice(m, "facility", p, FACILITIES, "local0"), app_name=app_name,
        hostname=hostname, msgid=msgid, bom=r.boolean(m, "bom", p, False),
        max_message_bytes=max_bytes,
        oversize=r.choice(m, "oversize", p, ("truncate", "drop"), "truncate"),
        tls_verify=r.boolean(m, "tls_verify", p, True), ca_file=ca_file, cert_file=cert_file, key_file=key_file,
        server_name=r.string(m, "server_name", p, None),
        connect_timeout=seconds(r.duration(m, "connect_timeout", p, "10s", "100ms", "5m")),
        send_timeout=seconds(r.duration(m, "send_timeout", p, "30s", "100ms", "5m")),
    )


def _printable(text: str) -> bool:
    return all(33 <= ord(c) <= 126 for c in text)
