"""The typed tracked email: real fixtures, tolerant timestamps, clear per-record errors."""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime, timezone

import pytest

from collector.errors import RecordError
from collector.mimecast.envelope import first_failure, tracked_emails
from collector.records import event_id, parse_timestamp, parse_tracked_email
from tests.conftest import DATA

FIXTURES = sorted((DATA / "mimecast").glob("*.json"))


def load(name: str) -> object:
    return json.loads((DATA / "mimecast" / name).read_text(encoding="utf-8"))


def test_every_shared_fixture_is_read() -> None:
    """Each real response body parses to records or to a failure with Mimecast's code."""
    assert len(FIXTURES) == 8
    for path in FIXTURES:
        body = json.loads(path.read_text(encoding="utf-8"))
        if path.name.startswith("search-"):
            records = [parse_tracked_email(r) for r in tracked_emails(body)]
            assert len(records) == 1 and records[0].id
        elif path.name.startswith("fail-") or "invalid" in path.name:
            assert first_failure(body)[0] is not None
        else:
            assert first_failure(body) == (None, "", False)


def test_archived_inbound_fixture_fields() -> None:
    """All documented fields land typed in the record."""
    (raw,) = tracked_emails(load("search-archived-inbound.json"))
    r = parse_tracked_email(raw)
    assert r.status == "archived" and r.route == "inbound"
    assert r.received == datetime(2022, 7, 18, 13, 25, tzinfo=timezone.utc)
    assert r.sender_env.address == "markrobertsny@pilot-meadow.b41.one" and r.sender_env.name == ""
    assert r.recipients[0].address == "klay@paloaltonetworks.mime.integration.com"
    assert r.ip == ipaddress.ip_address("54.236.186.184")
    assert r.attachments is False and r.spam_score == 2 and r.detection_level == "relaxed"
    assert r.info == "Indexed and archived" and r.raw is raw


def test_rejected_fixture_without_attachments_and_empty_header_from() -> None:
    """A missing attachments flag is unknown; an empty header address stays empty."""
    r = parse_tracked_email(tracked_emails(load("search-rejected-inbound.json"))[0])
    assert r.attachments is None and r.sender_hdr.address == ""


def test_fail_fixtures_carry_code_and_message() -> None:
    """fail entries with nested errors, with key and field, and API 2.0 style all give their code."""
    assert first_failure(load("fail-in-http-200.json")) == ("err_managed_url_not_found", "Managed URL not found", False)
    assert first_failure(load("fail-with-key-and-field.json"))[0] == "err_policy_invalid_from_value"
    assert first_failure(load("fail-with-key-and-field.json"))[2] is True
    assert first_failure(load("oauth-token-invalid-client.json"))[0] == "InvalidClientIdentifier"


@pytest.mark.parametrize("text", ["2022-07-18T13:25:00+0000", "2022-07-18T13:25:00+00:00", "2022-07-18T13:25:00Z",
                                  "2022-07-18T15:25:00+0200", "2022-07-18T08:25:00-05:00"])
def test_timestamps_in_every_offset_form_become_utc(text: str) -> None:
    """+0000, +00:00, Z and other offsets all become the same aware UTC instant."""
    assert parse_timestamp(text) == datetime(2022, 7, 18, 13, 25, tzinfo=timezone.utc)


@pytest.mark.parametrize(("raw", "reason"), [
    ({"received": "2022-07-18T13:25:00+0000"}, "missing_id"),
    ({"id": "", "received": "2022-07-18T13:25:00+0000"}, "missing_id"),
    ({"id": "x"}, "bad_received"),
    ({"id": "x", "received": "2022-07-18 13:25"}, "bad_received"),
    ({"id": "x", "received": 1658150700}, "bad_received"),
    ("a string", "not_an_object"),
])
def test_unusable_records_raise_a_reasoned_error(raw: object, reason: str) -> None:
    """Records without id or a parseable received time raise RecordError with a bounded reason."""
    with pytest.raises(RecordError) as info:
        parse_tracked_email(raw)
    assert info.value.reason == reason


def test_odd_fields_are_tolerated() -> None:
    """Wrong-typed optional fields degrade to empty values instead of failing the record."""
    r = parse_tracked_email({"id": "x", "received": "2022-07-18T13:25:00Z", "route": "INBOUND", "to": "nobody",
                             "fromEnv": None, "senderIP": "not-an-ip", "spamScore": "7", "attachments": "yes",
                             "sent": "garbage"})
    assert r.route == "inbound" and [a.address for a in r.recipients] == ["nobody"] and r.sender_env.address == ""
    assert r.ip is None and r.sender_ip == "not-an-ip" and r.spam_score == 7
    assert r.attachments is None and r.sent is None


@pytest.mark.parametrize(("value", "expected"), [("7", 7), (" -3 ", -3), ("¹", None), ("٣", None), ("1e3", None),
                                               ("9" * 40, None), (True, None), (4.5, None)])
def test_spam_score_accepts_only_plain_integers(value: object, expected: int | None) -> None:
    """Unicode digits, floats, booleans and absurd lengths become unknown instead of failing the record."""
    record = parse_tracked_email({"id": "x", "received": "2022-07-18T13:25:00Z", "spamScore": value})
    assert record.spam_score == expected


def test_ipv6_sender_and_stable_event_id() -> None:
    """IPv6 senders parse; the event id depends only on (id, status)."""
    r = parse_tracked_email({"id": "m1", "status": "held", "received": "2022-07-18T13:25:00Z", "senderIP": "2001:db8::1"})
    assert r.ip == ipaddress.ip_address("2001:db8::1")
    assert r.event_id == event_id("m1", "held") != event_id("m1", "archived")
    assert len(r.event_id) == 32
