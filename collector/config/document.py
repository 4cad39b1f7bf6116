"""The whole configuration file: watches, outputs, metrics, logging and the :class:`Config` that holds them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from pydantic.dataclasses import dataclass

from collector.config.base import MODEL, Section
from collector.config.fields import Boolean, Choice, ChoiceList, Integer, IpAddress, Name, Text, problem
from collector.config.places import Listen
from collector.config.sections import STATUSES, CollectionConfig, MimecastConfig
from collector.config.sinks import sink_field
from collector.config.values import Secret

__all__ = ["FORMATS", "ROUTES", "STATUSES", "Config", "LoggingConfig", "MetricsConfig", "OutputConfig",
           "WatchConfig"]

ROUTES = ("inbound", "outbound", "internal", "external")
FORMATS = ("ecs", "cef", "raw")
_FILTERS = ("from", "to", "subject", "sender_ip", "message_id")


@dataclass(frozen=True, config=MODEL)
class WatchConfig(Section):
    """One search filter polled on its own schedule."""

    name: Name = Field(description="Unique name: 1-64 letters, digits, '.', '_' or '-'.",
                       examples=["inbound-example-com"])
    from_: Optional[Text] = Field(None, alias="from", description="Sender address or domain.",
                                  examples=["example.com"])
    to: Optional[Text] = Field(None, description="Recipient address or domain.", examples=["example.com"])
    subject: Optional[Text] = Field(None, description="Subject to search for.", examples=["Invoice"])
    sender_ip: Optional[IpAddress] = Field(None, description="Sending IPv4 or IPv6 address.",
                                           examples=["192.0.2.10"])
    message_id: Optional[Text] = Field(None, description="Message-ID; alone, not with other filters.",
                                       examples=["<abc@example.com>"])
    status: ChoiceList(*STATUSES) = Field((), description="Keep only these statuses (client-side).",
                                          examples=[["held", "rejected"]])
    route: ChoiceList(*ROUTES) = Field((), description="Keep only these routes (client-side).",
                                       examples=[["outbound"]])

    @model_validator(mode="after")
    def _filters(self) -> WatchConfig:
        if not any((self.from_, self.to, self.subject, self.sender_ip, self.message_id)):
            raise problem(f"needs at least one filter: {', '.join(_FILTERS[:-1])} or message_id")
        if self.message_id and any((self.from_, self.to, self.subject, self.sender_ip)):
            raise problem("cannot be combined with from, to, subject or sender_ip", "message_id")
        return self


@dataclass(frozen=True, config=MODEL)
class EcsOptions(Section):
    """Options of the ``ecs`` format."""

    include_original: Boolean = Field(False, description="Keep Mimecast's record in event.original.",
                                      examples=[False])


_SEVERITY_KEYS = (*STATUSES, "default")


def _severity_key(value: Any) -> str:
    if value not in _SEVERITY_KEYS:
        raise problem(f"unknown key (allowed: {', '.join(sorted(_SEVERITY_KEYS))})")
    return value


@dataclass(frozen=True, config=MODEL)
class CefOptions(Section):
    """Options of the ``cef`` format."""

    null_is_default = ("rt_format", "severity")

    rt_format: Choice("epoch_ms", "syslog") = Field("epoch_ms", description="How rt= is written.",
                                                    examples=["epoch_ms"])
    severity: dict[Annotated[str, BeforeValidator(_severity_key)], Integer(0, 10)] = Field(
        default_factory=dict, description="CEF severity (0-10) per status, or default.",
        examples=[{"held": 7, "rejected": 6}])


@dataclass(frozen=True, config=MODEL)
class OutputConfig(Section):
    """A format written to a sink; every event goes to every output."""

    null_is_default = ("format", "ecs", "cef")

    name: Name = Field(description="Unique name of the output.", examples=["archive"])
    sink: sink_field() = Field(description="Where events go: type file, stdout or syslog.",
                               examples=[{"type": "file", "path": "/var/log/mimecast-collector/tracking.ndjson"}])
    format: Choice(*FORMATS) = Field("ecs", description="Event format: ecs, cef or raw.", examples=["ecs"])
    ecs: Optional[EcsOptions] = Field(None, description="Options for format ecs.",
                                      examples=[{"include_original": False}])
    cef: Optional[CefOptions] = Field(None, description="Options for format cef.",
                                      examples=[{"rt_format": "epoch_ms", "severity": {"held": 7}}])

    @model_validator(mode="after")
    def _options_match(self) -> OutputConfig:
        wrong = [(o, f"options for format {o} given, but format is {self.format}") for o in ("ecs", "cef")
                 if o != self.format and getattr(self, o) is not None]
        if wrong:
            raise problem(wrong[0][1], wrong[0][0], wrong[1:])
        return self

    @property
    def options(self) -> Mapping[str, Any]:
        """The format's options, as its formatter takes them."""
        if self.format == "ecs":
            return {"include_original": (self.ecs or EcsOptions()).include_original}
        if self.format == "cef":
            cef = self.cef or CefOptions()
            return {"rt_format": cef.rt_format, "severity": dict(cef.severity)}
        return {}


@dataclass(frozen=True, config=MODEL)
class MetricsConfig(Section):
    """The Prometheus endpoint; ``listen`` is ``None`` when disabled."""

    listen: Listen = Field(None, description="host:port of the Prometheus endpoint; null disables it.",
                           examples=["127.0.0.1:9464"])


@dataclass(frozen=True, config=MODEL)
class LoggingConfig(Section):
    """Log level and renderer (``json``, ``console`` or ``auto``)."""

    null_is_default = ("level", "format")

    level: Choice("debug", "info", "warning", "error") = Field("info", description="Least severe level logged.",
                                                               examples=["info"])
    format: Choice("json", "console", "auto") = Field("auto", description="json, console, or auto (console on "
                                                                          "a terminal).", examples=["json"])


def _named_list(value: Any) -> Any:
    if not isinstance(value, (list, tuple)) or not value:
        raise problem("expected a non-empty list")
    return value


def _unique_names(items: tuple[Any, ...]) -> tuple[Any, ...]:
    seen: set[str] = set()
    repeats = []
    for i, item in enumerate(items):
        if item.name in seen:
            repeats.append((f"[{i}].name", f"duplicate name {item.name!r}"))
        seen.add(item.name)
    if repeats:
        raise problem(repeats[0][1], repeats[0][0], repeats[1:])
    return items


def _named(item: Any) -> Any:
    return Annotated[tuple[item, ...], BeforeValidator(_named_list), AfterValidator(_unique_names),
                     Field(json_schema_extra={"minItems": 1})]


def _no_metrics(value: Any) -> Any:
    return {} if value is None else value


@dataclass(frozen=True, config=MODEL, kw_only=True)
class Config(Section):
    """The whole, validated configuration."""

    null_is_default = ("collection", "logging")

    mimecast: MimecastConfig = Field(description="Where and how to reach Mimecast.", examples=[
        {"base_url": "https://api.services.mimecast.com",
         "auth": {"type": "oauth2", "client_id": "${MIMECAST_CLIENT_ID}", "client_secret_file": "client_secret"}}])
    collection: CollectionConfig = Field(default_factory=CollectionConfig,
                                         description="Rolling-window settings shared by every watch.",
                                         examples=[{"interval": "5m", "overlap": "10m"}])
    watches: _named(WatchConfig) = Field(description="At least one search, each polled on its own.",
                                         examples=[[{"name": "inbound-example-com", "to": "example.com"}]])
    outputs: _named(OutputConfig) = Field(description="At least one; every event goes to every output.",
                                          examples=[[{"name": "archive", "format": "ecs", "sink": {
                                              "type": "file", "path": "/var/log/mimecast-collector/tracking.ndjson"}}]])
    metrics: Annotated[MetricsConfig, BeforeValidator(_no_metrics)] = Field(
        MetricsConfig(("127.0.0.1", 9464)), description="The Prometheus endpoint (null or {} disables it).",
        examples=[{"listen": "127.0.0.1:9464"}])
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Log level and format.",
                                   examples=[{"level": "info", "format": "json"}])
    source: Optional[Path] = Field(None, init=False, exclude=True, repr=False)

    @model_validator(mode="after")
    def _files_apart(self) -> Config:
        """Every file output, the checkpoint and the dead letters are different files.

        Two writers of one file each cut what the other wrote as an uncommitted tail at start, and an
        output onto the checkpoint would destroy it: such a configuration cannot deliver what it collects.
        """
        col = self.collection
        taken = {col.state_file.resolve(): "collection.state_file", col.dead_letter_file.resolve():
                 "collection.dead_letter_file"}
        taken.update({col.state_file.resolve().with_name(col.state_file.name + side): "collection.state_file"
                      for side in (".lock", "-wal", "-shm", "-journal")})
        found = []
        for i, output in enumerate(self.outputs):
            path = getattr(output.sink, "path", None)
            if path is None or (path.exists() and not path.is_file()):  # a FIFO or a device keeps no marks
                continue
            owner = taken.setdefault(path.resolve(), f"outputs[{i}].sink.path")
            if owner != f"outputs[{i}].sink.path":
                found.append((f"outputs[{i}].sink.path", f"{path} is also {owner}; an output needs a file of its "
                              "own (two writers would cut each other's events at start)"))
        if found:
            raise problem(found[0][1], found[0][0], found[1:])
        return self

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for the log redactor."""
        auth = self.mimecast.auth
        found = [v.reveal() for v in vars(auth).values() if isinstance(v, Secret)]
        proxy = self.mimecast.proxy
        return tuple(found) + (proxy.secrets() if proxy is not None else ())

