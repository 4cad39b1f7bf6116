"""A real Prometheus server on loopback, and the repository's alert rules scaled down to run in seconds.

The scale-down (``scale_rules``) divides every duration of the rules by ``factor``: each ``for:``, each range
window (``[15m]``), each ``offset 1h``, and each threshold written as ``N * 60`` (N minutes, the form
monitoring/alerts.yml uses for every duration inside an expression). Quantities that are not durations (a
clock skew of 60 s, a share of 0.25) are left alone. With factor 60 a rule's minutes become seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = r"(\d+)(ms|s|m|h|d)"


def require_prometheus() -> str:
    """The prometheus binary; skip with the reason outside CI, fail in CI (where .ci/run installs it)."""
    if Path(PROMETHEUS).exists():
        return PROMETHEUS
    reason = "prometheus is not installed (apt-get install prometheus)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; .ci/run installs what the tests need")
    pytest.skip(reason)


def seconds(duration: str) -> float:
    """``"15m"`` as 900.0 (one unit only, as the rules use them)."""
    match = re.fullmatch(_DURATION, duration.strip())
    if not match:
        raise ValueError(f"not a duration: {duration!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def scaled(duration: str, factor: float) -> str:
    """``duration`` divided by ``factor``, in whole milliseconds (Prometheus durations are integers)."""
    return f"{max(1, round(seconds(duration) * 1000 / factor))}ms"


def scale_expr(expr: str, factor: float) -> str:
    """Divide the range windows, offsets and ``N * 60`` thresholds of ``expr`` by ``factor``."""
    expr = re.sub(rf"\[{_DURATION}\]", lambda m: f"[{scaled(m.group(0)[1:-1], factor)}]", expr)
    expr = re.sub(rf"\boffset {_DURATION}", lambda m: f"offset {scaled(m.group(0)[7:], factor)}", expr)
    return re.sub(r"\b(\d+) \* 60\b", lambda m: f"{int(m.group(1)) * 60 / factor:g}", expr)


def scale_rules(text: str, factor: float) -> str:
    """The rules file ``text`` with every duration divided by ``factor`` (see the module docstring)."""
    rules = yaml.safe_load(text)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["expr"] = scale_expr(rule["expr"], factor)
            if "for" in rule:
                rule["for"] = scaled(rule["for"], factor)
    return yaml.safe_dump(rules, sort_keys=False)


class Prometheus:
    """``prometheus`` with its own storage in ``folder``, scraping every second the targets added with
    :meth:`add_target` (file service discovery: a target joins once it is listening, so nothing reads a
    daemon that is still starting as down), and evaluating ``rules`` every second."""

    def __init__(self, folder: Path, port: int, rules: str, *, job: str = "mimecast-collector"):
        self.folder, self.port = folder, port
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rules.yml").write_text(rules)
        self._targets: list[str] = []
        self._lock = threading.Lock()
        self._sd = folder / "targets.json"
        self._sd.write_text("[]")
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
                  "rule_files": [str(folder / "rules.yml")],
                  "scrape_configs": [{"job_name": job, "file_sd_configs": [{"files": [str(self._sd)],
                                                                             "refresh_interval": "1s"}]}]}
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def add_target(self, target: str) -> None:
        """Scrape ``target`` (``host:port``) from now on."""
        with self._lock:
            if target in self._targets:
                return
            self._targets.append(target)
            temporary = self._sd.with_suffix(".tmp")
            temporary.write_text(json.dumps([{"targets": self._targets}]))
            temporary.replace(self._sd)

    def start(self) -> Prometheus:
        """Start and wait until it is ready."""
        with open(self.folder / "prometheus.log", "wb") as log:
            self.proc = subprocess.Popen(
                [require_prometheus(), f"--config.file={self.folder / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.folder / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--storage.tsdb.retention.time=1d", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.folder / 'prometheus.log').read_text()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready within 30 s")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` of a successful answer."""
        answer = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=5).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def alerts(self) -> list[dict[str, Any]]:
        """Every pending and firing alert."""
        return self.api("alerts")["alerts"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) ``expr`` gives now."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [{"value": data["result"]}]
