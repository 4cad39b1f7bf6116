"""Threads are a bounded resource (systemd's TasksMax): neither idle scrapers nor searches may pin them."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from collector.errors import TransientApiError
from collector.metrics import Metrics
from collector.metrics_server import MetricsServer
from collector.mimecast.client import MimecastClient
from collector.simulator import Credentials, Simulator
from tests.conftest import ROOT, config_dict, make_config, write_config
from tests.test_daemon import Daemon, free_port, wait_for


def threads_of(pid: int) -> int:
    """The number of threads of process ``pid``, as the kernel counts them."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def half_sent(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that each send half a request and then say nothing."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: collector\r\n")
        socks.append(sock)
    return socks


def test_200_half_sent_requests_pin_no_thread_of_the_daemon_and_a_scrape_answers(sim: Simulator,
                                                                                 tmp_path: Path) -> None:
    """A running daemon: 200 connections to its metrics port that never finish their request leave its thread
    count where it was, and a scrape made while they hang on is answered in full."""
    port = free_port()
    cfg = write_config(tmp_path, config_dict(sim, tmp_path, metrics={"listen": f"127.0.0.1:{port}"},
                                             collection={"interval": "1h"}))
    daemon = Daemon(tmp_path, "run", "-c", str(cfg))
    socks: list[socket.socket] = []
    try:
        wait_for(lambda: '"poll.done"' in daemon.log.read_text(), what="the first poll")
        before = threads_of(daemon.proc.pid)
        socks = half_sent(port, 200)
        time.sleep(0.5)
        during = threads_of(daemon.proc.pid)
        scraped = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        after = threads_of(daemon.proc.pid)
    finally:
        for sock in socks:
            sock.close()
        daemon.signal(signal.SIGTERM)
        log = daemon.wait()
        daemon.kill()
    assert scraped.status_code == 200 and "mimecast_collector_build_info" in scraped.text
    assert during <= before + 1 and after <= before + 1, (before, during, after)
    assert daemon.proc.returncode == 0, log


def test_a_connection_that_never_finishes_its_request_is_closed_at_the_deadline() -> None:
    """The read deadline: a half-sent request is hung up on, a connection past the limit makes way for a
    new one, and the newest (a scrape) is served."""
    server = MetricsServer(Metrics(CollectorRegistry(), process=False).registry, "127.0.0.1", 0,
                           max_connections=4, deadline=1.0).start()
    port = server.server_address[1]
    try:
        (stalled,) = half_sent(port, 1)
        stalled.settimeout(10)
        assert stalled.recv(100) == b"", "the server hung up on the stalled request"
        crowd = half_sent(port, 4)
        scraped = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        crowd[0].settimeout(10)
        assert crowd[0].recv(100) == b"", "the oldest made way for the scrape"
        assert scraped.status_code == 200 and "mimecast_collector_build_info" in scraped.text
        for sock in [stalled, *crowd]:
            sock.close()
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class _Url:
    """What a configuration needs of a simulator served by another process: its URL and demo credentials."""

    base_url: str
    credentials: Credentials = field(default_factory=Credentials)


@pytest.fixture(name="simulator_process")
def _simulator_process() -> Iterator[str]:
    """The simulator as a separate process (its request threads are not this process's), yielding its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "collector", "simulator", "--port", "0"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = ""
        while "base_url" not in line:
            line = proc.stdout.readline()
            assert line, "the simulator printed its base_url"
        yield line.split("base_url:")[1].strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_search_starts_no_thread_even_when_its_deadline_fires(simulator_process: str, tmp_path: Path,
                                                                now: datetime) -> None:
    """After the client's first search, searches that succeed and a search cut at its deadline (a server
    that accepts and never answers) run on the threads that were already there: no timer per search."""
    silent = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody ever answers
    base = {"timeout": "1s", "retries": 0}
    good = MimecastClient(make_config(_Url(simulator_process), tmp_path, auth="hmac", mimecast=base).mimecast)
    hung = MimecastClient(make_config(_Url(f"http://127.0.0.1:{silent.getsockname()[1]}"), tmp_path, auth="hmac",
                                      mimecast=base).mimecast)
    watch = make_config(_Url(simulator_process), tmp_path).watches[0]
    span = (now - timedelta(minutes=30), now)
    good.search(watch, *span)
    with pytest.raises(TransientApiError):
        hung.search(watch, *span)
    known = {t.ident for t in threading.enumerate()}
    seen: set[int | None] = set()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.update(t.ident for t in threading.enumerate())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for _ in range(10):
            good.search(watch, *span)
        with pytest.raises(TransientApiError, match="timed out"):
            hung.search(watch, *span)
    finally:
        done.set()
        sampler.join()
        good.close()
        hung.close()
        silent.close()
    assert seen - known - {sampler.ident} == set(), [t.name for t in threading.enumerate()]


def test_a_failing_collector_answers_500_and_the_endpoint_keeps_serving() -> None:
    """A metric whose collection raises: that scrape is a 500, the endpoint's one thread lives on."""
    registry = CollectorRegistry()
    broken = {"on": True}

    class Flaky:
        def collect(self) -> list[Any]:
            if broken["on"]:
                raise RuntimeError("collection failed")
            return []

    registry.register(Flaky())  # type: ignore[arg-type]
    server = MetricsServer(registry, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        first = requests.get(url, timeout=5)
        broken["on"] = False
        second = requests.get(url, timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert first.status_code == 500 and second.status_code == 200
