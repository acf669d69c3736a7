"""The courier simulation, and the one way a shipment changes status.

The schedule lives in the database (``shipments.next_step_at``), never in timers: the courier
is a loop that advances whatever is due, so a restarted process, or another replica, resumes
where the last one stopped. Every change is claimed with a conditional UPDATE on the status and
version it was read at, so two couriers racing for the same step make it once.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from colony.platform.clock import utc_now
from colony.platform.logging import get_logger
from colony.platform.messaging import Outbox
from colony.platform.observability import tracing
from colony.platform.observability.trace_store import ORDER_ID
from colony.platform.storage import Database
from colony.platform.tasks import cancelled
from colony.services.delivery.api import ShipmentStatus, ShipmentStatusChanged

_log = get_logger("delivery.courier")

# What the courier does next from each status it holds: (next status, tracking note).
COURIER_STEPS: dict[str, tuple[ShipmentStatus, str]] = {
    "label_created": ("picked_up", "Picked up by the courier."),
    "picked_up": ("in_transit", "In transit to the delivery address."),
    "in_transit": ("delivered", "Delivered."),
}
REF_FIELDS = ("id", "order_id", "seller_id", "buyer_id", "status", "version")
REF_COLUMNS = ", ".join(REF_FIELDS)


@dataclass(frozen=True, slots=True)
class ShipmentRef:
    """A shipment as last read: enough to claim its next change and announce it."""

    id: str
    order_id: str
    seller_id: str
    buyer_id: str
    status: ShipmentStatus
    version: int

    @classmethod
    def from_row(cls, row: Any) -> ShipmentRef:
        return cls(
            id=row[0],
            order_id=row[1],
            seller_id=row[2],
            buyer_id=row[3],
            status=row[4],
            version=row[5],
        )


def iso(moment: datetime) -> str:
    # The same shape as clock.utc_now_iso, so stored timestamps compare correctly as text.
    return moment.isoformat(timespec="microseconds")


async def transition(
    db: Database,
    outbox: Outbox,
    ref: ShipmentRef,
    status: ShipmentStatus,
    note: str,
    now: datetime,
    next_step_at: datetime | None,
) -> bool:
    """Move the shipment from ``ref``'s status to ``status``, with its tracking event and its
    ``ShipmentStatusChanged``, in one transaction. False (nothing written) when the shipment
    is no longer as ``ref`` saw it: someone else changed it first."""
    at = iso(now)
    async with db.transaction():
        claimed = await db.execute(
            "UPDATE shipments SET status = ?, version = version + 1, next_step_at = ?,"
            " updated_at = ? WHERE id = ? AND status = ? AND version = ?",
            (
                status,
                None if next_step_at is None else iso(next_step_at),
                at,
                ref.id,
                ref.status,
                ref.version,
            ),
        )
        if claimed != 1:
            return False
        await db.execute(
            "INSERT INTO tracking_events (shipment_id, status, at, note) VALUES (?, ?, ?, ?)",
            (ref.id, status, at, note),
        )
        await outbox.add(
            ShipmentStatusChanged(
                shipment_id=ref.id,
                order_id=ref.order_id,
                seller_id=ref.seller_id,
                buyer_id=ref.buyer_id,
                status=status,
                at=at,
            ),
            key=ref.id,
        )
    return True


class Courier:
    """Advances shipments label_created → picked_up → in_transit → delivered, one step per
    ``step_seconds``, in a background task."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        step_seconds: float,
        max_sleep_seconds: float = 1.0,
        batch_size: int = 100,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.step = timedelta(seconds=step_seconds)
        # Bounds how late we notice work another replica handed over (we only hear our own).
        self.max_sleep = max_sleep_seconds
        self.batch_size = batch_size
        self._signal = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="delivery-courier")

    async def stop(self) -> None:
        await cancelled(self._task)
        self._task = None

    def wake(self) -> None:
        """A shipment was handed over: look now rather than at the next planned poll."""
        self._signal.set()

    async def advance_due(self) -> int:
        """Take the next step of the shipments that are due (up to ``batch_size``); returns how
        many this courier advanced, not counting ones another courier took first."""
        return (await self._advance_batch())[1]

    async def _advance_batch(self) -> tuple[int, int]:
        """(due rows seen, rows advanced)."""
        now = utc_now()
        rows = await self.db.fetch_all(
            f"SELECT {REF_COLUMNS}, trace_context FROM shipments WHERE next_step_at IS NOT NULL"
            " AND next_step_at <= ? ORDER BY next_step_at LIMIT ?",
            (iso(now), self.batch_size),
        )
        advanced = 0
        for row in rows:
            ref = ShipmentRef.from_row(row)
            step = COURIER_STEPS.get(ref.status)
            if step is None:  # the CHECK constraint rules this out; never spin on it
                continue
            status, note = step
            moment = utc_now()
            next_at = None if status == "delivered" else moment + self.step
            # A trace of its own, linked to the checkout's: the step happens hours later in
            # real life, and a child of a trace long finished would stretch it past reading.
            stepping = tracing.span(f"courier {status}", service="delivery")
            if tracing.records(stepping):  # most steps are not sampled: nothing to describe
                stepping.set_attributes({ORDER_ID: ref.order_id, "colony.shipment_id": ref.id})
                for link in tracing.link_to(row[len(REF_FIELDS)]):
                    stepping.add_link(link.context)
            with stepping:
                if await transition(self.db, self.outbox, ref, status, note, moment, next_at):
                    advanced += 1
        return len(rows), advanced

    async def seconds_until_due(self) -> float:
        """How long the courier may sleep: until the earliest step, at most ``max_sleep``."""
        earliest = await self.db.fetch_value(
            "SELECT MIN(next_step_at) FROM shipments WHERE next_step_at IS NOT NULL"
        )
        if earliest is None:
            return self.max_sleep
        wait = (datetime.fromisoformat(earliest) - utc_now()).total_seconds()
        return min(max(wait, 0.0), self.max_sleep)

    async def _run(self) -> None:
        failures = 0
        while True:
            # Cleared before looking, so a wake() that lands during the pass is not lost.
            self._signal.clear()
            try:
                seen, _ = await self._advance_batch()
                if seen >= self.batch_size:
                    await asyncio.sleep(0)  # a full batch: more may be due; let others run first
                    continue
                delay = await self.seconds_until_due()
                failures = 0
            except Exception as exc:
                failures += 1
                delay = min(self.max_sleep * 2**failures, 30.0)
                _log.warning("courier pass failed", error=repr(exc), retry_in=delay)
            if delay > 0:
                # asyncio.timeout, not wait_for: see OutboxRelay._run (3.11 cancellation).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._signal.wait()
