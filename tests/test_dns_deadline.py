"""The request deadline covers looking up Mimecast's name: a resolver that never answers ends at the deadline."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from collector.simulator import Credentials
from tests.conftest import ROOT, config_dict, write_config


def _isolated_resolver(conf: Path) -> list[str]:
    """A command prefix that runs its command with ``conf`` as /etc/resolv.conf, in a mount namespace of its own
    (the machine's file is untouched); skips where that is not permitted."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run([unshare, "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"a mount namespace is not permitted here: {probe.stderr.decode(errors='replace').strip()}")
    return [unshare, "-m", "sh", "-c", f'mount --bind "{conf}" /etc/resolv.conf && exec "$@"', "sh"]


@dataclass
class _Unresolvable:
    """What a configuration needs of a Mimecast: a name no server will ever answer for, and demo keys."""

    base_url: str = "https://mimecast.never-answers.example"
    credentials: Credentials = field(default_factory=Credentials)


def test_a_name_server_that_never_answers_ends_at_the_request_deadline(tmp_path: Path) -> None:
    """The only name server swallows every query (the system would wait 90 s: 30 s, 3 attempts): ``once``
    fails at its 2 s deadline with a timeout, instead of waiting the resolver out.

    Without the lookup inside the deadline the run takes over 60 s and this test's 45 s limit kills it.
    """
    address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    black_hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        black_hole.bind((address, 53))
    except PermissionError:
        black_hole.close()
        pytest.skip("binding port 53 for a name server that never answers needs root")
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {address}\noptions timeout:30 attempts:3\n")
    prefix = _isolated_resolver(conf)

    data = config_dict(_Unresolvable(), tmp_path, auth="hmac",  # type: ignore[arg-type]
                       mimecast={"timeout": "2s", "retries": 0})
    cfg = write_config(tmp_path, data)
    began = time.monotonic()
    try:
        done = subprocess.run([*prefix, sys.executable, "-m", "collector", "once", "-c", str(cfg)], cwd=ROOT,
                              capture_output=True, text=True, timeout=45, check=False)
    finally:
        black_hole.close()
    took = time.monotonic() - began
    assert done.returncode == 1, done.stderr
    assert "FAILED (timeout: search timed out after 2s)" in done.stderr, done.stderr
    print(f"once against a name server that never answers: {took:.1f}s with a 2 s deadline")
