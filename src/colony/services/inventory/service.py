"""Inventory's service layer: the implementation of :class:`InventoryApi`."""

from __future__ import annotations

from typing import Any

from colony.platform.clock import utc_now_iso
from colony.platform.errors import Conflict, InvalidInput, NotFound
from colony.platform.idempotency import idempotent
from colony.platform.ids import new_id
from colony.platform.messaging.consumer import Handler
from colony.platform.runtime import ServiceContext
from colony.platform.security import Actor
from colony.services.catalog.api import CatalogApi, ListingCreated
from colony.services.inventory.api import StockChanged, StockLevel

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
