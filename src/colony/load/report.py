"""What a load run produced: the summary, the per-second timeline and every checkout, as
msgspec Structs that are also the saved JSON file's schema.

``LoadReport.checkouts`` is written for a checker: every checkout that had a buyer, with its
Idempotency-Key, buyer, outcome and order id. An ``ok`` one was acknowledged (201/202 with an
order id), so that order must exist and end; an ``unknown`` one that was ``posted`` may or may
not exist (ask with its key); a ``failed`` one was refused, or never ordered (``posted`` false).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from colony.load.config import LoadConfig
from colony.load.histogram import Percentiles
from colony.load.outcomes import Outcome


class CheckoutRecord(msgspec.Struct, frozen=True, kw_only=True):
    idempotency_key: str
    buyer: str
    """The buyer's e-mail (its password is the demo one or ``LOAD_BUYER_PASSWORD``)."""
    buyer_id: str
    outcome: Outcome
    order_id: str | None
    """Known when the order was acknowledged."""
    status: int | None
    """Of the request that decided the outcome; None when nothing answered."""
    latency_ms: float
    """From the arrival's due time to the answer (or the timeout)."""
    due_s: float
    """When it was due, in seconds from the start of the run."""
    posted: bool
    """Whether ``POST /orders`` was sent."""
    listings: list[str]
    """Put in the cart, one unit each, for this order."""
    error: str | None = None


class KindSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One kind of arrival (or all): outcomes, and latency from due time to answer."""

    arrivals: int
    ok: int
    failed: int
    unknown: int
    dropped: int
    """Counted in ``failed`` too: never started, for want of a buyer or room in flight."""
    latency: Percentiles


class Second(msgspec.Struct, frozen=True, kw_only=True):
    """The arrivals due in one second of the run, and what became of them."""

    second: int
    sent: int
    ok: int
    failed: int
    unknown: int
    dropped: int
    completed: int
    """Arrivals that ended in this second, whenever due: the throughput."""
    p50_ms: float | None
    p99_ms: float | None


class LoadReport(msgspec.Struct, frozen=True, kw_only=True):
    config: LoadConfig
    started_at: str
    """Wall-clock time (UTC) of the first arrival's due time: second 0 of the timeline."""
    schedule_s: float
    """How long the schedule lasted."""
    elapsed_s: float
    """From the start to the last answer."""
    arrivals: int
    intended_rate: float
    """Arrivals a second that the schedule asked for."""
    achieved_rate: float
    """Arrivals a second actually started (not dropped), over the schedule."""
    ok_rate: float
    """Arrivals a second that ended ok, over the whole run."""
    requests: int
    """HTTP requests sent (a cart or checkout arrival makes several)."""
    buyers: int
    kinds: dict[str, KindSummary]
    """Each kind in the mix, and ``all``."""
    errors: dict[str, int]
    """How many arrivals ended with each error, most frequent first."""
    lag: Percentiles
    """How late the generator started arrivals after they were due: a large lag means this
    machine, not the marketplace, was the bottleneck."""
    timeline: list[Second]
    checkouts: list[CheckoutRecord]
    history: str | None = None
    """The file with every arrival's entry, if one was asked for."""
    stopped: bool = False
    """Stopped before the end of its schedule; the figures cover what ran."""

    def save(self, path: Path) -> Path:
        """Write the report as JSON (creating its folder); returns the path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(msgspec.json.format(msgspec.json.encode(self), indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> LoadReport:
        return msgspec.json.decode(path.read_bytes(), type=cls)
