"""Typed, frozen configuration, validated completely at start.

``load_config`` turns the YAML file into :class:`Config` or raises
:class:`~collector.errors.ConfigError` listing every problem with its dotted
path. The parts: :mod:`~collector.config.values` (secrets, the redacted proxy URL, durations,
the quota reserve), :mod:`~collector.config.fields` (the value types and their wording),
:mod:`~collector.config.places` (URLs, paths, CA bundles, secret files, the listen address),
:mod:`~collector.config.auth` (API 2.0 and API 1.0 credentials),
:mod:`~collector.config.sections`, :mod:`~collector.config.sinks` and
:mod:`~collector.config.document` (the models), :mod:`~collector.config.loading` (``${VAR}``,
secret files, problem texts) and :mod:`~collector.config.schema` (the JSON Schema).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from collector.config.document import (
    FORMATS, ROUTES, STATUSES, Config, LoggingConfig, MetricsConfig, OutputConfig, WatchConfig,
)
from collector.config.fields import kind
from collector.config.loading import (
    credentials_dir_from_env, default_config_path, describe, duplicate_names, placeholders, substitute_env,
    without_repeats,
)
from collector.config.auth import HmacAuth, OAuth2Auth
from collector.config.sections import CollectionConfig, MimecastConfig
from collector.config.sinks import FACILITIES, FileSinkConfig, SinkConfig, StdoutSinkConfig, SyslogSinkConfig
from collector.config.values import QuotaReserve, RedactedUrl, Secret, format_duration, parse_duration
from collector.errors import ConfigError

__all__ = [
    "CollectionConfig", "Config", "FACILITIES", "FORMATS", "FileSinkConfig", "HmacAuth", "LoggingConfig",
    "MetricsConfig", "MimecastConfig", "OAuth2Auth", "OutputConfig", "QuotaReserve", "ROUTES", "RedactedUrl",
    "STATUSES", "Secret", "SinkConfig", "StdoutSinkConfig", "SyslogSinkConfig", "WatchConfig",
    "default_config_path", "format_duration", "load_config", "parse_config", "parse_duration",
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
    context = {"base_dir": base_dir, "credentials_dir": credentials_dir_from_env(env, base_dir)}
    config = None
    if not isinstance(data, dict):
        problems.append(f"(top level): expected a mapping, got {kind(data)}")
    else:
        problems += placeholders(data)
        try:
            config = TypeAdapter(Config).validate_python(data, context=context)
        except ValidationError as exc:
            # Repeated names are checked on the raw lists too: the models check them only once every item is valid.
            problems = without_repeats(problems, describe(exc, Config) + duplicate_names(data))
    if problems or config is None:
        raise ConfigError(problems)
    object.__setattr__(config, "source", source)
    return config
