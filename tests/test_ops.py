"""Operations kit: hardened systemd units, Prometheus rules and their tests, a live scrape, the dashboard."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from collector.config import parse_config
from collector.simulator import Simulator
from tests.conftest import ROOT, config_dict, write_config
from tests.test_daemon import Daemon, free_port, wait_for

UNITS = ["mimecast-collector.service", "mimecast-collector@.service"]
MONITORING = ROOT / "monitoring"


def tool(name: str, package: str) -> str:
    """The tool's path; in CI its absence fails the test, elsewhere it skips with the package to install."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is missing; .ci/run installs {package}")
    pytest.skip(f"{name} is not installed (apt-get install {package})")


def installed_unit(tmp_path: Path, unit: str) -> Path:
    """The unit as shipped, with ExecStart pointing at this environment's console script."""
    binary = Path(sys.executable).with_name("mimecast-collector")
    assert binary.exists(), "the package is installed with its console script"
    text = (ROOT / "systemd" / unit).read_text()
    assert "ExecStart=/opt/mimecast-collector/bin/mimecast-collector run" in text
    path = tmp_path / unit
    path.write_text(text.replace("/opt/mimecast-collector/bin/mimecast-collector", str(binary)))
    return path


@pytest.mark.parametrize("unit", UNITS)
def test_units_pass_systemd_analyze_verify(tmp_path: Path, unit: str) -> None:
    """systemd-analyze verify accepts both units."""
    analyze = tool("systemd-analyze", "systemd")
    path = installed_unit(tmp_path, unit)
    target = path if "@" not in unit else path.with_name("mimecast-collector@emea.service")
    result = subprocess.run([analyze, "verify", str(target)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_units_are_rated_2_or_better(tmp_path: Path, unit: str) -> None:
    """systemd-analyze security --offline=true rates each unit's exposure at 2.0 or lower."""
    analyze = tool("systemd-analyze", "systemd")
    path = installed_unit(tmp_path, unit)
    result = subprocess.run([analyze, "security", "--offline=true", str(path)], capture_output=True, text=True,
                            cwd=tmp_path)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


def test_units_run_the_collector_hardened_and_unprivileged() -> None:
    """The units say what docs/install.md promises: notify + watchdog, no restart on bad config, no root."""
    for unit in UNITS:
        text = (ROOT / "systemd" / unit).read_text()
        for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartPreventExitStatus=65 78",
                     "DynamicUser=yes", "StateDirectory=", "LogsDirectory=", "ConfigurationDirectory=",
                     "LoadCredential=", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                     "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "SystemCallFilter=@system-service"):
            assert line in text, (unit, line)


def test_alert_rules_check_and_unit_tests_pass(tmp_path: Path) -> None:
    """promtool check rules and promtool test rules both succeed."""
    promtool = tool("promtool", "prometheus")
    check = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=MONITORING, capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS: 11 rules found" in check.stdout, check.stdout + check.stderr
    test = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=MONITORING, capture_output=True, text=True)
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr


def test_example_scrape_config_is_valid(tmp_path: Path) -> None:
    """The example scrape config passes promtool check config (with the rules file it names)."""
    promtool = tool("promtool", "prometheus")
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    shutil.copy(MONITORING / "alerts.yml", tmp_path / "alerts.yml")
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every dashboard query parses (checked by promtool as recording rules)."""
    promtool = tool("promtool", "prometheus")
    exprs = dashboard_exprs()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:q{i}", "expr": e.replace("$watch", ".*")} for i, e in enumerate(exprs)]}]}
    (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(tmp_path / "dashboard-rules.yml")], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(exprs) >= 15


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_live_scrape_passes_promtool_and_has_every_metric_the_kit_uses(sim: Simulator, tmp_path: Path) -> None:
    """A running collector's /metrics passes promtool check metrics and holds every series alerts and dashboard use."""
    promtool = tool("promtool", "prometheus")
    port = free_port()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a UDP syslog peer that only absorbs
    receiver.bind(("127.0.0.1", 0))
    outputs = [{"name": "archive", "format": "ecs", "sink": {"type": "file", "path": str(tmp_path / "o.ndjson")}},
               {"name": "siem", "format": "cef", "sink": {"type": "syslog", "host": "127.0.0.1",
                                                          "port": receiver.getsockname()[1], "transport": "udp"}}]
    cfg = write_config(tmp_path, config_dict(sim, tmp_path, metrics={"listen": f"127.0.0.1:{port}"},
                                             collection={"interval": "10s"}, outputs=outputs))
    daemon = Daemon(tmp_path, "run", "-c", str(cfg))
    try:
        wait_for(lambda: _success(port), what="a successful poll")
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        daemon.signal(signal.SIGTERM)
        daemon.wait()
        daemon.kill()
        receiver.close()
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    exposed = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, re.M))
    used = set()
    for expr in dashboard_exprs() + [r["expr"] for r in yaml.safe_load((MONITORING / "alerts.yml").read_text())
                                     ["groups"][0]["rules"]]:
        used |= set(re.findall(r"\b((?:mimecast_collector|process)_[a-z_]+)\b", expr))
    assert used and used <= exposed, used - exposed


def _success(port: int) -> bool:
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return False
    return 'poll_runs_total{outcome="success",watch="inbound"} 1.0' in text


def test_metrics_endpoint_binds_to_loopback_by_default(tmp_path: Path) -> None:
    """Without a metrics section the collector listens on 127.0.0.1:9464 only."""
    data = {"mimecast": {"base_url": "https://api.services.mimecast.com",
                         "auth": {"type": "oauth2", "client_id": "c", "client_secret": "s"}},
            "watches": [{"name": "w", "to": "example.com"}],
            "outputs": [{"name": "o", "sink": {"type": "stdout"}}]}
    assert parse_config(data, env={}, base_dir=tmp_path).metrics.listen == ("127.0.0.1", 9464)
