"""Cart's public interface: the only module other services may import."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Protocol

import msgspec

from colony.platform.runtime.interface import callers, repeatable
from colony.platform.security import Actor

MAX_LINE_QUANTITY = 99
MAX_LINES = 50
LineQuantity = Annotated[int, msgspec.Meta(ge=1, le=MAX_LINE_QUANTITY)]
LineStatus = Literal["ok", "insufficient_stock", "unavailable"]


class CartLine(msgspec.Struct, frozen=True, kw_only=True):
    listing_id: str
    seller_id: str
    title: str
    quantity: int
    unit_price_minor: int
    currency: str
    line_total_minor: int
    available: int | None
    status: LineStatus


class Cart(msgspec.Struct, frozen=True, kw_only=True):
    buyer_id: str
    lines: list[CartLine]
    item_count: int
    totals: dict[str, int]
    prices_current: bool
    """False when the catalog could not be reached and prices are as they were when added."""


class PurchasedLine(msgspec.Struct, frozen=True, kw_only=True):
    listing_id: str
    quantity: int


class CartApi(Protocol):
    service_name: ClassVar[str] = "cart"

    @callers("gateway")
    @repeatable
    async def get_cart(self, actor: Actor) -> Cart:
        """The caller's cart, priced now, with each line's availability."""
        ...

    @callers("orders")
    @repeatable
    async def cart_of(self, actor: Actor, buyer_id: str) -> Cart:
        """A buyer's cart as :meth:`get_cart` shows it, for the checkout orders has placed for
        that buyer (system callers): orders names the buyer its own caller's token verified,
        rather than sign a token for the buyer again, one signature check fewer per order."""
        ...

    @callers("gateway")
    async def add_item(self, actor: Actor, listing_id: str, quantity: LineQuantity) -> Cart:
        """Add units of a listing (adding to a line already there)."""
        ...

    @callers("gateway")
    @repeatable
    async def set_quantity(self, actor: Actor, listing_id: str, quantity: int) -> Cart:
        """Set a line's quantity; 0 removes it."""
        ...

    @callers("gateway")
    @repeatable
    async def remove_item(self, actor: Actor, listing_id: str) -> Cart: ...

    @callers("gateway")
    @repeatable
    async def clear(self, actor: Actor) -> Cart: ...

    @callers("orders")
    @repeatable
    async def remove_purchased(
        self, actor: Actor, buyer_id: str, order_id: str, lines: list[PurchasedLine]
    ) -> None:
        """Take an order's units out of its buyer's cart (system callers), once per order;
        what the buyer added meanwhile stays."""
        ...
