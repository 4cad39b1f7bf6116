"""Security checks: secrets never shown, private file modes, TLS verified by default, no forged events."""

from __future__ import annotations

import json
import os
import signal
import stat
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry

from collector.config import parse_config
from collector.daemon import Collector
from collector.errors import ApiError
from collector.mimecast.client import MimecastClient
from collector.simulator import Fault, MailFlow, Simulator
from tests.cef_decoder import decode
from tests.conftest import DATA, config_dict, make_config, run_cli, write_config
from tests.rsyslog import Certs, Rsyslog, make_certs, require_rsyslog
from tests.test_daemon import Daemon, free_port, wait_for

ALL_FAULTS = [Fault("expire_token"), Fault("rate_limit", reset_ms=50), Fault("server_error", status=502),
              Fault("malformed"), Fault("slow", delay=0), Fault("fail200", code="token_expired"),
              Fault("unauthorized"), Fault("forbidden"), Fault("binding_expired")]


@pytest.fixture(scope="module", name="certs")
def _certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def secrets_seen(sim: Simulator) -> set[str]:
    """Every credential, bearer token and HMAC signature that crossed the wire."""
    creds = sim.credentials
    found = {creds.client_secret, creds.app_key, creds.access_key, creds.secret_key}
    for request in sim.requests:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            found.add(auth[7:])
        elif auth.startswith("MC "):
            found.add(auth.split(":", 1)[1])
    return {s for s in found if s}


@pytest.mark.parametrize("auth", ["oauth2", "hmac"])
def test_no_secret_in_logs_metrics_errors_or_command_output(sim: Simulator, tmp_path: Path, auth: str) -> None:
    """At debug level with every fault triggered, no key, token or signature appears anywhere we print."""
    port = free_port()
    data = config_dict(sim, tmp_path, auth=auth, metrics={"listen": f"127.0.0.1:{port}"},
                       logging={"level": "debug", "format": "json"}, collection={"interval": "10s", "window": "5m"})
    cfg = write_config(tmp_path, data)
    for fault in ALL_FAULTS:
        sim.inject(fault)
    daemon = Daemon(tmp_path, "run", "-c", str(cfg))
    try:
        wait_for(lambda: "poll.failed" in daemon.log.read_text(), what="the faults to stop a poll")
        scrape = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        daemon.signal(signal.SIGTERM)
        log = daemon.wait()
        daemon.kill()
    for fault in ALL_FAULTS[-3:]:
        sim.inject(fault)
    outputs = [run_cli("check-config", "-c", str(cfg)), run_cli("doctor", "-c", str(cfg)),
               run_cli("once", "-c", str(cfg)), run_cli("state", "show", "-c", str(cfg))]
    printed = log + scrape + "".join(r.stdout + r.stderr for r in outputs)
    secrets = secrets_seen(sim)
    assert len(secrets) >= 3 and "mimecast.retry" in log and "poll.failed" in log
    leaked = [s for s in secrets if s in printed]
    assert not leaked, f"{len(leaked)} secrets printed"
    assert "Traceback" not in printed


def test_errors_and_reprs_never_carry_secrets(sim: Simulator, tmp_path: Path) -> None:
    """Exceptions from refused credentials and the config's repr name no secret."""
    data = config_dict(sim, tmp_path)
    data["mimecast"]["auth"]["client_secret"] = "a-wrong-secret-that-must-not-show"
    config = parse_config(data, env={}, base_dir=tmp_path)
    client = MimecastClient(config.mimecast)
    with pytest.raises(ApiError) as info:
        client.search(config.watches[0], *(sim.flow.start, sim.flow.end))
    for text in (str(info.value), repr(info.value), repr(config), str(config.mimecast)):
        assert "a-wrong-secret-that-must-not-show" not in text


def test_files_are_created_with_private_modes(sim: Simulator, tmp_path: Path) -> None:
    """State and its lock 0600, dead letters 0600, file outputs 0640."""
    c = Collector(make_config(sim, tmp_path), registry=CollectorRegistry())
    sim.inject(Fault("corrupt_records"))
    c.run_once()
    c.close()
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in tmp_path.iterdir() if p.suffix != ".yaml"}
    assert modes == {"state.json": 0o600, "state.json.lock": 0o600, "dead-letter.ndjson": 0o600,
                     "out.ndjson": 0o640}


def test_mimecast_tls_is_verified_unless_turned_off(certs: Certs, flow: MailFlow, tmp_path: Path) -> None:
    """Against an HTTPS Mimecast with a private CA: refused by default, accepted with that CA as tls_verify."""
    with Simulator(flow, tls=(str(certs.server_cert), str(certs.server_key))) as sim:
        default = make_config(sim, tmp_path)
        assert default.mimecast.tls_verify is True
        with pytest.raises(ApiError, match=r"TLS verification of 127\.0\.0\.1:\d+ failed \(certificate verify failed\)"):
            MimecastClient(default.mimecast).search(default.watches[0], flow.start, flow.end)
        trusted = make_config(sim, tmp_path, mimecast={"tls_verify": str(certs.ca)})
        result = MimecastClient(trusted.mimecast).search(trusted.watches[0], flow.start, flow.end)
        assert result.records


@pytest.fixture(name="hostile")
def _hostile(now: datetime) -> Iterator[Simulator]:
    """A simulator that answers with the nasty records (line breaks, pipes, forged CEF) plus its own flow."""
    flow = MailFlow(seed=2, start=now - timedelta(hours=1), end=now - timedelta(minutes=5), count=400)
    with Simulator(flow, cap=10_000, clock=lambda: now) as sim:
        yield sim


def nasty_body(now: datetime) -> bytes:
    records = json.loads((DATA / "nasty-records.json").read_text(encoding="utf-8"))
    for i, r in enumerate(records):
        r["received"] = (now - timedelta(minutes=30 + i)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    return json.dumps({"meta": {"status": 200}, "data": [{"trackedEmails": records}], "fail": []}).encode()


@pytest.mark.rsyslog
def test_hostile_subjects_cannot_create_a_second_event_on_any_format_or_sink(hostile: Simulator, tmp_path: Path,
                                                                             now: datetime) -> None:
    """Each nasty record is exactly one line in every file format and one message on every syslog transport."""
    require_rsyslog()
    with Rsyslog(tmp_path / "rsyslog") as receiver:
        outputs = [{"name": f"file-{fmt}", "format": fmt, "sink": {"type": "file", "path": str(tmp_path / f"o.{fmt}")}}
                   for fmt in ("ecs", "cef", "raw")]
        for name, sink in (("tcp-lf", {"transport": "tcp", "framing": "lf", "port": receiver.tcp_port}),
                           ("tcp-oc", {"transport": "tcp", "framing": "octet-counting", "port": receiver.tcp_port}),
                           ("udp", {"transport": "udp", "port": receiver.udp_port})):
            outputs.append({"name": name, "format": "cef",
                            "sink": {"type": "syslog", "host": "127.0.0.1", "protocol": "rfc3164", **sink}})
        c = Collector(make_config(hostile, tmp_path, outputs=outputs, collection={"window": "2h"}),
                      registry=CollectorRegistry())
        hostile.inject(Fault("canned", status=200, body=nasty_body(now)))
        (result,) = c.run_once()
        c.close()
        shipped = result.shipped
        assert result.ok and shipped > 100
        for fmt in ("ecs", "cef", "raw"):
            assert len((tmp_path / f"o.{fmt}").read_text(encoding="utf-8").splitlines()) == shipped, fmt
        messages = receiver.messages(expected=3 * shipped)
    assert len(messages) == 3 * shipped
    per_event = Counter((e.extension["cs1"], e.extension.get("act", "")) for e in (decode("CEF:" + m["msg"]) for m in messages))
    assert len(per_event) == shipped and set(per_event.values()) == {3}
    assert {"nasty-pipes-equals", "nasty-line-breaks", "nasty-unicode-trailing", "nasty-minimal"} <= {
        k[0] for k in per_event}
