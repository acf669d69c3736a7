"""Inventory's public interface: the only module other services may import."""

from __future__ import annotations

from typing import Annotated, ClassVar, Protocol

import msgspec

from colony.platform.messaging import Event
from colony.platform.security import Actor

MAX_QUANTITY = 1_000_000
Quantity = Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)]
Delta = Annotated[int, msgspec.Meta(ge=-MAX_QUANTITY, le=MAX_QUANTITY)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class StockLevel(msgspec.Struct, frozen=True, kw_only=True):
    """Per listing: ``available + reserved + sold == received``, none negative."""

    listing_id: str
    seller_id: str
    available: int
    reserved: int
    sold: int
    received: int
    updated_at: str


class StockChanged(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "inventory.stock.changed"
    listing_id: str
    seller_id: str
    available: int
    reason: str


class InventoryApi(Protocol):
    service_name: ClassVar[str] = "inventory"

    async def stock(self, listing_id: str) -> StockLevel:
        """The stock of one listing; a listing never stocked has zeroes."""
        ...

    async def availability(self, listing_ids: list[str]) -> dict[str, int]:
        """Units available now, per listing (0 for unknown listings)."""
        ...

    async def receive_stock(self, actor: Actor, listing_id: str, quantity: Quantity) -> StockLevel:
        """A seller books units into stock."""
        ...

    async def adjust_stock(
        self, actor: Actor, listing_id: str, delta: Delta, reason: Reason
    ) -> StockLevel:
        """A seller corrects stock (a count, damage, loss); never below what is reserved."""
        ...
