"""Orders' public interface: the only module other services may import.

An order is event-sourced: its stream of events is the truth, its state their replay. The
checkout saga that turns a cart into an order is orchestrated here, durably: validate the cart
→ reserve stock → authorize payment → create shipments → capture payment → confirm → clear
the cart. An order ends ``completed`` or ``cancelled`` (with a reason, every step undone).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Protocol

import msgspec

from colony.platform.messaging import Event
from colony.platform.runtime.interface import callers, repeatable
from colony.platform.security import Actor
from colony.platform.text import NON_BLANK
from colony.services.delivery.api import Address
from colony.services.payments.api import CardNumber

OrderStatus = Literal["pending", "completed", "cancelled"]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=NON_BLANK)]
PageNumber = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
PageSize = Annotated[int, msgspec.Meta(ge=1, le=100)]


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    listing_id: str
    seller_id: str
    title: str
    quantity: int
    unit_price_minor: int
    line_total_minor: int


class OrderStep(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the order's timeline, from its events."""

    type: str
    at: str
    detail: str


class Order(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    buyer_id: str
    status: OrderStatus
    stage: str
    """Where the saga is (e.g. ``reserving_stock``), or how it ended."""
    lines: list[OrderLine]
    total_minor: int
    currency: str
    address: Address
    card_last4: str
    cancel_reason: str | None
    refunded_minor: int
    version: int
    created_at: str
    updated_at: str
    deadline_at: str
    timeline: list[OrderStep]


class OrderAccepted(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    status: OrderStatus
    status_url: str


class OrderSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    buyer_id: str
    status: OrderStatus
    item_count: int
    total_minor: int
    currency: str
    created_at: str
    updated_at: str


class SellerOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One seller's part of an order, as the seller's queue shows it."""

    order_id: str
    seller_id: str
    buyer_id: str
    status: OrderStatus
    lines: list[OrderLine]
    subtotal_minor: int
    refunded_minor: int
    currency: str
    created_at: str
    updated_at: str


class OrderPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[OrderSummary]
    page: int
    page_size: int
    total: int


class SellerOrderPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[SellerOrder]
    page: int
    page_size: int
    total: int


class OrdersAudit(msgspec.Struct, frozen=True, kw_only=True):
    checked_at: str
    """The moment of the one snapshot the orders and their sagas were read in (ISO 8601)."""
    orders: int
    by_status: dict[str, int]
    overdue: list[str]
    """Orders short of a terminal state past their deadline."""
    owed: dict[str, int]
    """What each order's buyer finally owes (0 for a cancelled one), for the ledger check."""


class OrderCompleted(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "orders.order.completed"
    order_id: str
    buyer_id: str
    lines: list[OrderLine]
    total_minor: int
    currency: str


class OrderCancelled(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "orders.order.cancelled"
    order_id: str
    buyer_id: str
    seller_ids: list[str]
    reason: str


class OrderRefunded(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "orders.order.refunded"
    order_id: str
    buyer_id: str
    seller_id: str
    amount_minor: int
    currency: str


class OrdersApi(Protocol):
    service_name: ClassVar[str] = "orders"

    @callers("gateway")
    async def place_order(
        self, actor: Actor, card_number: CardNumber, address: Address
    ) -> OrderAccepted:
        """Turn the buyer's cart into an order and start its checkout saga."""
        ...

    @callers("gateway")
    @repeatable
    async def get_order(self, actor: Actor, order_id: str) -> Order:
        """The buyer's own order (or any, for an admin)."""
        ...

    @callers("gateway")
    @repeatable
    async def order_history(
        self, actor: Actor, page: PageNumber = 1, page_size: PageSize = 20
    ) -> OrderPage:
        """The buyer's orders, newest first."""
        ...

    @callers("gateway")
    @repeatable
    async def seller_queue(
        self, actor: Actor, page: PageNumber = 1, page_size: PageSize = 20
    ) -> SellerOrderPage:
        """The seller's parts of orders, newest first."""
        ...

    @callers("gateway")
    async def cancel_order(self, actor: Actor, order_id: str, reason: Reason) -> Order:
        """The buyer cancels: allowed until a shipment is picked up; refunds what was paid."""
        ...

    @callers("gateway")
    async def refund_order(self, actor: Actor, order_id: str, reason: Reason) -> Order:
        """A seller refunds their part of a completed order."""
        ...

    @callers("gateway", "cli")
    async def rebuild_projections(self, actor: Actor) -> dict[str, int]:
        """Rebuild the read models from the event streams (admin)."""
        ...

    @callers("verify")
    @repeatable
    async def audit(self, actor: Actor) -> OrdersAudit: ...
