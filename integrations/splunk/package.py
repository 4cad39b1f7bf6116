"""Package the Splunk add-on as ``TA-mimecast-collector-<version>.tgz``.

Usage: ``python3 integrations/splunk/package.py [--out DIR]`` (default: ``dist/`` at the repository root).
The archive holds the add-on directory only, with owner root, mode 644 (755 for directories) and a fixed
time, so the same sources always give the same bytes.
"""

from __future__ import annotations

import argparse
import configparser
import gzip
import io
import sys
import tarfile
from pathlib import Path

__all__ = ["APP", "build", "main", "version"]

APP = Path(__file__).resolve().parent / "TA-mimecast-collector"
_EPOCH = 1_700_000_000  # fixed mtime: reproducible archives


def version(app: Path = APP) -> str:
    """The add-on version from ``default/app.conf`` (``[launcher] version``)."""
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(app / "default" / "app.conf", encoding="utf-8")
    return conf["launcher"]["version"]


def _members(app: Path) -> list[Path]:
    # Hidden files, editor backups and Python caches never belong in an app.
    skip = {"__pycache__", "local", "local.meta"}
    return sorted(p for p in app.rglob("*")
                  if not any(part.startswith(".") or part in skip for part in p.relative_to(app).parts)
                  and not p.name.endswith("~"))


def build(out_dir: Path, app: Path = APP) -> Path:
    """Write the archive into ``out_dir`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{app.name}-{version(app)}.tgz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in [app, *_members(app)]:
            info = tar.gettarinfo(str(path), arcname=str(Path(app.name) / path.relative_to(app)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = _EPOCH
            info.mode = 0o755 if info.isdir() else 0o644
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    with target.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=_EPOCH) as gz:
        gz.write(buffer.getvalue())
    return target


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: build the archive and print its path."""
    parser = argparse.ArgumentParser(description="Package the Splunk add-on as a .tgz")
    parser.add_argument("--out", type=Path, default=APP.parents[2] / "dist", help="output directory")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
