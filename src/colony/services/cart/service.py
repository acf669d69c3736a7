"""Cart's service layer: the implementation of :class:`CartApi`."""

from __future__ import annotations

from typing import Any

from colony.platform.clock import utc_now_iso
from colony.platform.errors import ColonyError, Conflict, InvalidInput, NotFound
from colony.platform.idempotency import idempotent
from colony.platform.logging import get_logger
from colony.platform.messaging.consumer import Handler
from colony.platform.runtime import ServiceContext
from colony.platform.security import Actor
from colony.services.cart.api import (
    MAX_LINE_QUANTITY,
    MAX_LINES,
    Cart,
    CartLine,
    LineStatus,
    PurchasedLine,
)
from colony.services.catalog.api import CatalogApi, Listing, ListingDelisted, ListingUpdated
from colony.services.inventory.api import InventoryApi

_log = get_logger("cart")


class CartService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.db = ctx.db
        self.catalog = ctx.client(CatalogApi)
        self.inventory = ctx.client(InventoryApi)

    def subscriptions(self) -> dict[type[Any], Handler]:
        return {ListingDelisted: self.on_listing_delisted, ListingUpdated: self.on_listing_updated}

    async def on_listing_delisted(self, event: ListingDelisted) -> None:
        await self.db.execute(
            "UPDATE cart_lines SET unavailable = 1 WHERE listing_id = ?", (event.listing_id,)
        )

    async def on_listing_updated(self, event: ListingUpdated) -> None:
        await self.db.execute(
            "UPDATE cart_lines SET title = ?, unit_price_minor = ?, currency = ?"
            " WHERE listing_id = ?",
            (event.title, event.price_minor, event.currency, event.listing_id),
        )

    async def get_cart(self, actor: Actor) -> Cart:
        actor.require("buyer")
        return await self._priced(actor.id)

    async def cart_of(self, actor: Actor, buyer_id: str) -> Cart:
        actor.require("system")
        return await self._priced(buyer_id)

    async def _priced(self, buyer_id: str) -> Cart:
        rows = await self.db.fetch_all(
            "SELECT listing_id, seller_id, title, quantity, unit_price_minor, currency,"
            " unavailable FROM cart_lines WHERE buyer_id = ? ORDER BY added_at, listing_id",
            (buyer_id,),
        )
        ids = [row[0] for row in rows]
        listings: dict[str, Listing] | None
        available: dict[str, int] | None
        try:
            listings = (
                {item.id: item for item in await self.catalog.get_listings(ids)} if ids else {}
            )
        except ColonyError as exc:
            _log.warning("catalog unavailable; showing prices as added", error=str(exc))
            listings = None
        try:
            available = await self.inventory.availability(ids) if ids else {}
        except ColonyError as exc:
            _log.warning("inventory unavailable; availability unknown", error=str(exc))
            available = None
        lines = []
        totals: dict[str, int] = {}
        for listing_id, seller_id, title, quantity, price, currency, unavailable in rows:
            listing = listings.get(listing_id) if listings is not None else None
            if listing is not None:
                title, price, currency = listing.title, listing.price_minor, listing.currency
                unavailable = listing.status != "active"
            units = None if available is None else available.get(listing_id, 0)
            status: LineStatus = "ok"
            if unavailable:
                status = "unavailable"
            elif units is not None and units < quantity:
                status = "insufficient_stock"
            line_total = price * quantity
            if status != "unavailable":
                totals[currency] = totals.get(currency, 0) + line_total
            lines.append(
                CartLine(
                    listing_id=listing_id,
                    seller_id=seller_id,
                    title=title,
                    quantity=quantity,
                    unit_price_minor=price,
                    currency=currency,
                    line_total_minor=line_total,
                    available=units,
                    status=status,
                )
            )
        return Cart(
            buyer_id=buyer_id,
            lines=lines,
            item_count=sum(line.quantity for line in lines),
            totals=totals,
            prices_current=listings is not None,
        )

    @idempotent
    async def add_item(self, actor: Actor, listing_id: str, quantity: int) -> Cart:
        actor.require("buyer")
        if not 1 <= quantity <= MAX_LINE_QUANTITY:
            raise InvalidInput(f"The quantity must be between 1 and {MAX_LINE_QUANTITY}.")
        listing = await self._active_listing(listing_id)
        async with self.db.transaction():
            current = await self.db.fetch_value(
                "SELECT quantity FROM cart_lines WHERE buyer_id = ? AND listing_id = ?",
                (actor.id, listing_id),
            )
            if current is None:
                lines = await self.db.fetch_value(
                    "SELECT count(*) FROM cart_lines WHERE buyer_id = ?", (actor.id,)
                )
                if lines >= MAX_LINES:
                    raise Conflict(f"A cart holds at most {MAX_LINES} different listings.")
            total = (current or 0) + quantity
            if total > MAX_LINE_QUANTITY:
                raise Conflict(f"A cart line holds at most {MAX_LINE_QUANTITY} units.")
            await self.db.execute(
                "INSERT INTO cart_lines (buyer_id, listing_id, seller_id, title, quantity,"
                " unit_price_minor, currency, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (buyer_id, listing_id) DO UPDATE SET quantity = excluded.quantity,"
                " title = excluded.title, unit_price_minor = excluded.unit_price_minor,"
                " currency = excluded.currency, unavailable = 0",
                (
                    actor.id,
                    listing.id,
                    listing.seller_id,
                    listing.title,
                    total,
                    listing.price_minor,
                    listing.currency,
                    utc_now_iso(),
                ),
            )
        return await self.get_cart(actor)

    async def _active_listing(self, listing_id: str) -> Listing:
        try:
            listing = await self.catalog.get_listing(listing_id)
        except NotFound:
            raise NotFound("No such listing.") from None
        if listing.status != "active":
            raise Conflict("This listing is no longer offered.")
        return listing

    async def set_quantity(self, actor: Actor, listing_id: str, quantity: int) -> Cart:
        actor.require("buyer")
        if not 0 <= quantity <= MAX_LINE_QUANTITY:
            raise InvalidInput(f"The quantity must be between 0 and {MAX_LINE_QUANTITY}.")
        if quantity == 0:
            return await self.remove_item(actor, listing_id)
        changed = await self.db.execute(
            "UPDATE cart_lines SET quantity = ? WHERE buyer_id = ? AND listing_id = ?",
            (quantity, actor.id, listing_id),
        )
        if not changed:
            raise NotFound("This listing is not in the cart.")
        return await self.get_cart(actor)

    async def remove_item(self, actor: Actor, listing_id: str) -> Cart:
        actor.require("buyer")
        removed = await self.db.execute(
            "DELETE FROM cart_lines WHERE buyer_id = ? AND listing_id = ?", (actor.id, listing_id)
        )
        if not removed:
            raise NotFound("This listing is not in the cart.")
        return await self.get_cart(actor)

    async def clear(self, actor: Actor) -> Cart:
        actor.require("buyer")
        await self.db.execute("DELETE FROM cart_lines WHERE buyer_id = ?", (actor.id,))
        return await self.get_cart(actor)

    async def remove_purchased(
        self, actor: Actor, buyer_id: str, order_id: str, lines: list[PurchasedLine]
    ) -> None:
        actor.require("system")
        async with self.db.transaction():
            done = await self.db.fetch_one(
                "SELECT 1 FROM cart_checkouts WHERE order_id = ?", (order_id,)
            )
            if done:
                return
            for line in lines:
                await self.db.execute(
                    "UPDATE cart_lines SET quantity = quantity - ?"
                    " WHERE buyer_id = ? AND listing_id = ? AND quantity > ?",
                    (line.quantity, buyer_id, line.listing_id, line.quantity),
                )
                await self.db.execute(
                    "DELETE FROM cart_lines"
                    " WHERE buyer_id = ? AND listing_id = ? AND quantity <= ?",
                    (buyer_id, line.listing_id, line.quantity),
                )
            await self.db.execute(
                "INSERT INTO cart_checkouts (order_id, buyer_id, at) VALUES (?, ?, ?)",
                (order_id, buyer_id, utc_now_iso()),
            )
