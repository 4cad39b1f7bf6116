"""Configuration of the sinks: ``file``, ``stdout`` and ``syslog``."""

from __future__ import annotations

import socket
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator
from pydantic.dataclasses import dataclass

from collector.config.base import MODEL, Section, type_tag
from collector.config.fields import Boolean, Choice, Integer, Printable, Seconds, Text, problem
from collector.config.places import ExistingFile, FilePath

__all__ = ["DEFAULT_MAX_BYTES", "FACILITIES", "FileSinkConfig", "SinkConfig", "StdoutSinkConfig",
           "SyslogSinkConfig", "sink_field"]

FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
              "ftp", "ntp", "security", "console", "solaris-cron",
              "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")
# RFC 5426 keeps UDP datagrams under the path MTU (1500 - 20 - 8); RFC 5425 receivers SHOULD take 8192,
# and rsyslog's default maxMessageSize is 8k, so that is the stream default.
DEFAULT_MAX_BYTES = {"udp": 1472, "tcp": 8192, "tls": 8192}
_TLS_KEYS = ("ca_file", "cert_file", "key_file", "server_name")


@dataclass(frozen=True, config=MODEL)
class FileSinkConfig(Section):
    """Append one event per line to ``path``."""

    path: FilePath = Field(description="File to append to (relative: beside the config file).",
                           examples=["/var/log/mimecast-collector/tracking.ndjson"])
    type: Literal["file"] = Field("file", description="Sink kind.", examples=["file"])


@dataclass(frozen=True, config=MODEL)
class StdoutSinkConfig(Section):
    """Write one event per line to standard output."""

    type: Literal["stdout"] = Field("stdout", description="Sink kind.", examples=["stdout"])


@dataclass(frozen=True, config=MODEL)
class SyslogSinkConfig(Section):
    """Send each event as one syslog message over UDP, TCP or TLS."""

    null_is_default = ("transport", "protocol", "framing", "facility", "app_name", "hostname", "msgid", "oversize",
                       "ca_file", "cert_file", "key_file", "server_name")

    host: Text = Field(description="Receiver host name or address.", examples=["siem.example.com"])
    port: Optional[Integer(1, 65535)] = Field(None, description="Receiver port (default 6514 for tls, else 514).",
                                              examples=[6514])
    transport: Choice("udp", "tcp", "tls") = Field("tls", description="udp, tcp or tls.", examples=["tls"])
    protocol: Choice("rfc5424", "rfc3164") = Field("rfc5424", description="Syslog message format.",
                                                   examples=["rfc5424"])
    framing: Optional[Choice("octet-counting", "lf")] = Field(
        None, description="Stream framing (default octet-counting for tls, lf for tcp; not for udp).",
        examples=["octet-counting"])
    facility: Choice(*FACILITIES) = Field("local0", description="Syslog facility.", examples=["local0"])
    app_name: Printable(48) = Field("mimecast-collector", description="RFC 5424 APP-NAME.",
                                    examples=["mimecast-collector"])
    hostname: Optional[Printable(255)] = Field(None, description="RFC 5424 HOSTNAME (default: this host's name).",
                                               examples=["collector01"])
    msgid: Optional[Printable(32)] = Field(None, description="RFC 5424 MSGID.", examples=["tracking"])
    bom: Boolean = Field(False, description="Prefix the message with a UTF-8 BOM (RFC 5424).", examples=[False])
    max_message_bytes: Optional[Integer(480, 1 << 20)] = Field(
        None, description="Largest message in bytes (default 1472 for udp, 8192 otherwise).", examples=[8192])
    oversize: Choice("truncate", "drop") = Field("truncate", description="What to do with a larger message.",
                                                 examples=["truncate"])
    tls_verify: Boolean = Field(True, description="Verify the receiver's certificate.", examples=[True])
    ca_file: Optional[ExistingFile] = Field(None, description="CA bundle for the receiver (tls only).",
                                            examples=["/etc/ssl/certs/siem-ca.pem"])
    cert_file: Optional[ExistingFile] = Field(None, description="Client certificate for mutual TLS (tls only).",
                                              examples=["/etc/mimecast-collector/client.pem"])
    key_file: Optional[ExistingFile] = Field(None, description="Client key for mutual TLS (tls only).",
                                             examples=["/etc/mimecast-collector/client.key"])
    server_name: Optional[Text] = Field(None, description="Name expected in the receiver's certificate (tls only).",
                                        examples=["siem.example.com"])
    connect_timeout: Seconds("100ms", "5m") = Field(10.0, description="Connect timeout.", examples=["10s"])
    send_timeout: Seconds("100ms", "5m") = Field(30.0, description="Send timeout.", examples=["30s"])
    type: Literal["syslog"] = Field("syslog", description="Sink kind.", examples=["syslog"])

    @field_validator("port", "max_message_bytes", mode="before")
    @classmethod
    def _no_null(cls, value: Any) -> Any:
        if value is None:  # absent means "by transport"; written as null it is a mistake, as it always was
            raise problem("expected an integer, got nothing")
        return value

    @model_validator(mode="after")
    def _defaults_by_transport(self, info: ValidationInfo) -> SyslogSinkConfig:
        if info.context is not None:  # read from a file; code (dataclasses.replace) passes filled-in defaults
            self._check_keys_together()
        hostname = self.hostname or socket.gethostname() or "-"
        if len(hostname) > 255 or not all(33 <= ord(c) <= 126 for c in hostname):
            raise problem("must be 1-255 printable ASCII characters without spaces (RFC 5424)", "hostname")
        defaults = {"port": 6514 if self.transport == "tls" else 514,
                    "framing": "octet-counting" if self.transport == "tls" else "lf",
                    "max_message_bytes": DEFAULT_MAX_BYTES[self.transport], "hostname": hostname}
        for key, value in defaults.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        return self

    def _check_keys_together(self) -> None:
        found: list[tuple[str, str]] = []
        if self.transport == "udp" and self.framing is not None:
            found.append(("framing", "does not apply to udp (one message per datagram)"))
        if self.transport != "tls":
            found += [(key, "applies only to transport: tls") for key in _TLS_KEYS if getattr(self, key) is not None]
        if (self.cert_file is None) != (self.key_file is None):
            found.append(("cert_file", "cert_file and key_file go together (mutual TLS)"))
        if self.transport == "udp" and self.max_message_bytes and self.max_message_bytes > 65507:
            found.append(("max_message_bytes", "a UDP datagram holds at most 65507 bytes"))
        if found:
            raise problem(found[0][1], found[0][0], found[1:])


SinkConfig = Union[FileSinkConfig, StdoutSinkConfig, SyslogSinkConfig]


def _tagged(kinds: tuple[str, ...]) -> Any:
    """Name a missing or unknown ``type`` the way every other choice is named."""
    def check(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        kind = value.get("type")
        if kind is None:
            raise problem("is required", "type")
        if kind not in kinds:
            raise problem(f"{kind!r} is not one of: {', '.join(kinds)}", "type")
        return value
    return BeforeValidator(check)


def _mapping_with_type(what: str) -> Any:
    def check(value: Any) -> Any:
        if not isinstance(value, (dict, Section)):
            raise problem(f"expected a mapping with type: {what}")
        return value
    return BeforeValidator(check)


def sink_field() -> Any:
    """The annotated type of an output's ``sink``."""
    tagged = Union[Annotated[FileSinkConfig, Tag("file")], Annotated[StdoutSinkConfig, Tag("stdout")],
                   Annotated[SyslogSinkConfig, Tag("syslog")]]
    return Annotated[tagged, Discriminator(type_tag), _tagged(("file", "stdout", "syslog")),
                     _mapping_with_type("file, stdout or syslog")]

