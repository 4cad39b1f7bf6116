"""Fuzz suite: any response body and any config file end in typed errors, never in a crash."""

from __future__ import annotations

import copy
import json
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from collector.config import load_config, parse_config
from collector.daemon import Collector
from collector.errors import ApiError, ConfigError, RecordError
from collector.formats import Event, build_formatter
from collector.mimecast.envelope import tracked_emails
from collector.records import parse_tracked_email
from collector.simulator import Fault, MailFlow, Simulator
from tests.conftest import config_dict, run_cli, write_config
from tests.schema_check import schema_problems

NOW = datetime(2026, 11, 28, tzinfo=timezone.utc)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                   st.text(max_size=30), st.sampled_from(["2026-11-27T09:15:00+0000", "held", "", "eNp1"]))
JSON = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(st.text(max_size=12), inner, max_size=5)),
                    max_leaves=25)
FIELDS = ["id", "status", "received", "sent", "route", "subject", "senderIP", "fromEnv", "fromHdr", "to",
          "attachments", "info", "spamScore", "detectionLevel"]
RECORD = st.dictionaries(st.sampled_from(FIELDS), st.one_of(SCALAR, JSON), max_size=len(FIELDS))
ENVELOPE = st.one_of(
    JSON,
    st.fixed_dictionaries({"meta": st.one_of(JSON, st.fixed_dictionaries({"status": SCALAR})),
                           "data": st.one_of(JSON, st.lists(st.fixed_dictionaries(
                               {"trackedEmails": st.one_of(JSON, st.lists(st.one_of(RECORD, JSON), max_size=6))}),
                               max_size=2)),
                           "fail": st.one_of(st.just([]), JSON)}),
)
MANY = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])


@MANY
@given(ENVELOPE)
def test_any_response_body_is_read_or_refused_with_a_typed_error(body: Any) -> None:
    """tracked_emails returns a list or raises an ApiError; every element parses or raises RecordError; every
    parsed record renders in every format."""
    try:
        emails = tracked_emails(body)
    except ApiError:
        return
    formatters = [build_formatter(f, {}) for f in ("ecs", "cef", "raw")]
    for raw in emails:
        try:
            record = parse_tracked_email(raw)
        except RecordError:
            continue
        for fmt in formatters:
            line = fmt.format(Event(record, "w", NOW))
            assert "\n" not in line and "\r" not in line


@FEW
@given(body=ENVELOPE)
def test_any_response_body_over_http_never_kills_a_poll(body: Any) -> None:
    """Served by the simulator to the whole engine, any body ends in a finished or a failed cycle, never a crash."""
    flow = MailFlow(seed=1, start=NOW - timedelta(hours=1), end=NOW, count=50)
    with tempfile.TemporaryDirectory() as tmp, Simulator(flow) as sim:
        data = config_dict(sim, Path(tmp), mimecast={"retries": 0}, collection={"window": "4h"})
        collector = Collector(parse_config(data, env={}, base_dir=Path(tmp)), registry=CollectorRegistry())
        sim.inject(Fault("canned", status=200, body=json.dumps(body).encode()))
        try:
            (result,) = collector.run_once()
        finally:
            collector.close()
        assert result.error is None or result.error.error_type in ("api_fail", "malformed_response")
        invalid = sum(collector.metrics.registry.get_sample_value(
            "mimecast_collector_records_invalid_total", {"watch": "inbound", "reason": r}) or 0
            for r in ("missing_id", "bad_received", "not_an_object", "format_error"))
        assert invalid == result.invalid


def valid_config(tmp: Path) -> dict[str, Any]:
    return {"mimecast": {"base_url": "https://api.services.mimecast.com",
                         "auth": {"type": "oauth2", "client_id": "c", "client_secret": "s"}},
            "collection": {"state_file": str(tmp / "s.json"), "interval": "5m"},
            "watches": [{"name": "w", "to": "example.com"}],
            "outputs": [{"name": "o", "format": "cef",
                         "sink": {"type": "syslog", "host": "h", "transport": "tls"}}]}


PATHS = [("mimecast",), ("mimecast", "base_url"), ("mimecast", "auth"), ("mimecast", "auth", "type"),
         ("mimecast", "auth", "client_secret"), ("mimecast", "tls_verify"), ("mimecast", "proxy"),
         ("collection",), ("collection", "interval"), ("collection", "state_file"), ("watches",), ("outputs",),
         ("outputs", 0, "sink"), ("outputs", 0, "sink", "port"), ("outputs", 0, "format"), ("metrics",),
         ("logging",), ("watches", 0), ("watches", 0, "sender_ip"), ("outputs", 0, "cef")]
VALUES = st.one_of(JSON, st.sampled_from(["http://[::1", "99999999999999999999999d", "~nobody-here/x", "a\x00b",
                                          "${UNSET}", "$${X}", "-1", "1h30", "::1:9464", "[::1]:99999"]))


@MANY
@given(st.lists(st.tuples(st.sampled_from(PATHS), VALUES, st.booleans()), min_size=1, max_size=4))
def test_any_mutated_config_is_valid_or_a_config_error(mutations: list[tuple[tuple[Any, ...], Any, bool]]) -> None:
    """Replacing or deleting any values ends in a Config or a ConfigError, never another exception; what the
    loader accepts, config.schema.json accepts too."""
    tmp = Path(tempfile.gettempdir())
    data = copy.deepcopy(valid_config(tmp))
    for path, value, delete in mutations:
        node = data
        for key in path[:-1]:
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and key < len(node):
                node = node[key]
            else:
                break
        else:
            last = path[-1]
            if isinstance(node, dict):
                if delete:
                    node.pop(last, None)
                else:
                    node[last] = value
            elif isinstance(node, list) and isinstance(last, int) and last < len(node):
                node[last] = value
    try:
        parse_config(data, env={}, base_dir=tmp)
    except ConfigError as exc:
        assert exc.problems and all(": " in p for p in exc.problems)
        return
    assert not schema_problems(data), "check-config accepts it, so the schema must too"


@MANY
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_any_text_as_a_config_file_is_a_config_error(text: str) -> None:
    """Arbitrary file content is read or refused as a ConfigError (bad YAML, bad encoding, bad shape)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".yaml", delete=False) as f:
        f.write(text.encode("utf-8", "surrogateescape") if text.isascii() else text.encode("latin-1", "replace"))
    try:
        load_config(Path(f.name), env={})
    except ConfigError as exc:
        assert exc.problems
    finally:
        Path(f.name).unlink()


@FEW
@given(st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=3))
def test_bad_configs_through_the_cli_exit_78_without_a_traceback(mutations: list[tuple[tuple[Any, ...], Any]]) -> None:
    """check-config on a broken file prints the error listing and exits 78 (or 0 if it stayed valid, and then
    config.schema.json accepts the file too)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = valid_config(Path(tmp))
        for path, value in mutations:
            node: Any = data
            for key in path[:-1]:
                node = node[key] if isinstance(node, (dict, list)) and _has(node, key) else None
            if isinstance(node, dict):
                node[path[-1]] = value
        try:
            text = yaml.safe_dump(data, allow_unicode=True)
        except yaml.YAMLError:
            return
        result = run_cli("check-config", "-c", str(write_config(Path(tmp), yaml.safe_load(text))))
    assert result.returncode in (0, 78), result.stderr
    assert "Traceback" not in result.stderr
    if result.returncode == 78:
        assert "configuration is invalid" in result.stderr
    else:
        assert not schema_problems(yaml.safe_load(text)), "check-config accepts it, so the schema must too"


def _has(node: Any, key: Any) -> bool:
    return key in node if isinstance(node, dict) else isinstance(key, int) and key < len(node)
