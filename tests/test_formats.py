"""ECS and CEF output: the mapping, the schema, the decoder round trip, golden files, every simulator record."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.formats import Event, build_formatter
from collector.formats.cef import CefFormatter
from collector.formats.ecs import EcsFormatter
from collector.mimecast.envelope import tracked_emails
from collector.records import parse_tracked_email
from collector.simulator import MailFlow
from tests.cef_decoder import decode
from tests.conftest import DATA
from tests.ecs_validator import validate

GOLDEN = Path(__file__).resolve().parent / "golden"
FETCHED = datetime(2026, 11, 28, 12, 0, 0, 123000, tzinfo=timezone.utc)


def golden_inputs() -> dict[str, dict]:
    inputs = {}
    for path in sorted((DATA / "mimecast").glob("search-*.json")):
        (raw,) = tracked_emails(json.loads(path.read_text(encoding="utf-8")))
        inputs[path.stem] = raw
    for raw in json.loads((DATA / "nasty-records.json").read_text(encoding="utf-8")):
        inputs[raw["id"]] = raw
    return inputs


def event_of(raw: dict, watch: str = "golden") -> Event:
    return Event(parse_tracked_email(raw), watch, FETCHED)


@pytest.mark.parametrize("name", sorted(golden_inputs()))
@pytest.mark.parametrize("fmt", ["ecs", "cef", "raw"])
def test_golden_output(name: str, fmt: str) -> None:
    """Each shared fixture and nasty record renders exactly as checked in (UPDATE_GOLDEN=1 rewrites)."""
    line = build_formatter(fmt, {}).format(event_of(golden_inputs()[name]))
    path = GOLDEN / f"{name}.{fmt}"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(line + "\n", encoding="utf-8")
    assert line + "\n" == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(golden_inputs()))
def test_fixtures_pass_the_ecs_validator_and_the_cef_round_trip(name: str) -> None:
    """Every golden input is valid ECS 9.4.0 and decodes back from CEF."""
    event = event_of(golden_inputs()[name])
    assert validate(EcsFormatter().document(event)) == []
    decoded = decode(CefFormatter().format(event))
    assert decoded.extension["cs1"] == event.record.id


def test_ecs_mapping_of_a_real_record() -> None:
    """The documented ECS fields carry the documented values."""
    raw = golden_inputs()["search-archived-inbound"]
    doc = EcsFormatter(include_original=True).document(event_of(raw, "inbound"))
    assert doc["@timestamp"] == "2022-07-18T13:25:00.000Z" and doc["ecs"] == {"version": "9.4.0"}
    ev = doc["event"]
    assert (ev["kind"], ev["category"], ev["type"], ev["action"], ev["outcome"]) == \
        ("event", ["email"], ["info"], "archived", "success")
    assert ev["module"] == "mimecast" and ev["dataset"] == "mimecast.tracked_email"
    assert ev["created"] == "2026-11-28T12:00:00.123Z" and len(ev["id"]) == 32 and ev["severity"] == 3
    assert ev["reason"] == "Indexed and archived" and json.loads(ev["original"]) == raw
    email = doc["email"]
    assert email["local_id"] == raw["id"] and email["direction"] == "inbound"
    assert email["from"] == {"address": ["markrobertsny@pilot-meadow.b41.one"]}
    assert email["sender"] == {"address": "markrobertsny@pilot-meadow.b41.one"}
    assert email["to"] == {"address": ["klay@paloaltonetworks.mime.integration.com"]}
    assert email["delivery_timestamp"] == doc["@timestamp"]
    assert doc["source"] == {"ip": "54.236.186.184", "address": "54.236.186.184"}
    assert doc["related"] == {"ip": ["54.236.186.184"], "user": ["markrobertsny@pilot-meadow.b41.one",
                                                                  "klay@paloaltonetworks.mime.integration.com"]}
    assert doc["observer"]["vendor"] == "Mimecast"
    assert doc["mimecast"]["watch"] == "inbound" and doc["mimecast"]["spam_score"] == 2
    assert doc["mimecast"]["attachments"] is False
    assert validate(doc) == []


def test_ecs_keeps_strings_exactly_and_invalid_ips_out_of_source() -> None:
    """Subjects keep every character; a sender IP that is not an IP goes only to mimecast.sender_ip."""
    raw = golden_inputs()["nasty-unicode-trailing"]
    doc = json.loads(EcsFormatter().format(event_of(raw)))
    assert doc["email"]["subject"] == raw["subject"]
    assert "source" not in doc and doc["mimecast"]["sender_ip"] == "not-an-ip"
    assert doc["event"]["outcome"] == "unknown" and doc["email"]["direction"] == "internal"


def test_cef_mapping_and_severity() -> None:
    """Header and extension carry the documented keys; held outranks archived; IPv6 goes to c6a2."""
    nasty = decode(CefFormatter().format(event_of(golden_inputs()["nasty-line-breaks"], "w")))
    assert nasty.class_id == "tracking:rejected" and nasty.name == "Email rejected" and nasty.severity == "6"
    ext = nasty.extension
    assert ext["c6a2"] == "2001:db8::dead:beef" and ext["c6a2Label"] == "senderIPv6" and "src" not in ext
    assert ext["msg"].startswith("line one\r\nBcc: injected@evil.test\nCEF:0|Evil")
    assert ext["deviceDirection"] == "0" and ext["cs5"] == "w" and ext["outcome"] == "failure"
    held = decode(CefFormatter().format(event_of(golden_inputs()["nasty-pipes-equals"])))
    archived = decode(CefFormatter().format(event_of(golden_inputs()["search-archived-inbound"])))
    assert int(held.severity) > int(archived.severity)
    assert held.extension["msg"] == "a|b=c\\d cs1=forged msg=forged"
    assert held.extension["cs1"] == "nasty-pipes-equals" and held.extension["src"] == "203.0.113.7"
    assert held.extension["duser"] == "victim@example.com,second@example.com"
    assert held.extension["cn2"] == "1" and held.extension["cn1"] == "19"
    assert archived.extension["rt"] == str(int(datetime(2022, 7, 18, 13, 25, tzinfo=timezone.utc).timestamp() * 1000))


def test_cef_header_never_holds_a_pipe_and_empty_values_are_omitted() -> None:
    """A status with a pipe is sanitized in the header; empty fields produce no key."""
    line = CefFormatter().format(event_of(golden_inputs()["nasty-unicode-trailing"]))
    header = line.split("|")[:8]
    assert len(line.split("|", 7)) == 8 and "weird/status" in header[4]
    minimal = decode(CefFormatter().format(event_of(golden_inputs()["nasty-minimal"])))
    assert "msg" not in minimal.extension and "suser" not in minimal.extension
    assert "cs4Label" not in minimal.extension


def test_cef_options_rt_format_and_severity_map() -> None:
    """rt_format: syslog writes MMM dd yyyy HH:mm:ss UTC; a severity map overrides the defaults."""
    fmt = build_formatter("cef", {"rt_format": "syslog", "severity": {"archived": 1}})
    ext = decode(fmt.format(event_of(golden_inputs()["search-archived-inbound"])))
    assert ext.extension["rt"] == "Jul 18 2022 13:25:00 UTC" and ext.severity == "1"


def test_every_simulated_record_passes_validator_and_round_trip() -> None:
    """All statuses, routes and nasty strings the simulator produces are valid ECS and decodable CEF."""
    now = datetime(2026, 11, 28, tzinfo=timezone.utc)
    flow = MailFlow(seed=5, start=now - timedelta(hours=6), end=now, count=3000)
    ecs, cef = EcsFormatter(), CefFormatter()
    statuses = set()
    for m in flow.between(flow.start, flow.end):
        for offset, status, info in m.lifecycle:
            event = Event(parse_tracked_email(m.to_json(status, info)), "sim", FETCHED)
            statuses.add(status)
            doc_line = ecs.format(event)
            assert len(doc_line.splitlines()) == 1
            assert validate(json.loads(doc_line)) == [], m.to_json(status, info)
            decoded = decode(cef.format(event))
            assert decoded.extension["cs1"] == m.id
    assert statuses >= {"archived", "delivery", "held", "rejected", "bounced", "deferred", "processing"}
