"""A deterministic synthetic mail flow: the simulator's ground truth.

Message ``i`` is derived from ``(seed, i)`` alone, and its ``received`` time
falls in slot ``i`` of the period, so any window is served by generating only
the messages whose slots it covers: a million messages cost no memory.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from collector.simulator.shapes import Late, Statuses, shape_rng

__all__ = ["Filter", "MailFlow", "MixedFlow", "SimMessage"]

INTERNAL = ("example.com", "example.org")
EXTERNAL = ("partner.example.net", "supplier.test", "mail.example.co.uk", "bücher.example", "newsletter.invalid",
            "bank-secure.example.info")
_LOCALS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
           "noreply", "billing", "ceo", "it-support", "o'brien")
_NAMES = ("Alice Martin", "Bob Jones", "José Müller", "山田 太郎", "O'Brien, Pat", "Zoë Ångström",
          "Evil | Name = \\ x", "", "IT Support", "Café Owner")
_SUBJECTS = ("Quarterly report", "Invoice #{n} | Q3 = paid", "Re: path C:\\temp\\new\\file", "Multi\nline subject",
             "Grüße aus München", "会議の件について", "\U0001F680 Launch day", "Reset your password",
             "CEF:0|Evil|Forge|1|x|y|10|src=6.6.6.6", "Re: trailing spaces   ", "=?utf-8?q?encoded?=",
             "Meeting\r\nBcc: injected@evil.test", "Tab\there", "Long " + "x" * 300, "", "Weekly digest {n}")
# (weight, lifecycle): each step is (seconds after received, status, info)
_LIFECYCLES: tuple[tuple[int, tuple[tuple[int, str, str], ...]], ...] = (
    (34, ((0, "archived", "Indexed and archived"),)),
    (12, ((0, "delivery", "Delivery attempt in progress"), (120, "archived", "Indexed and archived"))),
    (8, ((0, "held", "Message Hold Applied - Spam Signature policy"), (900, "archived", "Released and archived"))),
    (5, ((0, "held", "Message Hold Applied - Content examination policy"),)),
    (10, ((0, "rejected", "Envelope Rejected"),)),
    (4, ((0, "bounced", "Hard bounce: mailbox unavailable"),)),
    (6, ((0, "deferred", "Temporary failure, will retry"), (600, "delivery", "Delivered on retry"))),
    (5, ((0, "processing", "Processing"), (60, "archived", "Indexed and archived"))),
    (16, ((0, "delivery", "Delivered"),)),
)
_WEIGHTS = [w for w, _ in _LIFECYCLES]
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass(frozen=True)
class Filter:
    """A search filter as the API receives it (all optional, all case-insensitive)."""

    from_: str | None = None
    to: str | None = None
    subject: str | None = None
    sender_ip: str | None = None
    message_id: str | None = None

    def matches(self, m: SimMessage) -> bool:
        """Whether ``m`` passes every given filter."""
        if self.message_id is not None:
            return m.message_id == self.message_id
        if self.from_ and not (_addr_match(self.from_, m.env_from) or _addr_match(self.from_, m.hdr_from)):
            return False
        if self.to and not any(_addr_match(self.to, r) for r in m.to):
            return False
        if self.subject and self.subject.lower() not in m.subject.lower():
            return False
        return not self.sender_ip or self.sender_ip == m.sender_ip


def _addr_match(wanted: str, address: str) -> bool:
    wanted, address = wanted.lower(), address.lower()
    return address == wanted if "@" in wanted else address.endswith("@" + wanted)


@dataclass(frozen=True)
class SimMessage:
    """One synthetic message and its status history."""

    index: int
    id: str
    message_id: str
    received: datetime
    route: str
    env_from: str
    hdr_from: str
    from_name: str
    to: tuple[str, ...]
    to_names: tuple[str, ...]
    subject: str
    sender_ip: str
    attachments: bool | None
    spam_score: int
    detection_level: str
    lifecycle: tuple[tuple[int, str, str], ...]
    indexed: int = 0
    """Seconds after ``received`` before a search finds the message (mail indexed late)."""

    def state_at(self, at: datetime) -> tuple[str, str] | None:
        """``(status, info)`` visible at ``at``, or ``None`` before the message arrived or was indexed."""
        if self.indexed and self.received + timedelta(seconds=self.indexed) > at:
            return None
        found = None
        for offset, status, info in self.lifecycle:
            if self.received + timedelta(seconds=offset) <= at:
                found = (status, info)
        return found

    def spans(self, at: datetime) -> list[tuple[str, datetime, datetime]]:
        """``(status, since, until)`` for each status a search could find by ``at``: from when it was both
        set and indexed until the next status replaced it, or until ``at`` for the status current then."""
        shown = self.received + timedelta(seconds=self.indexed)
        found = []
        for k, (offset, status, _info) in enumerate(self.lifecycle):
            since = max(self.received + timedelta(seconds=offset), shown)
            until = at
            if k + 1 < len(self.lifecycle):
                until = min(at, self.received + timedelta(seconds=self.lifecycle[k + 1][0]))
            if since < until or (since == until == at):
                found.append((status, since, until))
        return found

    def to_json(self, status: str, info: str) -> dict[str, Any]:
        """The message as ``trackedEmails`` carries it, with Mimecast's real quirks."""
        body: dict[str, Any] = {
            "info": info, "id": self.id, "status": status,
            "fromEnv": {"emailAddress": self.env_from},
            "fromHdr": {"displayableName": self.from_name, "emailAddress": self.hdr_from},
            "to": [{"displayableName": n, "emailAddress": a} for a, n in zip(self.to, self.to_names)],
            "received": self.received.strftime("%Y-%m-%dT%H:%M:%S+0000"), "subject": self.subject,
            "senderIP": self.sender_ip, "route": self.route,
            "sent": self.received.strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "spamScore": self.spam_score, "detectionLevel": self.detection_level,
        }
        if self.attachments is not None:
            body["attachments"] = self.attachments
        return body


class MailFlow:
    """``count`` messages spread evenly over ``[start, end)``, reproducible from ``seed``.

    With ``cache`` the messages are kept once generated, so that a benchmark measures the client
    rather than the simulator's generator. ``statuses`` replaces the default mix of status histories with
    holds released hours later (:class:`Statuses`); ``late`` makes a share of the mail indexed late
    (:class:`Late`). Without them every message is what it always was.
    """

    def __init__(self, *, seed: int, start: datetime, end: datetime, count: int, cache: bool = False,
                 statuses: Statuses | None = None, late: Late | None = None) -> None:
        if count <= 0 or end <= start:
            raise ValueError("a mail flow needs count > 0 and end > start")
        self.seed, self.start, self.end, self.count = seed, start, end, count
        self.statuses, self.late = statuses, late
        self._slot = (end - start).total_seconds() / count
        self._cache: dict[int, SimMessage] | None = {} if cache else None

    def message(self, i: int) -> SimMessage:
        """Message number ``i`` (0-based)."""
        if self._cache is None:
            return self._generate(i)
        found = self._cache.get(i)
        if found is None:
            found = self._cache[i] = self._generate(i)
        return found

    def _generate(self, i: int) -> SimMessage:
        rng = random.Random(self.seed * 1_000_003 + i)
        offset = int(i * self._slot + rng.random() * self._slot)
        received = self.start + timedelta(seconds=offset)
        route = rng.choices(("inbound", "outbound", "internal"), weights=(6, 3, 1))[0]
        inside = f"{rng.choice(_LOCALS)}@{rng.choice(INTERNAL)}"
        outside = f"{rng.choice(_LOCALS)}@{rng.choice(EXTERNAL)}"
        sender, first_rcpt = {"inbound": (outside, inside), "outbound": (inside, outside),
                              "internal": (inside, f"{rng.choice(_LOCALS)}@{rng.choice(INTERNAL)}")}[route]
        extra = [f"{rng.choice(_LOCALS)}@{rng.choice(INTERNAL + EXTERNAL)}" for _ in range(rng.choice((0, 0, 0, 1, 2)))]
        to = tuple(dict.fromkeys([first_rcpt, *extra]))
        lifecycle = rng.choices([lc for _, lc in _LIFECYCLES], weights=_WEIGHTS)[0]
        indexed = 0
        if self.statuses is not None or self.late is not None:
            shaping = shape_rng(self.seed, i)
            if self.statuses is not None:
                lifecycle = self.statuses.lifecycle(shaping)
            if self.late is not None:
                indexed = self.late.delay(shaping)
        if rng.random() < 0.25:
            sender_ip = f"2001:db8:{rng.randrange(1 << 16):x}::{rng.randrange(1, 1 << 16):x}"
        else:
            sender_ip = f"{rng.choice((192, 198, 203))}.{rng.choice((0, 51, 113))}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        return SimMessage(
            index=i, id="eNp" + "".join(rng.choices(_ID_ALPHABET, k=rng.randrange(40, 120))),
            message_id=f"<{self.seed}.{i}@{sender.split('@')[1]}>", received=received, route=route,
            env_from=sender, hdr_from="" if rng.random() < 0.05 else sender, from_name=rng.choice(_NAMES),
            to=to, to_names=tuple(rng.choice(_NAMES) for _ in to),
            subject=rng.choice(_SUBJECTS).format(n=i), sender_ip=sender_ip,
            attachments=None if rng.random() < 0.1 else rng.random() < 0.3,
            spam_score=rng.randrange(0, 20), detection_level=rng.choice(("", "relaxed", "moderate", "aggressive")),
            lifecycle=lifecycle, indexed=indexed,
        )

    def between(self, start: datetime, end: datetime) -> Iterator[SimMessage]:
        """Every message with ``start <= received < end``, in received order."""
        lo = max(0, int((start - self.start).total_seconds() // self._slot) - 1)
        hi = min(self.count, int((end - self.start).total_seconds() // self._slot) + 2)
        for i in range(lo, hi):
            m = self.message(i)
            if start <= m.received < end:
                yield m

    def visible(self, flt: Filter, start: datetime, end: datetime, at: datetime) -> Iterator[tuple[SimMessage, str, str]]:
        """``(message, status, info)`` a search at time ``at`` finds, in received order."""
        for m in self.between(start, end):
            state = m.state_at(at)
            if state is not None and flt.matches(m):
                yield m, state[0], state[1]

    def ground_truth(self, flt: Filter, start: datetime, end: datetime, at: datetime) -> set[tuple[str, str]]:
        """The ``(mimecast id, status)`` pairs visible at ``at``."""
        return {(m.id, status) for m, status, _ in self.visible(flt, start, end, at)}


class MixedFlow:
    """Several flows served as one, e.g. a steady flow plus a burst: the density the collector meets in practice.

    Give each flow its own ``seed`` so that their Mimecast ids never collide.
    """

    def __init__(self, flows: Sequence[MailFlow]) -> None:
        if not flows:
            raise ValueError("a mixed flow needs at least one flow")
        self.flows = tuple(flows)
        self.start = min(f.start for f in self.flows)
        self.end = max(f.end for f in self.flows)
        self.count = sum(f.count for f in self.flows)

    def between(self, start: datetime, end: datetime) -> Iterator[SimMessage]:
        """Every message with ``start <= received < end``, in received order."""
        return heapq.merge(*(f.between(start, end) for f in self.flows), key=lambda m: (m.received, m.id))

    def visible(self, flt: Filter, start: datetime, end: datetime, at: datetime) -> Iterator[tuple[SimMessage, str, str]]:
        """``(message, status, info)`` a search at time ``at`` finds, in received order."""
        return heapq.merge(*(f.visible(flt, start, end, at) for f in self.flows), key=lambda v: (v[0].received, v[0].id))

    def ground_truth(self, flt: Filter, start: datetime, end: datetime, at: datetime) -> set[tuple[str, str]]:
        """The ``(mimecast id, status)`` pairs visible at ``at``."""
        return set().union(*(f.ground_truth(flt, start, end, at) for f in self.flows))
