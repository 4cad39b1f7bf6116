"""A full, read-only or forbidden file system under the checkpoint: exit 75 naming the cause, never "corrupt".

These tests mount real file systems (a tmpfs of a few hundred KB, a read-only bind mount) and run the
collector as an unprivileged user: they need root, and skip with the reason without it (fail under CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.errors import StateResourceError
from collector.simulator import MailFlow, Simulator
from collector.state import Advance, StateStore
from tests.conftest import ROOT, config_dict, run_cli, write_config

NOW = datetime.now(timezone.utc).replace(microsecond=0)
FLOW = MailFlow(seed=41, start=NOW - timedelta(hours=2), end=NOW, count=120)
EX_TEMPFAIL = 75


def _needs(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI runs the tests as root on a machine that can mount")
    pytest.skip(reason)


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        _needs(f"cannot mount here ({' '.join(args)}): {done.stderr.strip()}")


@pytest.fixture(name="tiny")
def _tiny(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs, unmounted at the end."""
    if os.geteuid() != 0:
        _needs("mounting a file system needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    _mount("-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mount))
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(name="sim")
def _sim() -> Iterator[Simulator]:
    with Simulator(FLOW, clock=lambda: NOW) as sim:
        yield sim


def _fill(folder: Path) -> Path:
    """Fill ``folder``'s file system to the last byte; return the filler, whose removal frees it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == 28, exc
    try:
        while True:
            os.write(fd, b"\0")
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def _state(folder: Path) -> dict[str, bytes]:
    """The checkpoint and anything moved aside from it (not its lock, log or index)."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.startswith("state.json") and p.is_file()
            and not p.name.endswith(("-wal", "-shm", ".lock"))}


def _watermark(cfg: Path) -> str:
    import json

    shown = run_cli("state", "show", "-c", str(cfg))
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["watches"]["inbound"]["watermark"]


def _refused(done: subprocess.CompletedProcess[str], cause: str, path: Path) -> None:
    assert done.returncode == EX_TEMPFAIL, done.stderr
    assert cause in done.stderr and str(path) in done.stderr, done.stderr
    assert "corrupt" not in done.stderr and "state reset` starts afresh" not in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_full_file_system_at_start_is_exit_75_and_the_checkpoint_resumes(sim: Simulator, tiny: Path,
                                                                           tmp_path: Path) -> None:
    """`once`, `state show` and `state reset` on a full state file system exit 75 saying so; `reset` moves
    nothing aside; with space again the next run continues from the same checkpoint."""
    state = tiny / "state.json"
    cfg = write_config(tmp_path, config_dict(sim, tmp_path, collection={"state_file": str(state)},
                                             logging={"level": "warning", "format": "json"}))
    assert run_cli("once", "-c", str(cfg)).returncode == 0
    before, watermark = _state(tiny), _watermark(cfg)
    filler = _fill(tiny)
    for command in (["once"], ["run"], ["state", "show"], ["state", "reset"]):
        _refused(run_cli(*command, "-c", str(cfg)), "no space left", state)
    assert _state(tiny) == before, "the checkpoint changed, or was moved aside"
    filler.unlink()
    again = run_cli("once", "-c", str(cfg))
    assert again.returncode == 0, again.stderr
    assert "0 events shipped" in again.stderr, "the checkpoint was not the one before the disk filled"
    assert _watermark(cfg) >= watermark


def test_a_commit_on_a_full_file_system_says_so(tiny: Path) -> None:
    """A commit that cannot be written is a resource error naming the cause; the checkpoint keeps the last one."""
    t = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
    store = StateStore(tiny / "state.json").open()
    try:
        store.commit(Advance("w", t, t))
        filler = _fill(tiny)
        with pytest.raises(StateResourceError, match="no space left") as raised:
            store.commit(Advance("w", t + timedelta(minutes=1), t,
                                 new_keys=[(f"id-{n}-{'x' * 200}", "held") for n in range(5000)]))
        assert str(tiny / "state.json") in str(raised.value)
        assert store.watch("w").watermark == t
        filler.unlink()
        store.commit(Advance("w", t + timedelta(minutes=1), t))
    finally:
        store.close()
    assert StateStore(tiny / "state.json").open(lock=False).watch("w").watermark == t + timedelta(minutes=1)


def test_a_read_only_file_system_is_exit_75(sim: Simulator, tmp_path: Path) -> None:
    """A read-only bind mount of the state folder: every command exits 75 naming it; nothing is moved aside."""
    if os.geteuid() != 0:
        _needs("a read-only bind mount needs root")
    folder, view = tmp_path / "state", tmp_path / "view"
    folder.mkdir()
    view.mkdir()
    cfg = write_config(tmp_path, config_dict(sim, tmp_path, collection={"state_file": str(view / "state.json")},
                                             logging={"level": "warning", "format": "json"}))
    _mount("--bind", str(folder), str(view))
    try:
        assert run_cli("once", "-c", str(cfg)).returncode == 0
        before = _state(folder)
        _mount("-o", "remount,bind,ro", str(view))
        for command in (["once"], ["run"], ["state", "reset"]):
            _refused(run_cli(*command, "-c", str(cfg)), "read-only", view)
        assert _state(folder) == before
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


def test_a_state_folder_the_user_may_not_use_is_exit_75(sim: Simulator) -> None:
    """The collector's user cannot open the checkpoint (root bypasses permission bits: the collector runs as
    nobody): exit 75 naming the permission and the file; nothing is moved aside."""
    if os.geteuid() != 0:
        _needs("running the collector as another user needs root")
    if shutil.which("setpriv") is None:
        _needs("setpriv (util-linux) is not installed")
    top = Path(tempfile.mkdtemp(prefix="mimecast-perm-"))
    try:
        top.chmod(0o755)
        folder = top / "state"
        cfg = write_config(top, config_dict(sim, top, collection={"state_file": str(folder / "state.json")},
                                            logging={"level": "warning", "format": "json"}))
        cfg.chmod(0o644)
        assert run_cli("once", "-c", str(cfg)).returncode == 0
        folder.chmod(0o700)
        before = _state(folder)
        for command in (["once"], ["state", "show"], ["state", "reset"]):
            done = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                                   "-m", "collector", *command, "-c", str(cfg)], capture_output=True, text=True,
                                  cwd=ROOT, timeout=60, check=False)
            _refused(done, "permission denied", folder)
        assert _state(folder) == before
    finally:
        shutil.rmtree(top)
