"""The durable checkpoint: one SQLite database per collector (see ``store`` for what it holds)."""

from collector.state.model import Advance, Intent, OutputMark, WatchState
from collector.state.opening import SIDE_FILES, legacy_backup
from collector.state.schema import SCHEMA_VERSION
from collector.state.store import StateStore

__all__ = ["SCHEMA_VERSION", "SIDE_FILES", "Advance", "Intent", "OutputMark", "StateStore", "WatchState",
           "legacy_backup"]
