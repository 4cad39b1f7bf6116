"""Each way of not reaching Mimecast is named for what happened, with its fix and its own error type.

Real loopback endpoints only: the simulator under a wrong path, the simulator's plain-HTTP port asked for TLS,
a port nobody listens on, and a host under ``.invalid`` (RFC 6761: never resolves).
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector.errors import ApiError, AuthError, EndpointNotFoundError, TlsError, TransientApiError
from collector.metrics import Metrics
from collector.mimecast.client import MimecastClient
from collector.simulator import Simulator
from tests.conftest import make_config

HMAC = {"type": "hmac", "app_id": "a", "app_key": "b", "access_key": "c", "secret_key": "ZA=="}


def search(sim: Simulator, tmp_path: Path, now: datetime, metrics: Metrics | None = None,
           **mimecast: object) -> ApiError:
    config = make_config(sim, tmp_path, mimecast={"retries": 1, **mimecast})
    client = MimecastClient(config.mimecast, metrics=metrics)
    try:
        with pytest.raises(ApiError) as info:
            client.search(config.watches[0], now - timedelta(hours=1), now)
    finally:
        client.close()
    return info.value


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("auth", ["oauth2", "hmac"])
def test_a_wrong_base_url_path_is_endpoint_not_found_not_authentication(sim: Simulator, tmp_path: Path,
                                                                        now: datetime, auth: str) -> None:
    """HTTP 404 from the token endpoint (API 2.0) or the search endpoint (API 1.0): check base_url, not the keys."""
    extra = {} if auth == "oauth2" else {"auth": {**HMAC, "app_id": sim.credentials.app_id}}
    error = search(sim, tmp_path, now, base_url=sim.base_url + "/api/v2", **extra)
    assert isinstance(error, EndpointNotFoundError) and not isinstance(error, AuthError)
    assert error.error_type == "not_found" and error.status == 404
    endpoint = "token" if auth == "oauth2" else "search"
    assert f"the {endpoint} endpoint was not found (HTTP 404 from /api/v2/" in str(error)
    assert "check base_url" in str(error) and "client_id" not in str(error)
    assert len(sim.requests) == 1, "a wrong path is not retried"


def test_https_to_a_plain_http_port_is_a_tls_protocol_mismatch(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """The simulator speaks plain HTTP: a TLS hello gets a plain-text answer, which is no certificate problem."""
    url = sim.base_url.replace("http://", "https://")
    port = url.rsplit(":", 1)[1]
    error = search(sim, tmp_path, now, base_url=url)
    assert isinstance(error, TlsError) and error.error_type == "tls_protocol"
    assert str(error).startswith(f"127.0.0.1:{port} does not speak TLS")
    assert "check base_url's scheme and port" in str(error) and "verification" not in str(error)


def test_a_refused_connection_names_host_and_port(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """Nobody listening: retried, then an error naming 127.0.0.1:<port> and the refusal."""
    port = closed_port()
    metrics = Metrics(CollectorRegistry(), process=False)
    error = search(sim, tmp_path, now, metrics=metrics, base_url=f"http://127.0.0.1:{port}", auth=HMAC)
    assert isinstance(error, TransientApiError) and error.error_type == "connection"
    assert f"cannot connect to 127.0.0.1:{port} (connection refused)" in str(error)
    assert metrics.registry.get_sample_value("mimecast_collector_api_requests_total",
                                             {"endpoint": "search", "code": "connection"}) == 2


def test_an_unresolvable_host_is_named_as_dns(sim: Simulator, tmp_path: Path, now: datetime) -> None:
    """A name under .invalid never resolves: the error says DNS and names the host."""
    error = search(sim, tmp_path, now, base_url="https://mimecast-collector-test.invalid", auth=HMAC)
    assert isinstance(error, TransientApiError) and error.error_type == "dns"
    assert "cannot resolve mimecast-collector-test.invalid (DNS)" in str(error)
    assert "check base_url's host name" in str(error)
