"""mimecast.max_answer_bytes: an answer too large to read is refused unread and its window searched narrower."""

from __future__ import annotations

import json
import socket
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector.config import load_config
from collector.daemon import Collector
from collector.errors import AnswerTooLargeError
from collector.mimecast.client import MimecastClient
from collector.reporting import CycleResult
from collector.simulator import Fault, Filter, MailFlow, Simulator
from tests.conftest import config_dict, make_config, run_cli, write_config

FLT = Filter(to="example.com")


def keys_in(path: Path) -> list[tuple[str, str]]:
    return [(e["id"], e["status"]) for e in (json.loads(line)["tracked_email"]
                                             for line in path.read_text(encoding="utf-8").splitlines())]


def _poll_once(sim: Simulator, tmp_path: Path, now: datetime, *, window: str,
               lookback: str) -> tuple[Collector, CycleResult]:
    """One poll of a collector whose answers may hold at most 64 KiB."""
    c = Collector(make_config(sim, tmp_path, mimecast={"max_answer_bytes": "64KiB"},
                              collection={"window": window, "initial_lookback": lookback, "result_cap": 1000}),
                  registry=CollectorRegistry())
    try:
        (result,) = c.run_once(now=lambda: now)
    finally:
        c.close()
    return c, result


def test_an_answer_over_the_limit_is_searched_again_narrower_and_everything_ships(now: datetime,
                                                                                 tmp_path: Path) -> None:
    """Answers of up to 1,000 records (about 1 KB each) against a 64KiB limit: the wide searches are refused,
    counted, searched again narrower, and every message ships once."""
    flow = MailFlow(seed=3, start=now - timedelta(hours=2), end=now, count=1500)
    with Simulator(flow, cap=1000, clock=lambda: now) as sim:
        c, result = _poll_once(sim, tmp_path, now, window="1h", lookback="2h")
    assert result.ok, result.error
    refused = c.metrics.registry.get_sample_value("mimecast_collector_api_requests_total",
                                                  {"endpoint": "search", "code": "too_large"})
    assert refused and refused >= 1 and result.splits >= refused
    got = keys_in(tmp_path / "out.ndjson")
    assert len(got) == len(set(got)) and set(got) == flow.ground_truth(FLT, now - timedelta(hours=2), now, now)


def test_one_second_still_too_large_fails_the_poll_with_its_own_error_type(now: datetime, tmp_path: Path) -> None:
    """Every answer declares more than the limit: the search narrows to one second, then the poll fails with
    error_type answer_too_large, counted, and nothing is marked delivered."""
    flow = MailFlow(seed=3, start=now - timedelta(minutes=10), end=now, count=50)
    huge = b"{" + b" " * (70 << 10) + b"}"
    with Simulator(flow, cap=1000, clock=lambda: now) as sim:
        sim.periodic = (1, Fault("canned", status=200, body=huge))
        c, result = _poll_once(sim, tmp_path, now, window="1m", lookback="1m")
    assert not result.ok and result.error is not None and result.error.error_type == "answer_too_large"
    assert "max_answer_bytes" in str(result.error)
    spans = [(r.body["data"][0]["start"], r.body["data"][0]["end"]) for r in sim.searches()]
    assert len(spans) >= 2 and len({s for s, _ in spans}) == 1, "the same start, searched narrower each time"
    last = [datetime.strptime(t, "%Y-%m-%dT%H:%M:%S%z") for t in spans[-1]]
    assert last[1] - last[0] == timedelta(seconds=1), spans
    assert c.metrics.registry.get_sample_value("mimecast_collector_poll_errors_total",
                                               {"watch": "inbound", "error_type": "answer_too_large"}) == 1
    assert not (tmp_path / "out.ndjson").exists() or (tmp_path / "out.ndjson").read_text() == ""


def test_a_body_without_length_is_cut_at_the_limit(sim: Simulator, now: datetime, tmp_path: Path) -> None:
    """A server that sends 4 MiB with no Content-Length (read until it closes): the client stops at the limit
    instead of reading the whole answer, and says so."""
    listener = socket.create_server(("127.0.0.1", 0))
    sent: list[int] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            # Read the request's body too: closing with it unread would reset the connection under the answer.
            head, _, body = request.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
            block, total = b" " * 65536, 0
            try:
                for _ in range(64):
                    conn.sendall(block)
                    total += len(block)
            except OSError:
                pass
            sent.append(total)

    server = threading.Thread(target=serve)
    server.start()
    data = config_dict(sim, tmp_path, auth="hmac", mimecast={"max_answer_bytes": "64KiB", "retries": 0})
    data["mimecast"]["base_url"] = f"http://127.0.0.1:{listener.getsockname()[1]}"
    config = load_config(write_config(tmp_path, data), env={})
    client = MimecastClient(config.mimecast)
    try:
        with pytest.raises(AnswerTooLargeError, match="passed 65536 bytes and was not read further"):
            client.search(config.watches[0], now - timedelta(hours=1), now)
    finally:
        client.close()
        server.join()
        listener.close()
    assert sent and sent[0] < 64 * 65536, "the client hung up before the server could send it all"


@pytest.mark.parametrize(("value", "message"), [
    ("10KiB", "mimecast.max_answer_bytes: 10KiB is out of range (64KiB to 1GiB)"),
    ("lots", "mimecast.max_answer_bytes: 'lots' is not a size like 64MiB"),
    (True, "mimecast.max_answer_bytes: expected a size like 64MiB"),
])
def test_max_answer_bytes_mistakes_name_the_key(sim: Simulator, tmp_path: Path, value: object, message: str) -> None:
    """A bad size is a configuration error naming the key, exit 78."""
    path = write_config(tmp_path, config_dict(sim, tmp_path, mimecast={"max_answer_bytes": value}))
    done = run_cli("check-config", "-c", str(path))
    assert done.returncode == 78 and message in done.stderr, done.stderr


def test_max_answer_bytes_defaults_to_64_mib_and_takes_units(sim: Simulator, tmp_path: Path) -> None:
    """No setting: 64 MiB; a number is bytes; 1GiB is the most."""
    assert make_config(sim, tmp_path).mimecast.max_answer_bytes == 64 << 20
    for given, expected in ((131072, 131072), ("1GiB", 1 << 30), ("512 KiB", 512 << 10)):
        data = config_dict(sim, tmp_path, mimecast={"max_answer_bytes": given})
        assert load_config(write_config(tmp_path, data), env={}).mimecast.max_answer_bytes == expected


def test_an_answer_too_large_teaches_the_plan_so_later_polls_are_not_refused(now: datetime, tmp_path: Path) -> None:
    """Polls five simulated minutes apart, result_cap 250 against a 64KiB limit (about 100 records): the first
    poll meets answers too large, and from then on first reads and re-reads (packed from known counts, which say
    nothing of bytes) are planned to fit, so later polls do not spend the quota on refused answers. Every message
    ships, none twice."""
    start = now - timedelta(hours=1)
    flow = MailFlow(seed=3, start=start, end=now + timedelta(hours=1), count=20000)
    clock = {"now": now}
    with Simulator(flow, cap=250, clock=lambda: clock["now"]) as sim:
        c = Collector(make_config(sim, tmp_path, mimecast={"max_answer_bytes": "64KiB"}, collection={
            "lag": "1m", "settle": "10m", "follow": ["30m"], "initial_lookback": "1h", "window": "5m",
            "result_cap": 250}), registry=CollectorRegistry())
        refused = []
        for _ in range(8):
            (result,) = c.run_once(now=lambda: clock["now"])
            assert result.ok, result.error
            refused.append(c.metrics.registry.get_sample_value(
                "mimecast_collector_api_requests_total", {"endpoint": "search", "code": "too_large"}) or 0)
            clock["now"] += timedelta(minutes=5)
        c.close()
    later = [b - a for a, b in zip(refused, refused[1:])]
    assert refused[0] >= 1 and sum(later) <= 1, refused
    got = keys_in(tmp_path / "out.ndjson")
    read_to = clock["now"] - timedelta(minutes=6)
    assert len(got) == len(set(got))
    assert {i for i, _ in got} >= {i for i, _ in flow.ground_truth(FLT, start, read_to, read_to)}
