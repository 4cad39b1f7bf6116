"""The Mimecast client over real HTTP against the simulator: both auth types and every failure mode."""

from __future__ import annotations

import base64
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.config import HmacAuth
from collector.config import Secret
from collector.errors import (
    ApiFailError, AuthError, BindingExpiredError, MalformedResponseError, RateLimitedError, TransientApiError,
)
from collector.metrics import Metrics
from collector.mimecast.auth import HmacSigner, mc_date
from collector.mimecast.client import MimecastClient, format_search_date
from collector.simulator import Fault, Filter, Simulator
from tests.conftest import DATA, make_config


def window(now: datetime) -> tuple[datetime, datetime]:
    return now - timedelta(hours=1), now


def client_for(sim: Simulator, tmp_path: Path, metrics: Metrics | None = None, **kw: object) -> tuple:
    config = make_config(sim, tmp_path, **kw)
    return MimecastClient(config.mimecast, metrics=metrics), config.watches[0]


@pytest.mark.parametrize("auth", ["oauth2", "hmac"])
def test_search_with_both_auth_types_matches_ground_truth(sim: Simulator, tmp_path: Path, now: datetime,
                                                           auth: str) -> None:
    """OAuth bearer and HMAC-signed searches both return exactly what the simulator holds."""
    client, watch = client_for(sim, tmp_path, auth=auth)
    start, end = window(now)
    result = client.search(watch, start, end)
    expected = sim.flow.ground_truth(Filter(to="example.com"), start, end, sim.clock())
    assert expected and {r.key for r in result.records} == expected
    (search,) = sim.searches()
    assert search.status == 200
    path = "/api/message-finder/search" if auth == "oauth2" else "/api/tracking/search"
    assert search.path == path


def test_request_body_and_headers_follow_the_documentation(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """Dates are +0000 UTC, only given filters are sent, and the User-Agent names the collector."""
    client, watch = client_for(sim, tmp_path, watches=[{"name": "w", "to": "example.com", "subject": "Invoice"}])
    client.search(watch, *window(now))
    (search,) = sim.searches()
    item = search.body["data"][0]
    assert item["start"] == format_search_date(now - timedelta(hours=1)) and item["start"].endswith("+0000")
    assert item["searchReason"] == "SIEM export by mimecast-collector"
    assert item["advancedTrackAndTraceOptions"] == {"to": "example.com", "subject": "Invoice"}
    assert search.headers["user-agent"].startswith("mimecast-collector/")


def test_message_id_watch_sends_message_id(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """A message_id watch searches by messageId alone and finds that message."""
    target = next(sim.flow.between(now - timedelta(hours=1), now))
    client, watch = client_for(sim, tmp_path, watches=[{"name": "m", "message_id": target.message_id}])
    result = client.search(watch, *window(now))
    assert [r.id for r in result.records] == [target.id]
    assert "advancedTrackAndTraceOptions" not in sim.searches()[0].body["data"][0]


def test_hmac_signature_matches_an_independent_vector() -> None:
    """The signature equals one computed with openssl from the documented recipe."""
    # printf 'Tue, 24 Nov 2015 12:50:11 UTC:8578FCFC-A305-4D9A-99CB-F4D5ECEFE297:/api/tracking/search:app-key-123'
    #   | openssl dgst -sha1 -mac HMAC -macopt hexkey:<hex of the raw key> -binary | base64
    auth = HmacAuth(app_id="app-1", app_key=Secret("app-key-123"), access_key=Secret("access-1"),
                    secret_key=Secret("c2ltdWxhdGVkLXNlY3JldC1rZXktMDEyMzQ1Njc4OQ=="))
    signer = HmacSigner(auth, now=lambda: datetime(2015, 11, 24, 12, 50, 11, tzinfo=timezone.utc))
    headers = signer.headers("/api/tracking/search", request_id="8578FCFC-A305-4D9A-99CB-F4D5ECEFE297")
    assert headers == {"Authorization": "MC access-1:rI/V/8NDus2Bj93gjNLvzocbr0Q=",
                       "x-mc-date": "Tue, 24 Nov 2015 12:50:11 UTC",
                       "x-mc-req-id": "8578FCFC-A305-4D9A-99CB-F4D5ECEFE297", "x-mc-app-id": "app-1"}
    assert base64.b64decode("c2ltdWxhdGVkLXNlY3JldC1rZXktMDEyMzQ1Njc4OQ==") == b"simulated-secret-key-0123456789"


def test_mc_date_is_english_for_every_month_and_day() -> None:
    """x-mc-date never depends on the locale."""
    dates = {mc_date(datetime(2026, m, 1, tzinfo=timezone.utc)) for m in range(1, 13)}
    months = {d.split()[2] for d in dates}
    assert months == {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
    assert mc_date(datetime(2026, 11, 28, 2, 3, 4, tzinfo=timezone(timedelta(hours=2)))) == "Sat, 28 Nov 2026 00:03:04 UTC"


def test_wrong_hmac_key_is_an_auth_error_not_retried(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """A bad signature gets 401 from the simulator, surfaces as AuthError and is sent once."""
    creds = sim.credentials
    auth = {"type": "hmac", "app_id": creds.app_id, "app_key": creds.app_key, "access_key": creds.access_key,
            "secret_key": base64.b64encode(b"wrong key").decode()}
    client, watch = client_for(sim, tmp_path, mimecast={"auth": auth})
    with pytest.raises(AuthError, match="401") as info:
        client.search(watch, *window(now))
    assert info.value.code == "err_xdk_signature_invalid"
    assert len(sim.searches()) == 1


def test_bad_client_credentials_are_an_auth_error(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """An invalid client secret is reported with Mimecast's code and no secret in the text."""
    auth = {"type": "oauth2", "client_id": "demo-client", "client_secret": "wrong-secret-xyz"}
    client, watch = client_for(sim, tmp_path, mimecast={"auth": auth})
    with pytest.raises(AuthError, match="InvalidClientIdentifier") as info:
        client.search(watch, *window(now))
    assert "wrong-secret-xyz" not in str(info.value)
    assert sim.searches() == []


def test_token_is_cached_then_refreshed_when_expired(sim: Simulator, tmp_path: Path, now: datetime,
                                                     metrics: Metrics) -> None:
    """One token serves many searches; an expired token is replaced once and the search succeeds."""
    client, watch = client_for(sim, tmp_path, metrics)
    client.search(watch, *window(now))
    client.search(watch, *window(now))
    tokens = [r for r in sim.requests if r.path == "/oauth/token"]
    assert len(tokens) == 1
    sim.inject(Fault("expire_token"))
    result = client.search(watch, *window(now))
    assert result.records
    assert len([r for r in sim.requests if r.path == "/oauth/token"]) == 2
    statuses = [r.status for r in sim.searches()]
    assert statuses == [200, 200, 401, 200]
    assert metrics.registry.get_sample_value("mimecast_collector_api_retries_total", {"reason": "token_expired"}) == 1


def test_token_renewed_a_minute_before_expiry(flow, tmp_path: Path, now: datetime) -> None:
    """A token with 60 s left is not used: each search fetches a fresh one."""
    with Simulator(flow, token_ttl=60) as sim:
        client, watch = client_for(sim, tmp_path)
        client.search(watch, *window(now))
        client.search(watch, *window(now))
        assert len([r for r in sim.requests if r.path == "/oauth/token"]) == 2
        assert all(r.status == 200 for r in sim.searches())


def test_token_expired_fail_code_in_200_refreshes(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """A fail entry token_expired inside HTTP 200 also triggers one refresh."""
    client, watch = client_for(sim, tmp_path)
    sim.inject(Fault("fail200", code="token_expired"))
    assert client.search(watch, *window(now)).records
    assert len([r for r in sim.requests if r.path == "/oauth/token"]) == 2


def test_fail_in_200_is_an_error_with_code(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """HTTP 200 with a fail entry is an ApiFailError carrying Mimecast's code; not retried."""
    client, watch = client_for(sim, tmp_path)
    sim.inject(Fault("fail200", code="err_validation_blank"))
    with pytest.raises(ApiFailError) as info:
        client.search(watch, *window(now))
    assert info.value.code == "err_validation_blank" and "Simulated failure" in str(info.value)
    assert len(sim.searches()) == 1


@pytest.mark.parametrize(("kind", "error", "text"), [
    ("unauthorized", AuthError, "401"),
    ("forbidden", AuthError, "Gateway | Tracking | Read"),
    ("binding_expired", BindingExpiredError, "never expire"),
])
def test_auth_failures_are_not_retried(sim: Simulator, tmp_path: Path, now: datetime, kind: str,
                                       error: type, text: str) -> None:
    """401 (HMAC), 403 and 418 fail at once with a message that tells the admin what to do."""
    client, watch = client_for(sim, tmp_path, auth="hmac")
    sim.inject(Fault(kind), times=5)
    with pytest.raises(error, match=text.replace("|", r"\|")):
        client.search(watch, *window(now))
    assert len(sim.searches()) == 1


def test_429_waits_the_reset_in_milliseconds(sim: Simulator, tmp_path: Path, now: datetime, metrics: Metrics) -> None:
    """After a 429 with X-RateLimit-Reset: 400 the next request comes at least 0.4 s later."""
    client, watch = client_for(sim, tmp_path, metrics)
    sim.inject(Fault("rate_limit", reset_ms=400), times=2)
    assert client.search(watch, *window(now)).records
    searches = sim.searches()
    assert [r.status for r in searches] == [429, 429, 200]
    assert searches[1].at - searches[0].at >= 0.4 and searches[2].at - searches[1].at >= 0.4
    assert metrics.registry.get_sample_value("mimecast_collector_rate_limited_total") == 2
    assert metrics.registry.get_sample_value("mimecast_collector_rate_limit_wait_seconds_total") == pytest.approx(0.8)
    assert metrics.registry.get_sample_value("mimecast_collector_api_requests_total",
                                             {"endpoint": "search", "code": "429"}) == 2


def test_429_wait_is_shared_by_every_caller(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """While one watch waits out a 429, another watch on the same client sends nothing."""
    config = make_config(sim, tmp_path, watches=[{"name": "a", "to": "example.com"}, {"name": "b", "from": "example.com"}])
    client = MimecastClient(config.mimecast)
    sim.inject(Fault("rate_limit", reset_ms=800))
    first = threading.Thread(target=client.search, args=(config.watches[0], *window(now)))
    first.start()
    deadline = time.monotonic() + 10
    while client.gate.remaining() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    client.search(config.watches[1], *window(now))
    first.join()
    limited = sim.searches()[0]
    assert limited.status == 429
    assert all(r.at - limited.at >= 0.8 for r in sim.searches()[1:])


def test_rate_limit_beyond_the_allowed_wait_gives_up(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """A 429 storm longer than max_rate_limit_wait ends in RateLimitedError, not an endless loop."""
    client, watch = client_for(sim, tmp_path, mimecast={"max_rate_limit_wait": "1s"})
    sim.inject(Fault("rate_limit", reset_ms=400), times=100)
    with pytest.raises(RateLimitedError):
        client.search(watch, *window(now))
    assert 3 <= len(sim.searches()) <= 4


def test_5xx_is_retried_with_backoff_then_succeeds(sim: Simulator, tmp_path: Path, now: datetime,
                                                   metrics: Metrics) -> None:
    """Two 503s then success: three requests, two counted retries."""
    client, watch = client_for(sim, tmp_path, metrics)
    sim.inject(Fault("server_error", status=503), times=2)
    assert client.search(watch, *window(now)).records
    assert [r.status for r in sim.searches()] == [503, 503, 200]
    assert metrics.registry.get_sample_value("mimecast_collector_api_retries_total", {"reason": "server_error"}) == 2


def test_5xx_past_the_retry_budget_fails(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """With retries: 3, four 500s end in TransientApiError."""
    client, watch = client_for(sim, tmp_path)
    sim.inject(Fault("server_error", status=500), times=10)
    with pytest.raises(TransientApiError) as info:
        client.search(watch, *window(now))
    assert info.value.error_type == "server_error"
    assert len(sim.searches()) == 4


def test_timeout_is_retried(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """A response slower than the timeout is abandoned and the search retried."""
    client, watch = client_for(sim, tmp_path, mimecast={"timeout": "1s"})
    sim.inject(Fault("slow", delay=1.6))
    assert client.search(watch, *window(now)).records
    assert len(sim.searches()) == 2


def test_connection_refused_is_transient(tmp_path: Path, sim: Simulator, now: datetime) -> None:
    """Nobody listening: retried, then a TransientApiError of kind connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client, watch = client_for(sim, tmp_path, mimecast={"base_url": f"http://127.0.0.1:{port}",
                                                         "auth": {"type": "hmac", "app_id": "a", "app_key": "b",
                                                                  "access_key": "c", "secret_key": "ZA=="}})
    with pytest.raises(TransientApiError) as info:
        client.search(watch, *window(now))
    assert info.value.error_type == "connection"


def test_malformed_json_is_retried_then_typed(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """A truncated body is retried; if it persists it is a MalformedResponseError."""
    client, watch = client_for(sim, tmp_path)
    sim.inject(Fault("malformed"))
    assert client.search(watch, *window(now)).records
    sim.inject(Fault("malformed"), times=10)
    with pytest.raises(MalformedResponseError):
        client.search(watch, *window(now))


def test_429_with_a_non_envelope_body_from_the_fixture(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """The real {"detail": ...} 429 body is handled like any 429."""
    body = (DATA / "mimecast" / "rate-limited-429-nonstandard-body.json").read_bytes()
    client, watch = client_for(sim, tmp_path)
    sim.inject(Fault("canned", status=429, body=body, headers={"X-RateLimit-Reset": "50"}))
    assert client.search(watch, *window(now)).records


@pytest.mark.parametrize("name", ["fail-in-http-200.json", "fail-with-key-and-field.json"])
def test_real_fail_bodies_over_http(sim: Simulator, tmp_path: Path, now: datetime, name: str) -> None:
    """The shared failure bodies, served over HTTP 200, raise ApiFailError with their code."""
    client, watch = client_for(sim, tmp_path, mimecast={"retries": 0})
    sim.inject(Fault("canned", status=200, body=(DATA / "mimecast" / name).read_bytes()))
    with pytest.raises(ApiFailError) as info:
        client.search(watch, *window(now))
    assert info.value.code and info.value.code.startswith("err_")


@pytest.mark.parametrize("name", ["search-archived-inbound.json", "search-held-outbound.json",
                                  "search-rejected-inbound.json"])
def test_real_search_bodies_over_http(sim: Simulator, tmp_path: Path, now: datetime, name: str) -> None:
    """The shared search bodies, served over HTTP, give one record each."""
    client, watch = client_for(sim, tmp_path)
    sim.inject(Fault("canned", status=200, body=(DATA / "mimecast" / name).read_bytes()))
    (record,) = client.search(watch, *window(now)).records
    assert record.status in ("archived", "held", "rejected")


def test_token_fixtures_over_http(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """The shared token bodies: the invalid-client one is an AuthError, the good one is used."""
    client, watch = client_for(sim, tmp_path)
    sim.inject(Fault("canned", endpoint="token", status=400,
                     body=(DATA / "mimecast" / "oauth-token-invalid-client.json").read_bytes()))
    with pytest.raises(AuthError, match="InvalidClientIdentifier"):
        client.search(watch, *window(now))
    sim.inject(Fault("canned", endpoint="token", status=200,
                     body=(DATA / "mimecast" / "oauth-token-ok.json").read_bytes()))
    # The fixture's token is unknown to the simulator: refused once, replaced by a real one, then the search works.
    assert client.search(watch, *window(now)).records
    first, second = sim.searches()
    assert first.headers["authorization"] == "Bearer RPjLow4SKlsPLycjML3dqvIxzi7B" and first.status == 401
    assert second.status == 200


def test_unusable_records_are_set_aside_and_the_rest_returned(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """Records without id, with a bad date or of the wrong type go to invalid; the others are kept."""
    client, watch = client_for(sim, tmp_path)
    sim.inject(Fault("corrupt_records"))
    result = client.search(watch, *window(now))
    assert sorted(e.reason for e, _ in result.invalid) == ["bad_received", "missing_id", "not_an_object"]
    assert len(result.records) == len(sim.flow.ground_truth(Filter(to="example.com"), *window(now), sim.clock()))
