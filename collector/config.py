"""Typed, frozen configuration, validated completely at start.

``load_config`` turns the YAML file into :class:`Config` or raises
:class:`~collector.errors.ConfigError` listing every problem with its dotted
path. Secrets are :class:`~collector.configreader.Secret` objects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from collector.configreader import Reader, credentials_dir_from_env, substitute_env
from collector.configsections import (
    FORMATS, ROUTES, STATUSES, read_collection, read_logging, read_metrics, read_mimecast, read_named_list,
    read_output, read_watch,
)
from collector.configtypes import (
    CollectionConfig, Config, HmacAuth, LoggingConfig, MetricsConfig, MimecastConfig, OAuth2Auth, OutputConfig,
    WatchConfig,
)
from collector.errors import ConfigError
from collector.sinkconfig import FileSinkConfig, SinkConfig, StdoutSinkConfig

__all__ = [
    "CollectionConfig", "Config", "FORMATS", "HmacAuth", "LoggingConfig", "MetricsConfig", "MimecastConfig",
    "OAuth2Auth", "OutputConfig", "ROUTES", "STATUSES", "WatchConfig", "load_config", "parse_config",
    "FileSinkConfig", "StdoutSinkConfig", "SinkConfig",
]


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a configuration file.

    Raises:
        ConfigError: listing every problem, each as ``dotted.path: reason``.
    """
    env = os.environ if env is None else env
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"(file): cannot read {path}: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"(file): {path} is not UTF-8 text (byte {exc.start})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"(file): not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"]) from None
    return parse_config(data, env=env, base_dir=Path(path).resolve().parent, source=Path(path))


def parse_config(data: Any, *, env: Mapping[str, str], base_dir: Path, source: Path | None = None) -> Config:
    """Validate an already-parsed YAML tree (see :func:`load_config`)."""
    problems: list[str] = []
    data = substitute_env(data, env, problems)
    reader = Reader(base_dir=base_dir, credentials_dir=credentials_dir_from_env(env, base_dir))
    reader.problems.extend(problems)
    top = reader.mapping(data, "", {"mimecast", "collection", "watches", "outputs", "metrics", "logging"},
                         required=("mimecast", "watches", "outputs"))
    mimecast = read_mimecast(reader, top.get("mimecast"))
    collection = read_collection(reader, top.get("collection"), base_dir)
    watches = read_named_list(reader, top.get("watches"), "watches", read_watch)
    outputs = read_named_list(reader, top.get("outputs"), "outputs", read_output)
    metrics = read_metrics(reader, top.get("metrics", {"listen": "127.0.0.1:9464"}))
    logging = read_logging(reader, top.get("logging"))
    if reader.problems:
        raise ConfigError(reader.problems)
    return Config(mimecast, collection, tuple(watches), tuple(outputs), metrics, logging, source)
