"""Readers for each section of the configuration file, collecting problems by dotted path."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from collector.configreader import Reader, seconds
from collector.configtypes import (
    CollectionConfig, HmacAuth, LoggingConfig, MetricsConfig, MimecastConfig, OAuth2Auth, OutputConfig, QuotaReserve,
    WatchConfig,
)
from collector.sinkconfig import read_sink

__all__ = ["FORMATS", "ROUTES", "STATUSES", "read_collection", "read_logging", "read_metrics", "read_mimecast",
           "read_named_list", "read_output", "read_watch"]

STATUSES = ("processing", "delivery", "system", "held", "accepted", "bulk_processing",
            "bulk_delivery", "bounced", "deferred", "rejected", "archived")
ROUTES = ("inbound", "outbound", "internal", "external")
FORMATS = ("ecs", "cef", "raw")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def read_mimecast(r: Reader, raw: Any) -> MimecastConfig | None:
    """The ``mimecast`` section."""
    p = "mimecast"
    m = r.mapping(raw, p, {"base_url", "search_path", "token_url", "auth", "search_reason", "timeout", "retries",
                           "backoff_initial", "backoff_max", "max_rate_limit_wait", "tls_verify", "proxy",
                           "quota_reserve"},
                  required=("base_url", "auth"))
    base_url = _url(r, m, "base_url", p)
    auth = _auth(r, m.get("auth"), f"{p}.auth")
    auth_type = getattr(auth, "type", None)
    default_path = "/api/tracking/search" if auth_type == "hmac" else "/api/message-finder/search"
    search_path = r.string(m, "search_path", p, default_path)
    if search_path and not search_path.startswith("/"):
        r.fail(f"{p}.search_path", "must start with /")
    token_url = _url(r, m, "token_url", p, default=f"{(base_url or '').rstrip('/')}/oauth/token")
    timeout = r.duration(m, "timeout", p, "30s", "1s", "10m")
    backoff_initial = r.duration(m, "backoff_initial", p, "1s", "0s", "5m")
    backoff_max = r.duration(m, "backoff_max", p, "60s", "0s", "1h")
    max_wait = r.duration(m, "max_rate_limit_wait", p, "15m", "0s", "6h")
    tls_verify: Any = m.get("tls_verify", True)
    if isinstance(tls_verify, str):
        ca = r.resolve(tls_verify, f"{p}.tls_verify", r.base_dir)
        if ca is not None and not ca.is_file():
            r.fail(f"{p}.tls_verify", f"CA bundle {ca} does not exist")
        tls_verify = str(ca)
    elif not isinstance(tls_verify, bool):
        r.fail(f"{p}.tls_verify", "expected true, false or a CA bundle path")
    proxy = _url(r, m, "proxy", p, default=None)
    return MimecastConfig(
        base_url=(base_url or "").rstrip("/"), search_path=search_path, token_url=token_url, auth=auth,
        search_reason=r.string(m, "search_reason", p, "SIEM export by mimecast-collector"),
        timeout=seconds(timeout), retries=r.integer(m, "retries", p, 5, 0, 20),
        backoff_initial=seconds(backoff_initial), backoff_max=seconds(backoff_max), max_rate_limit_wait=seconds(max_wait),
        tls_verify=tls_verify, proxy=proxy, quota_reserve=_reserve(r, m.get("quota_reserve", "10%"), f"{p}.quota_reserve"),
    )


def _reserve(r: Reader, value: Any, path: str) -> QuotaReserve:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return QuotaReserve(count=value)
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}(\.\d+)?%", value.strip()) and float(value.strip()[:-1]) <= 90:
        return QuotaReserve(share=float(value.strip()[:-1]) / 100)
    r.fail(path, f"{value!r} is not a number of requests (20) or a share of the limit from 0% to 90% ('10%')")
    return QuotaReserve(share=0.1)


def _url(r: Reader, m: dict[str, Any], key: str, path: str, default: Any = ...) -> str | None:
    value = r.string(m, key, path) if default is ... else r.string(m, key, path, default)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError:
        r.fail(f"{path}.{key}", f"{value!r} is not an http(s) URL")
        return None
    if parts.scheme not in ("http", "https") or not hostname:
        r.fail(f"{path}.{key}", f"{value!r} is not an http(s) URL")
    elif parts.scheme == "http" and hostname not in _LOOPBACK and key != "proxy":
        r.fail(f"{path}.{key}", "must use https (plain http is allowed only on loopback)")
    return value


def _auth(r: Reader, raw: Any, p: str) -> OAuth2Auth | HmacAuth | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        r.fail(p, "expected a mapping with type: oauth2 or hmac")
        return None
    kind = r.choice(raw, "type", p, ("oauth2", "hmac"))
    if kind == "oauth2":
        m = r.mapping(raw, p, {"type", "client_id", "client_secret", "client_secret_file"})
        return OAuth2Auth(r.string(m, "client_id", p), r.secret(m, "client_secret", p))
    if kind == "hmac":
        keys = {"type", "app_id"} | {f"{k}{s}" for k in ("app_key", "access_key", "secret_key") for s in ("", "_file")}
        m = r.mapping(raw, p, keys)
        secret_key = r.secret(m, "secret_key", p)
        if secret_key is not None and not _is_base64(secret_key.reveal()):
            r.fail(f"{p}.secret_key", "is not valid base64 (copy the Secret Key exactly as Mimecast showed it)")
        return HmacAuth(r.string(m, "app_id", p), r.secret(m, "app_key", p), r.secret(m, "access_key", p), secret_key)
    return None


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def read_collection(r: Reader, raw: Any, base_dir: Path) -> CollectionConfig:
    """The ``collection`` section."""
    p = "collection"
    m = r.mapping(raw, p, {"interval", "window", "lag", "overlap", "initial_lookback", "result_cap",
                           "state_file", "dead_letter_file"})
    state_file = r.path(m, "state_file", p, "/var/lib/mimecast-collector/state.json")
    dead_letter = r.path(m, "dead_letter_file", p, str(Path(state_file or ".").parent / "dead-letter.ndjson"))
    return CollectionConfig(
        interval=r.duration(m, "interval", p, "5m", "10s", "1d"),
        window=r.duration(m, "window", p, "15m", "1m", "1d"),
        lag=r.duration(m, "lag", p, "2m", "0s", "6h"),
        overlap=r.duration(m, "overlap", p, "10m", "0s", "1d"),
        initial_lookback=r.duration(m, "initial_lookback", p, "1h", "1m", "30d"),
        result_cap=r.integer(m, "result_cap", p, 100, 2, 100_000),
        state_file=state_file, dead_letter_file=dead_letter,
    )


def read_named_list(r: Reader, raw: Any, p: str, build: Any) -> list[Any]:
    """A non-empty list of named entries (``watches``, ``outputs``) with unique names."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        r.fail(p, "expected a non-empty list")
        return []
    items, seen = [], set()
    for i, entry in enumerate(raw):
        item = build(r, entry, f"{p}[{i}]")
        name = getattr(item, "name", None)
        if name is not None and name in seen:
            r.fail(f"{p}[{i}].name", f"duplicate name {name!r}")
        seen.add(name)
        items.append(item)
    return items


def _name(r: Reader, m: dict[str, Any], p: str) -> str | None:
    name = r.string(m, "name", p)
    if name is not None and not _NAME.match(name):
        r.fail(f"{p}.name", f"{name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return name


def read_watch(r: Reader, raw: Any, p: str) -> WatchConfig:
    """One entry of ``watches``."""
    filters = ("from", "to", "subject", "sender_ip", "message_id")
    m = r.mapping(raw, p, {"name", "status", "route", *filters})
    values = {k: r.string(m, k, p, None) for k in ("from", "to", "subject", "message_id")}
    values["sender_ip"] = r.ip(m, "sender_ip", p)
    if m and not any(values.values()) and not any(k in m for k in filters):
        r.fail(p, "needs at least one filter: from, to, subject, sender_ip or message_id")
    if values["message_id"] and any(values[k] for k in ("from", "to", "subject", "sender_ip")):
        r.fail(f"{p}.message_id", "cannot be combined with from, to, subject or sender_ip")
    return WatchConfig(
        name=_name(r, m, p), from_=values["from"], to=values["to"], subject=values["subject"],
        sender_ip=values["sender_ip"], message_id=values["message_id"],
        status=r.choices(m, "status", p, STATUSES), route=r.choices(m, "route", p, ROUTES),
    )


def read_output(r: Reader, raw: Any, p: str) -> OutputConfig:
    """One entry of ``outputs``."""
    m = r.mapping(raw, p, {"name", "format", "sink", "ecs", "cef"}, required=("sink",))
    fmt = r.choice(m, "format", p, FORMATS, "ecs")
    options: dict[str, Any] = {}
    if fmt == "ecs":
        ecs = r.mapping(m.get("ecs"), f"{p}.ecs", {"include_original"})
        options["include_original"] = r.boolean(ecs, "include_original", f"{p}.ecs", False)
    if fmt == "cef":
        cef = r.mapping(m.get("cef"), f"{p}.cef", {"rt_format", "severity"})
        options["rt_format"] = r.choice(cef, "rt_format", f"{p}.cef", ("epoch_ms", "syslog"), "epoch_ms")
        severity = r.mapping(cef.get("severity"), f"{p}.cef.severity", set(STATUSES) | {"default"})
        options["severity"] = {k: r.integer(severity, k, f"{p}.cef.severity", 0, 0, 10) for k in severity}
    for other in {"ecs", "cef"} - {fmt}:
        if other in m:
            r.fail(f"{p}.{other}", f"options for format {other} given, but format is {fmt}")
    sink = read_sink(r, m.get("sink"), f"{p}.sink") if "sink" in m else None
    return OutputConfig(name=_name(r, m, p), format=fmt, sink=sink, options=options)


def read_metrics(r: Reader, raw: Any) -> MetricsConfig:
    """The ``metrics`` section."""
    m = r.mapping(raw, "metrics", {"listen"})
    listen = m.get("listen")
    if listen is None:
        return MetricsConfig(None)
    match = re.fullmatch(r"\[?([^\]]*?)\]?:(\d{1,5})", str(listen))
    if not match or not match.group(1) or not 0 <= int(match.group(2)) <= 65535:
        r.fail("metrics.listen", f"{listen!r} is not host:port (e.g. 127.0.0.1:9464), or null to disable")
        return MetricsConfig(None)
    return MetricsConfig((match.group(1), int(match.group(2))))


def read_logging(r: Reader, raw: Any) -> LoggingConfig:
    """The ``logging`` section."""
    m = r.mapping(raw, "logging", {"level", "format"})
    return LoggingConfig(
        level=r.choice(m, "level", "logging", ("debug", "info", "warning", "error"), "info"),
        format=r.choice(m, "format", "logging", ("json", "console", "auto"), "auto"),
    )
