"""mimecast.quota_reserve and the redacted proxy URL, through the loader and the command line."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from collector.config import QuotaReserve, RedactedUrl, parse_config
from collector.simulator import Simulator
from tests.conftest import config_dict, run_cli, write_config
from tests.test_config import base, problems

PASSWORD = "hunter2-proxy-pass"


@pytest.mark.parametrize(("written", "limit", "reserved"), [
    ("10%", 100, 10), ("10%", 7, 1), ("0%", 50, 0), ("90%", 10, 9), ("12.5%", 8, 1),
    (20, 100, 20), (20, 10, 9), (0, 100, 0), (5, 1, 0), (5, 0, 0),
])
def test_quota_reserve_is_a_count_or_a_share(tmp_path: Path, written: Any, limit: int, reserved: int) -> None:
    """A count keeps at most limit - 1 (never below 0); a share keeps ceil(limit * share)."""
    data = base(tmp_path)
    data["mimecast"]["quota_reserve"] = written
    assert parse_config(data, env={}, base_dir=tmp_path).mimecast.quota_reserve.of(limit) == reserved


def test_quota_reserve_defaults_to_ten_percent(tmp_path: Path) -> None:
    """Without the key, a tenth of the quota is kept back."""
    reserve = parse_config(base(tmp_path), env={}, base_dir=tmp_path).mimecast.quota_reserve
    assert reserve == QuotaReserve(share=0.1) and str(reserve) == "10%" and reserve.of(450) == 45


@pytest.mark.parametrize(("written", "expected"), [
    (-1, "mimecast.quota_reserve: -1 is out of range (0 to 1000000)"),
    ("95%", "mimecast.quota_reserve: 95% is out of range (0% to 90%)"),
    ("-5%", "mimecast.quota_reserve: -5% is out of range (0% to 90%)"),
    ("ten", "mimecast.quota_reserve: 'ten' is not a number of requests or a percentage like '10%'"),
    ("20", "mimecast.quota_reserve: '20' is not a number of requests or a percentage like '10%'"),
    (True, "mimecast.quota_reserve: expected a number of requests or a percentage like '10%', got a boolean"),
    (1.5, "mimecast.quota_reserve: expected a number of requests or a percentage like '10%', got a number"),
])
def test_quota_reserve_mistakes_name_the_key(tmp_path: Path, written: Any, expected: str) -> None:
    """Negative counts, shares above 90% and anything else are reported at mimecast.quota_reserve."""
    data = base(tmp_path)
    data["mimecast"]["quota_reserve"] = written
    assert problems(data, tmp_path) == [expected]


def test_result_cap_stays_in_collection(tmp_path: Path) -> None:
    """result_cap belongs to collection; under mimecast it is an unknown key."""
    data = base(tmp_path)
    data["mimecast"]["result_cap"] = 100
    assert problems(data, tmp_path)[0].startswith("mimecast.result_cap: unknown key (allowed: auth, ")


def test_proxy_url_shows_without_its_user_info() -> None:
    """str and repr hide user:password; reveal() gives the URL to connect with."""
    url = RedactedUrl(f"http://user:{PASSWORD}@proxy.example.com:3128/")
    assert str(url) == "http://***@proxy.example.com:3128/"
    assert PASSWORD not in repr(url) and PASSWORD not in f"{url}"
    assert url.reveal() == f"http://user:{PASSWORD}@proxy.example.com:3128/"
    assert str(RedactedUrl("http://proxy.example.com:3128")) == "http://proxy.example.com:3128"


def test_bad_proxy_url_is_reported_without_its_password(tmp_path: Path) -> None:
    """A proxy URL the loader refuses is quoted with its user-info redacted."""
    data = base(tmp_path)
    data["mimecast"]["proxy"] = f"ftp://user:{PASSWORD}@proxy.example.com"
    assert problems(data, tmp_path) == ["mimecast.proxy: 'ftp://***@proxy.example.com' is not an http(s) URL"]


class _Proxy(BaseHTTPRequestHandler):
    """A forwarding HTTP proxy on loopback that records each Proxy-Authorization header."""

    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        type(self).seen.append(self.headers.get("Proxy-Authorization", ""))
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-authorization", "host")}
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        try:
            conn.request("POST", target.path + (f"?{target.query}" if target.query else ""), body, headers)
            answer = conn.getresponse()
            payload = answer.read()
        finally:
            conn.close()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(name="proxy_port")
def _proxy_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    _Proxy.seen = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_proxy_password_never_printed_but_used(sim: Simulator, tmp_path: Path, proxy_port: int) -> None:
    """check-config and doctor show the proxy redacted; `once` at debug level goes through it with the
    password (the proxy sees it) and no log line shows it."""
    url = f"http://collector:{PASSWORD}@127.0.0.1:{proxy_port}"
    cfg = write_config(tmp_path, config_dict(sim, tmp_path, mimecast={"proxy": url}))
    env = {"NO_PROXY": "", "no_proxy": ""}
    check = run_cli("check-config", "-c", str(cfg), env=env)
    assert check.returncode == 0, check.stderr
    assert f"proxy http://***@127.0.0.1:{proxy_port}," in check.stdout
    doctor = run_cli("doctor", "-c", str(cfg), env=env)
    assert f"requests to Mimecast go through http://***@127.0.0.1:{proxy_port}" in doctor.stdout
    once = run_cli("once", "-c", str(cfg), env=env)
    assert once.returncode == 0, once.stderr
    assert '"event": "poll.chunk"' in once.stderr
    expected = "Basic " + base64.b64encode(f"collector:{PASSWORD}".encode()).decode()
    assert _Proxy.seen and set(_Proxy.seen) == {expected}
    for output in (check, doctor, once):
        assert PASSWORD not in output.stdout + output.stderr


def test_a_debug_line_carrying_the_proxy_url_is_redacted(tmp_path: Path) -> None:
    """The log redactor knows the proxy's URL, user-info and password: a debug line quoting any of them,
    as a connection error would, shows *** instead."""
    data = base(tmp_path)
    data["mimecast"]["proxy"] = f"http://collector:{PASSWORD}@proxy.example.com:3128"
    data["logging"] = {"level": "debug", "format": "json"}
    cfg = write_config(tmp_path, data)
    script = ("import sys, structlog; from pathlib import Path; from collector.config import load_config; "
              "from collector.logging import configure_logging; c = load_config(Path(sys.argv[1])); "
              "configure_logging(c.logging.level, c.logging.format, secrets=c.secrets()); "
              "url = c.mimecast.proxy.reveal(); "
              "structlog.get_logger('t').debug('mimecast.proxy', proxy=url, error=f'ProxyError({url!r})', "
              "password=url.split(':')[2].split('@')[0])")
    result = subprocess.run([sys.executable, "-c", script, str(cfg)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["level"] == "debug" and line["event"] == "mimecast.proxy"
    assert PASSWORD not in result.stderr and "***" in line["proxy"] and "***" in line["error"]


_MALFORMED = [f"alice:{PASSWORD}@proxy.example.com:3128", f"http//alice:{PASSWORD}@proxy.example.com:3128",
              f"http:/alice:{PASSWORD}@proxy.example.com", f"http://alice:{PASSWORD}@proxy.example.com:99999",
              f"http://alice:{PASSWORD}@[::1", f"http://alice:{PASSWORD}/x@proxy.example.com:3128",
              f"socks5://alice:{PASSWORD}@proxy.example.com:1080"]


@pytest.mark.parametrize("proxy", _MALFORMED)
def test_a_malformed_proxy_url_never_shows_its_password(tmp_path: Path, proxy: str) -> None:
    """check-config, run and doctor refuse a proxy URL of any wrong shape at mimecast.proxy, exit 78, and never
    print its password: without a scheme, the scheme mistyped, a bad port or host, an unencoded '/'."""
    data = base(tmp_path)
    data["mimecast"]["proxy"] = proxy
    cfg = write_config(tmp_path, data)
    for command in ("check-config", "run", "doctor"):
        result = run_cli(command, "-c", str(cfg), timeout=60)
        assert result.returncode == 78, (command, result.stderr)
        assert "mimecast.proxy: " in result.stderr and "***@" in result.stderr, (command, result.stderr)
        assert PASSWORD not in result.stdout + result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr


def test_a_password_in_base_url_is_refused_without_being_shown(tmp_path: Path) -> None:
    """Mimecast takes no user-info: base_url and token_url with user:password@ are refused, redacted."""
    data = base(tmp_path)
    data["mimecast"]["base_url"] = f"https://bob:{PASSWORD}@api.services.mimecast.com"
    data["mimecast"]["token_url"] = f"https://bob:{PASSWORD}@api.services.mimecast.com/oauth/token"
    cfg = write_config(tmp_path, data)
    for command in ("check-config", "run", "doctor"):
        result = run_cli(command, "-c", str(cfg), timeout=60)
        assert result.returncode == 78, (command, result.stderr)
        assert "mimecast.base_url: 'https://***@api.services.mimecast.com' must not carry user:password@" \
               in result.stderr
        assert "mimecast.token_url: 'https://***@api.services.mimecast.com/oauth/token'" in result.stderr
        assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(("url", "shown"), [
    (f"alice:{PASSWORD}@proxy:3128", "***@proxy:3128"), (f"http//a:{PASSWORD}@p:1", "***@p:1"),
    (f"http://a:{PASSWORD}@p@q:1", "http://***@q:1"), ("https://proxy:3128/", "https://proxy:3128/"),
])
def test_any_shape_of_url_prints_redacted(url: str, shown: str) -> None:
    """str, repr and the log redactor's secrets cover a URL whatever its shape."""
    value = RedactedUrl(url)
    assert str(value) == shown and PASSWORD not in repr(value)
    assert (PASSWORD in url) == any(PASSWORD in s for s in value.secrets())
