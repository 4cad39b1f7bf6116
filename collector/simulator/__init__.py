"""The loopback Mimecast used by the demo, the tests and the benchmarks.

Its parts load on first use, so that the command line can offer ``--order`` without paying for an HTTP
server at every start.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

ORDERS = ("oldest", "newest", "shuffled")
"""The orders a simulated answer can list its records in (Mimecast documents none)."""

_HOMES = {"Filter": "flow", "MailFlow": "flow", "MixedFlow": "flow", "SimMessage": "flow", "Bucket": "quota",
          "Credentials": "server", "Fault": "server", "Recorded": "server", "Simulator": "server",
          "Late": "shapes", "Statuses": "shapes", "steps": "shapes"}

__all__ = ["ORDERS", *sorted(_HOMES)]

if TYPE_CHECKING:
    from collector.simulator.flow import Filter, MailFlow, MixedFlow, SimMessage
    from collector.simulator.quota import Bucket
    from collector.simulator.server import Credentials, Fault, Recorded, Simulator
    from collector.simulator.shapes import Late, Statuses, steps


def __getattr__(name: str) -> Any:
    """The part called ``name``, imported the first time it is asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"collector.simulator.{_HOMES[name]}"), name)
