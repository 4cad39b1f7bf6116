"""Shapes of mail beyond the steady default flow: statuses that change hours later, mail indexed late, and
density steps.

Each is opt-in: a :class:`~collector.simulator.flow.MailFlow` given none of them serves exactly the
messages it always did. Each draws from its own random stream, derived from ``(seed, i)`` like the message
itself, so that a message keeps its shape however the flow is searched.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collector.simulator.flow import MixedFlow

__all__ = ["Late", "Statuses", "steps"]

Lifecycle = tuple[tuple[int, str, str], ...]
"""Each step of a status history: (seconds after received, status, info)."""

SPREADS = ("log", "uniform")
"""How a delay is drawn between its least and its most: each power of ten as likely, or each second."""

_HOLD = "Message Hold Applied - Content examination policy"
# Lifecycles of the default flow that end in a status Mimecast is not known to change again.
_SETTLED: tuple[tuple[int, Lifecycle], ...] = (
    (34, ((0, "archived", "Indexed and archived"),)),
    (12, ((0, "delivery", "Delivery attempt in progress"), (120, "archived", "Indexed and archived"))),
    (10, ((0, "rejected", "Envelope Rejected"),)),
    (4, ((0, "bounced", "Hard bounce: mailbox unavailable"),)),
    (5, ((0, "processing", "Processing"), (60, "archived", "Indexed and archived"))),
)


def _draw(rng: random.Random, least: timedelta, most: timedelta, spread: str) -> int:
    """Whole seconds between ``least`` and ``most``, as ``spread`` says."""
    lo, hi = max(1.0, least.total_seconds()), max(1.0, most.total_seconds())
    if spread == "log":
        return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return int(rng.uniform(lo, hi))


def _check(share: float, name: str, least: timedelta, most: timedelta, spread: str) -> None:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{name} must be a share from 0 to 1")
    if least <= timedelta(0) or most < least:
        raise ValueError(f"{name}: the delays need 0 < least <= most")
    if spread not in SPREADS:
        raise ValueError(f"{name}: spread must be one of {', '.join(SPREADS)}")


@dataclass(frozen=True)
class Statuses:
    """Statuses that change over time, in place of the default flow's mix.

    A share ``pending`` of messages is held for ever; a share ``held`` is held, then released (archived) or,
    for a share ``rejected`` of them, rejected, after a delay from ``least`` to ``most``; every other
    message reaches ``archived``, ``rejected`` or ``bounced`` within two minutes of arriving.
    """

    held: float = 0.0
    pending: float = 0.0
    rejected: float = 0.2
    least: timedelta = timedelta(minutes=1)
    most: timedelta = timedelta(days=1)
    spread: str = "log"

    def __post_init__(self) -> None:
        _check(self.held, "held", self.least, self.most, self.spread)
        _check(self.pending, "pending", self.least, self.most, self.spread)
        if not 0.0 <= self.rejected <= 1.0 or self.held + self.pending > 1.0:
            raise ValueError("rejected must be a share from 0 to 1, and held + pending at most 1")

    def lifecycle(self, rng: random.Random) -> Lifecycle:
        """The status history of one message."""
        roll = rng.random()
        if roll < self.pending:
            return ((0, "held", _HOLD),)
        if roll < self.pending + self.held:
            delay = _draw(rng, self.least, self.most, self.spread)
            if rng.random() < self.rejected:
                return (0, "held", _HOLD), (delay, "rejected", "Rejected by administrator")
            return (0, "held", _HOLD), (delay, "archived", "Released and archived")
        return rng.choices([lc for _, lc in _SETTLED], weights=[w for w, _ in _SETTLED])[0]


@dataclass(frozen=True)
class Late:
    """Mail indexed late: a ``share`` of messages appears in answers only ``least`` to ``most`` after it was
    received (spread evenly: a late message is as likely one minute late as ten)."""

    share: float = 0.0
    most: timedelta = timedelta(minutes=10)
    least: timedelta = timedelta(seconds=1)

    def __post_init__(self) -> None:
        _check(self.share, "late", self.least, self.most, "uniform")

    def delay(self, rng: random.Random) -> int:
        """Seconds after received at which one message is indexed (0 for most)."""
        if rng.random() >= self.share:
            return 0
        return _draw(rng, self.least, self.most, "uniform")


def shape_rng(seed: int, i: int) -> random.Random:
    """The random stream of message ``i``'s shape, apart from the one that drew the message itself (whose
    seeds stay below 2**64 for any flow a machine can hold)."""
    return random.Random((1 << 64) + seed * 1_000_003 + i)


def steps(seed: int, start: datetime, shape: Sequence[tuple[timedelta, float]], **options: Any) -> MixedFlow:
    """Mail at a density that steps: ``shape`` lists (how long, messages a minute) one after the other from
    ``start``, e.g. ``[(1h, 2.5), (10m, 2500), (5m, 2.5)]`` for a quiet hour, ten dense minutes, a quiet end.

    Each step is its own :class:`MailFlow` (a step of 0 a minute holds no mail), seeded apart from the
    others; ``options`` (``cache``, ``statuses``, ``late``) apply to every step.
    """
    from collector.simulator.flow import MailFlow, MixedFlow

    flows, at = [], start
    for k, (length, per_minute) in enumerate(shape):
        if length <= timedelta(0) or per_minute < 0:
            raise ValueError("a density step needs a length above 0 and 0 or more messages a minute")
        count = int(round(per_minute * length.total_seconds() / 60))
        if count:
            flows.append(MailFlow(seed=seed + 7_919 * k, start=at, end=at + length, count=count, **options))
        at += length
    if not flows:
        raise ValueError("density steps need at least one message")
    return MixedFlow(flows)
