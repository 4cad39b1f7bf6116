"""doctor: the right verdict and fix for each failure the simulator can produce."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from collector.simulator import Fault, Simulator
from collector.state import StateStore
from tests.conftest import config_dict, run_cli, write_config
from tests.statedb import interrupted_rebuild


def doctor(sim: Simulator, tmp_path: Path, **kw: object) -> tuple[int, str]:
    result = run_cli("doctor", "-c", str(write_config(tmp_path, config_dict(sim, tmp_path, **kw))))
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout


@pytest.mark.parametrize("auth", ["oauth2", "hmac"])
def test_healthy_setup_passes_every_check(sim: Simulator, tmp_path: Path, auth: str) -> None:
    """Against a healthy simulator every check is OK and doctor exits 0."""
    code, out = doctor(sim, tmp_path, auth=auth)
    assert code == 0, out
    assert "[FAIL]" not in out and "watch inbound: a search over the last 24 hours returned" in out
    assert "5 checks, 0 failed" in out


@pytest.mark.parametrize(("fault", "auth", "verdict", "fix"), [
    (Fault("binding_expired"), "hmac", "HTTP 418", "cache TTL to 'Never expire'"),
    (Fault("forbidden"), "hmac", "HTTP 403", "Gateway | Tracking | Read"),
    (Fault("unauthorized"), "hmac", "HTTP 401", "regional"),
    (Fault("rate_limit", reset_ms=30_000), "oauth2", "HTTP 429", "raise collection.interval"),
    (Fault("fail200", code="err_audit_log_incorrect_region"), "hmac", "err_audit_log_incorrect_region",
     "not your account's region"),
    (Fault("server_error", status=503), "oauth2", "HTTP 503", "outage"),
    (Fault("canned", endpoint="token", status=400,
           body=b'{"fail":[{"code":"InvalidClientIdentifier","message":"Client credentials are invalid"}]}'),
     "oauth2", "InvalidClientIdentifier", "check the credentials"),
])
def test_each_api_failure_gets_its_verdict_and_fix(sim: Simulator, tmp_path: Path, fault: Fault, auth: str,
                                                   verdict: str, fix: str) -> None:
    """Each simulated failure is one FAIL line with the matching fix, and exit 1."""
    sim.inject(fault, times=3)
    code, out = doctor(sim, tmp_path, auth=auth)
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("[FAIL]")]
    assert len(failed) == 1 and verdict in failed[0], out
    assert fix in out


def test_wrong_hmac_secret_and_no_secret_in_output(sim: Simulator, tmp_path: Path) -> None:
    """Keys that do not sign correctly fail the watch check, and no key appears in the output."""
    creds = sim.credentials
    bad = base64.b64encode(b"a wrong secret key value").decode()
    auth = {"type": "hmac", "app_id": creds.app_id, "app_key": creds.app_key, "access_key": creds.access_key,
            "secret_key": bad}
    code, out = doctor(sim, tmp_path, mimecast={"auth": auth})
    assert code == 1 and "err_xdk_signature_invalid" in out
    for secret in (bad, creds.app_key, creds.access_key):
        assert secret not in out


def test_wrong_path_and_unreachable_host(sim: Simulator, tmp_path: Path) -> None:
    """A wrong search path is a 404 with a path fix; a closed port is a reachability failure."""
    code, out = doctor(sim, tmp_path, mimecast={"search_path": "/api/nothing/here"})
    assert code == 1 and "HTTP 404" in out and "search_path" in out
    code, out = doctor(sim, tmp_path, mimecast={"base_url": "http://127.0.0.1:9"})
    assert code == 1 and "[FAIL] credentials: token request failed: cannot connect to 127.0.0.1:9 (connection refused)" in out
    assert "check base_url, DNS, the proxy setting and firewalls" in out


def test_state_and_outputs_problems(sim: Simulator, tmp_path: Path) -> None:
    """A corrupt state, an unwritable file output and a dead syslog peer are each reported with a fix."""
    (tmp_path / "state.json").write_text("{broken")
    outputs = [{"name": "f", "format": "ecs", "sink": {"type": "file", "path": "/proc/forbidden/out.ndjson"}},
               {"name": "s", "format": "cef", "sink": {"type": "syslog", "host": "127.0.0.1", "port": 9,
                                                       "transport": "tcp"}}]
    code, out = doctor(sim, tmp_path, outputs=outputs)
    assert code == 1
    assert "[FAIL] state:" in out and "state reset" in out
    assert "[FAIL] output f: cannot append" in out
    assert "[FAIL] output s: cannot connect to tcp://127.0.0.1:9" in out


@pytest.mark.parametrize(("sim_cap", "result_cap", "verdict", "says"), [
    (50, 100, "[WARN]", "set collection.result_cap to 50"),
    (1000, 100, "[OK  ]", "raising it to"),
    (100, 100, "[OK  ]", "exactly result_cap"),
])
def test_one_wide_search_shows_what_mimecasts_cap_implies(sim: Simulator, tmp_path: Path, sim_cap: int,
                                                          result_cap: int, verdict: str, says: str) -> None:
    """The wide probe reports the largest answer and what it means for result_cap (a hidden lower cap warns)."""
    sim.cap = sim_cap
    code, out = doctor(sim, tmp_path, collection={"result_cap": result_cap})
    line = next(x for x in out.splitlines() if "watch inbound" in x)
    assert line.startswith(verdict), out
    assert says in out and code == 0


def test_an_interrupted_rebuild_is_not_called_corrupt_and_the_next_start_recovers_it(
        sim: Simulator, tmp_path: Path) -> None:
    """Killed while rebuilding the checkpoint with smaller pages, the file is mid-rewrite beside its journal:
    doctor warns that the next start recovers it (never "corrupt", whose fix, state reset, would lose it all),
    and the next start does, with every key."""
    path = tmp_path / "state.json"
    interrupted_rebuild(path)
    code, out = doctor(sim, tmp_path)
    assert "[WARN] state:" in out and "interrupted rebuild" in out and "nothing is lost" in out, out
    assert "corrupt" not in out and code == 0
    store = StateStore(path).open()
    try:
        asked = [(f"id-{n}-{i}", "held") for n in (0, 39) for i in (0, 4999)]
        assert store.known("w", asked) == set(asked) and store.remembered("w") == 200_000
    finally:
        store.close()
    assert not path.with_name(path.name + "-journal").exists()
    code, out = doctor(sim, tmp_path)
    assert code == 0 and "[OK  ] state:" in out, out
