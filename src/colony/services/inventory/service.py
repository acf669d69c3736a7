"""Inventory's service layer: the implementation of :class:`InventoryApi`."""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta
from typing import Any

import msgspec

from colony.platform.clock import utc_now, utc_now_iso
from colony.platform.errors import Conflict, InvalidInput, NotFound, OutOfStock
from colony.platform.idempotency import idempotent
from colony.platform.ids import new_id
from colony.platform.logging import get_logger
from colony.platform.messaging.consumer import Handler
from colony.platform.runtime import ServiceContext
from colony.platform.security import Actor
from colony.platform.tasks import cancelled
from colony.services.catalog.api import CatalogApi, ListingCreated
from colony.services.inventory.api import (
    Reservation,
    ReservationLine,
    ReservationStatus,
    StockAudit,
    StockChanged,
    StockLevel,
)

_log = get_logger("inventory")
SWEEP_SECONDS = 1.0
"""How often expired holds are released; an audit allows this much lateness (and 1 s more)."""
MAX_RESERVATION_LINES = 100

_COLUMNS = "listing_id, seller_id, available, reserved, sold, received, updated_at"


def _level(row: Any) -> StockLevel:
    return StockLevel(
        listing_id=row[0],
        seller_id=row[1],
        available=row[2],
        reserved=row[3],
        sold=row[4],
        received=row[5],
        updated_at=row[6],
    )


class InventoryService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.db = ctx.db
        self.outbox = ctx.outbox
        self.catalog = ctx.client(CatalogApi)
        self._sweeper: asyncio.Task[None] | None = None

    async def start_workers(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="inventory-expiry")

    async def stop(self) -> None:
        await cancelled(self._sweeper)

    def subscriptions(self) -> dict[type[Any], Handler]:
        return {ListingCreated: self.on_listing_created}

    async def on_listing_created(self, event: ListingCreated) -> None:
        await self._ensure(event.listing_id, event.seller_id)

    async def _ensure(self, listing_id: str, seller_id: str) -> None:
        await self.db.execute(
            "INSERT INTO stock (listing_id, seller_id, available, reserved, sold, received,"
            " updated_at) VALUES (?, ?, 0, 0, 0, 0, ?) ON CONFLICT (listing_id) DO NOTHING",
            (listing_id, seller_id, utc_now_iso()),
        )

    async def _get(self, listing_id: str) -> StockLevel | None:
        row = await self.db.fetch_one(
            f"SELECT {_COLUMNS} FROM stock WHERE listing_id = ?", (listing_id,)
        )
        return None if row is None else _level(row)

    async def stock(self, listing_id: str) -> StockLevel:
        level = await self._get(listing_id)
        if level is None:
            listing = await self.catalog.get_listing(listing_id)  # 404 when there is none
            return StockLevel(
                listing_id=listing.id,
                seller_id=listing.seller_id,
                available=0,
                reserved=0,
                sold=0,
                received=0,
                updated_at=listing.created_at,
            )
        return level

    async def availability(self, listing_ids: list[str]) -> dict[str, int]:
        if len(listing_ids) > 500:
            raise InvalidInput("At most 500 listings at a time.")
        found: dict[str, int] = dict.fromkeys(listing_ids, 0)
        if listing_ids:
            marks = ",".join("?" * len(listing_ids))
            rows = await self.db.fetch_all(
                f"SELECT listing_id, available FROM stock WHERE listing_id IN ({marks})",
                listing_ids,
            )
            found.update({row[0]: row[1] for row in rows})
        return found

    async def _owned_level(self, actor: Actor, listing_id: str) -> StockLevel:
        """The seller's stock row, created from the catalog if its event has not arrived yet."""
        actor.require("seller")
        level = await self._get(listing_id)
        if level is None:
            try:
                listing = await self.catalog.get_listing(listing_id)
            except NotFound:
                raise NotFound("No such listing.") from None
            actor.require_owner(listing.seller_id, "listing")
            await self._ensure(listing.id, listing.seller_id)
            level = await self._get(listing_id)
            assert level is not None
        actor.require_owner(level.seller_id, "listing")
        return level

    async def _apply(self, level: StockLevel, delta: int, kind: str, reason: str) -> StockLevel:
        now = utc_now_iso()
        await self.db.execute(
            "UPDATE stock SET available = available + ?, received = received + ?,"
            " updated_at = ? WHERE listing_id = ?",
            (delta, delta, now, level.listing_id),
        )
        await self.db.execute(
            "INSERT INTO stock_movements (id, listing_id, kind, quantity, reason, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (new_id(), level.listing_id, kind, delta, reason, now),
        )
        updated = await self._get(level.listing_id)
        assert updated is not None
        await self.outbox.add(
            StockChanged(
                listing_id=updated.listing_id,
                seller_id=updated.seller_id,
                available=updated.available,
                reason=kind,
            ),
            key=updated.listing_id,
        )
        return updated

    @idempotent
    async def receive_stock(self, actor: Actor, listing_id: str, quantity: int) -> StockLevel:
        if not 1 <= quantity <= 1_000_000:
            raise InvalidInput("The quantity must be between 1 and 1,000,000.", field="quantity")
        async with self.db.transaction():
            level = await self._owned_level(actor, listing_id)
            if level.received + quantity > 1_000_000_000:
                raise Conflict("That would exceed the stock a listing can hold.")
            return await self._apply(level, quantity, "received", "goods received")

    @idempotent
    async def adjust_stock(
        self, actor: Actor, listing_id: str, delta: int, reason: str
    ) -> StockLevel:
        if delta == 0 or abs(delta) > 1_000_000:
            raise InvalidInput("The change must be non-zero and at most 1,000,000.", field="delta")
        async with self.db.transaction():
            level = await self._owned_level(actor, listing_id)
            if level.available + delta < 0:
                raise Conflict(
                    f"Only {level.available} units are available to adjust;"
                    " reserved and sold units cannot be removed.",
                    available=level.available,
                )
            return await self._apply(level, delta, "adjusted", reason.strip())

    # --- reservations ---------------------------------------------------------------------

    async def _reservation(self, reservation_id: str) -> Reservation | None:
        row = await self.db.fetch_one(
            "SELECT id, status, expires_at, created_at, updated_at FROM reservations WHERE id = ?",
            (reservation_id,),
        )
        if row is None:
            return None
        lines = await self.db.fetch_all(
            "SELECT listing_id, quantity FROM reservation_lines WHERE reservation_id = ?"
            " ORDER BY listing_id",
            (reservation_id,),
        )
        return Reservation(
            id=row[0],
            status=row[1],
            lines=[ReservationLine(listing_id=line[0], quantity=line[1]) for line in lines],
            expires_at=row[2],
            created_at=row[3],
            updated_at=row[4],
        )

    async def _move(self, lines: list[ReservationLine], source: str, target: str, why: str) -> None:
        """Move units between two of available, reserved and sold, announcing the change."""
        for line in lines:
            # fetch_all, not fetch_one: it steps the statement to its end.
            [row] = await self.db.fetch_all(
                f"UPDATE stock SET {source} = {source} - ?, {target} = {target} + ?,"
                " updated_at = ? WHERE listing_id = ? RETURNING seller_id, available",
                (line.quantity, line.quantity, utc_now_iso(), line.listing_id),
            )
            if "available" in (source, target):
                await self.outbox.add(
                    StockChanged(
                        listing_id=line.listing_id,
                        seller_id=row[0],
                        available=row[1],
                        reason=why,
                    ),
                    key=line.listing_id,
                )

    async def _set_status(self, reservation: Reservation, status: ReservationStatus) -> Reservation:
        now = utc_now_iso()
        await self.db.execute(
            "UPDATE reservations SET status = ?, updated_at = ? WHERE id = ?",
            (status, now, reservation.id),
        )
        return msgspec.structs.replace(reservation, status=status, updated_at=now)

    async def reserve(
        self, actor: Actor, reservation_id: str, lines: list[ReservationLine], ttl_seconds: float
    ) -> Reservation:
        actor.require("system")
        if not lines or len(lines) > MAX_RESERVATION_LINES:
            raise InvalidInput(f"A reservation holds 1 to {MAX_RESERVATION_LINES} lines.")
        if len({line.listing_id for line in lines}) != len(lines):
            raise InvalidInput("Each listing may appear once in a reservation.")
        if not 1 <= ttl_seconds <= 86_400:
            raise InvalidInput("A reservation lasts between 1 s and a day.")
        async with self.db.transaction():
            existing = await self._reservation(reservation_id)
            if existing is not None:
                return existing
            short: list[dict[str, Any]] = []
            for line in sorted(lines, key=lambda line: line.listing_id):
                available = await self.db.fetch_value(
                    "SELECT available FROM stock WHERE listing_id = ?", (line.listing_id,)
                )
                if (available or 0) < line.quantity:
                    short.append({"listing_id": line.listing_id, "available": available or 0})
            if short:
                raise OutOfStock(
                    "Not enough stock for " + ", ".join(item["listing_id"] for item in short) + ".",
                    listings=short,
                )
            now = utc_now()
            created_at = now.isoformat(timespec="microseconds")
            expires_at = (now + timedelta(seconds=ttl_seconds)).isoformat(timespec="microseconds")
            await self.db.execute(
                "INSERT INTO reservations (id, status, expires_at, created_at, updated_at)"
                " VALUES (?, 'held', ?, ?, ?)",
                (reservation_id, expires_at, created_at, created_at),
            )
            await self.db.execute_many(
                "INSERT INTO reservation_lines (reservation_id, listing_id, quantity)"
                " VALUES (?, ?, ?)",
                [(reservation_id, line.listing_id, line.quantity) for line in lines],
            )
            await self._move(lines, "available", "reserved", "reserved")
            return Reservation(
                id=reservation_id,
                status="held",
                lines=sorted(lines, key=lambda line: line.listing_id),
                expires_at=expires_at,
                created_at=created_at,
                updated_at=created_at,
            )

    async def commit_reservation(self, actor: Actor, reservation_id: str) -> Reservation:
        actor.require("system")
        async with self.db.transaction():
            reservation = await self._reservation(reservation_id)
            if reservation is None:
                raise NotFound("No such reservation.")
            if reservation.status == "committed":
                return reservation
            if reservation.status != "held":
                raise Conflict(f"The reservation was {reservation.status}; it cannot be sold.")
            await self._move(reservation.lines, "reserved", "sold", "sold")
            return await self._set_status(reservation, "committed")

    async def release_reservation(self, actor: Actor, reservation_id: str) -> Reservation:
        actor.require("system")
        async with self.db.transaction():
            reservation = await self._reservation(reservation_id)
            if reservation is None:
                # A tombstone: a reserve that arrives after its own compensation (a retry
                # overtaken by a cancellation) must not hold stock that nobody will release.
                now = utc_now_iso()
                await self.db.execute(
                    "INSERT INTO reservations (id, status, expires_at, created_at, updated_at)"
                    " VALUES (?, 'released', ?, ?, ?)",
                    (reservation_id, now, now, now),
                )
                return Reservation(
                    id=reservation_id,
                    status="released",
                    lines=[],
                    expires_at=now,
                    created_at=now,
                    updated_at=now,
                )
            if reservation.status == "held":
                await self._move(reservation.lines, "reserved", "available", "released")
                return await self._set_status(reservation, "released")
            if reservation.status == "committed":
                await self._move(reservation.lines, "sold", "available", "returned")
                return await self._set_status(reservation, "returned")
            return reservation

    async def get_reservation(self, actor: Actor, reservation_id: str) -> Reservation:
        actor.require("system")
        reservation = await self._reservation(reservation_id)
        if reservation is None:
            raise NotFound("No such reservation.")
        return reservation

    async def expire_reservations(self) -> int:
        """Release every hold past its expiry; returns how many."""
        now = utc_now_iso()
        expired = await self.db.fetch_all(
            "SELECT id FROM reservations WHERE status = 'held' AND expires_at < ? LIMIT 500",
            (now,),
        )
        for (reservation_id,) in expired:
            async with self.db.transaction():
                reservation = await self._reservation(reservation_id)
                if reservation is None or reservation.status != "held":
                    continue  # committed or released meanwhile
                await self._move(reservation.lines, "reserved", "available", "expired")
                await self._set_status(reservation, "expired")
        return len(expired)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.expire_reservations()
            except Exception:
                _log.exception("expiring reservations failed; will retry")
            await asyncio.sleep(SWEEP_SECONDS)

    async def audit(self, actor: Actor) -> StockAudit:
        """Read in one snapshot: units reserved and units held are compared with each other,
        and a reservation committing between the two reads would have set them apart."""
        actor.require("system")
        async with self.db.snapshot() as moment:
            listings = await self.db.fetch_value("SELECT count(*) FROM stock")
            unbalanced = await self.db.fetch_all(
                "SELECT listing_id FROM stock WHERE available + reserved + sold != received"
                " OR available < 0 OR reserved < 0 OR sold < 0"
            )
            # sum() of BIGINT is NUMERIC in PostgreSQL (a Decimal here): cast back to an integer.
            reserved = await self.db.fetch_value(
                "SELECT CAST(coalesce(sum(reserved), 0) AS BIGINT) FROM stock"
            )
            held = await self.db.fetch_value(
                "SELECT CAST(coalesce(sum(l.quantity), 0) AS BIGINT) FROM reservation_lines l"
                " JOIN reservations r ON r.id = l.reservation_id WHERE r.status = 'held'"
            )
            # Overdue as of the snapshot's moment, not of whenever this line runs.
            grace = (moment.astimezone(UTC) - timedelta(seconds=SWEEP_SECONDS + 1)).isoformat(
                timespec="microseconds"
            )
            overdue = await self.db.fetch_all(
                "SELECT id FROM reservations WHERE status = 'held' AND expires_at < ?", (grace,)
            )
        return StockAudit(
            checked_at=moment.isoformat(),
            listings=int(listings or 0),
            unbalanced=[row[0] for row in unbalanced],
            reserved_units=int(reserved),
            held_units=int(held),
            overdue_holds=[row[0] for row in overdue],
        )
