"""Inventory's public interface: the only module other services may import."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Protocol

import msgspec

from colony.platform.messaging import Event
from colony.platform.runtime.interface import callers, repeatable
from colony.platform.security import Actor
from colony.platform.text import NON_BLANK

MAX_QUANTITY = 1_000_000
Quantity = Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)]
Delta = Annotated[
    int, msgspec.Meta(ge=-MAX_QUANTITY, le=MAX_QUANTITY, extra_json_schema={"not": {"const": 0}})
]
"""Units added (positive) or taken away (negative); zero changes nothing and is refused."""
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NON_BLANK)]


class StockLevel(msgspec.Struct, frozen=True, kw_only=True):
    """Per listing: ``available + reserved + sold == received``, none negative."""

    listing_id: str
    seller_id: str
    available: int
    reserved: int
    sold: int
    received: int
    updated_at: str


class ReservationLine(msgspec.Struct, frozen=True, kw_only=True):
    listing_id: str
    quantity: Quantity


ReservationStatus = Literal["held", "committed", "released", "expired", "returned"]


class Reservation(msgspec.Struct, frozen=True, kw_only=True):
    """Units set aside for one order: ``held`` until committed (sold) or released.

    A held reservation past ``expires_at`` is released by inventory itself (``expired``);
    a committed one can be ``returned`` (its units go back on sale)."""

    id: str
    status: ReservationStatus
    lines: list[ReservationLine]
    expires_at: str
    created_at: str
    updated_at: str


class StockAudit(msgspec.Struct, frozen=True, kw_only=True):
    """What ``colony verify`` checks: conservation per listing, and reservations."""

    checked_at: str
    """The moment of the one snapshot every figure was read in (ISO 8601, UTC)."""
    listings: int
    unbalanced: list[str]
    """Listings where available + reserved + sold != received, or a figure is negative."""
    reserved_units: int
    held_units: int
    """Units in held reservations; equals ``reserved_units`` when nothing dangles."""
    overdue_holds: list[str]
    """Held reservations past their expiry by more than the sweep interval."""


class StockChanged(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "inventory.stock.changed"
    listing_id: str
    seller_id: str
    available: int
    reason: str


class InventoryApi(Protocol):
    service_name: ClassVar[str] = "inventory"

    @callers("gateway")
    @repeatable
    async def stock(self, listing_id: str) -> StockLevel:
        """The stock of one listing; a listing never stocked has zeroes."""
        ...

    @callers("gateway", "cart")
    @repeatable
    async def availability(self, listing_ids: list[str]) -> dict[str, int]:
        """Units available now, per listing (0 for unknown listings)."""
        ...

    @callers("gateway", "seed", for_users=("gateway", "seed"))
    async def receive_stock(self, actor: Actor, listing_id: str, quantity: Quantity) -> StockLevel:
        """A seller books units into stock."""
        ...

    @callers("gateway")
    async def adjust_stock(
        self, actor: Actor, listing_id: str, delta: Delta, reason: Reason
    ) -> StockLevel:
        """A seller corrects stock (a count, damage, loss); never below what is reserved."""
        ...

    # --- reservations, for the checkout saga (system callers only) -------------------------

    @callers("orders")
    @repeatable
    async def reserve(
        self, actor: Actor, reservation_id: str, lines: list[ReservationLine], ttl_seconds: float
    ) -> Reservation:
        """Hold every line or none (``OutOfStock`` names the short listings). Repeating a
        reservation id returns the reservation as it is."""
        ...

    @callers("orders")
    @repeatable
    async def commit_reservation(self, actor: Actor, reservation_id: str) -> Reservation:
        """Held units become sold. ``Conflict`` if the hold was released or expired."""
        ...

    @callers("orders")
    @repeatable
    async def release_reservation(self, actor: Actor, reservation_id: str) -> Reservation:
        """Held units go back on sale (``released``); sold units too (``returned``).
        Releasing twice, or a reservation never made, changes nothing."""
        ...

    @callers("orders")
    @repeatable
    async def get_reservation(self, actor: Actor, reservation_id: str) -> Reservation: ...

    @callers("verify")
    @repeatable
    async def audit(self, actor: Actor) -> StockAudit: ...
