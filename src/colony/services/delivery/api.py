"""Delivery's public interface: the only module other services may import.

One shipment per seller per order. Shipments are created ``pending`` during checkout and
handed to the courier when the order completes (delivery consumes ``OrderCompleted``); the
courier simulation then advances each one label_created → picked_up → in_transit →
delivered, one step per ``courier_step_seconds``, emitting ``ShipmentStatusChanged`` at each.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Protocol

import msgspec

from colony.platform.messaging import Event
from colony.platform.runtime.interface import callers, repeatable
from colony.platform.security import Actor

UNDELIVERABLE_POSTCODE = "00000"
"""A postcode no courier serves: creating a shipment to it fails (``Undeliverable``)."""

ShipmentStatus = Literal[
    "pending", "label_created", "picked_up", "in_transit", "delivered", "cancelled"
]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Address(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Text
    line1: Text
    city: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    postcode: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9 -]{2,12}$")]
    country: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]


class ShipmentLine(msgspec.Struct, frozen=True, kw_only=True):
    listing_id: str
    title: str
    quantity: int


class ShipmentRequest(msgspec.Struct, frozen=True, kw_only=True):
    seller_id: str
    lines: list[ShipmentLine]


class TrackingEvent(msgspec.Struct, frozen=True, kw_only=True):
    status: ShipmentStatus
    at: str
    note: str


class Shipment(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    order_id: str
    seller_id: str
    buyer_id: str
    status: ShipmentStatus
    address: Address
    lines: list[ShipmentLine]
    tracking: list[TrackingEvent]
    created_at: str
    updated_at: str


class DeliveryAudit(msgspec.Struct, frozen=True, kw_only=True):
    checked_at: str
    """The moment the shipments were counted (ISO 8601, UTC)."""
    shipments: int
    by_status: dict[str, int]


class ShipmentStatusChanged(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "delivery.shipment.status_changed"
    shipment_id: str
    order_id: str
    seller_id: str
    buyer_id: str
    status: ShipmentStatus
    at: str


class DeliveryApi(Protocol):
    service_name: ClassVar[str] = "delivery"

    @callers("orders")
    @repeatable
    async def create_shipments(
        self,
        actor: Actor,
        order_id: str,
        buyer_id: str,
        address: Address,
        shipments: list[ShipmentRequest],
    ) -> list[Shipment]:
        """One ``pending`` shipment per request (system callers). Repeating for the same order
        returns the shipments as they are. ``Undeliverable`` for an address no courier serves."""
        ...

    @callers("orders")
    @repeatable
    async def cancel_shipments(self, actor: Actor, order_id: str) -> list[Shipment]:
        """Cancel the order's shipments (a compensation, or the buyer cancelling). ``Conflict``
        once any has been picked up. Cancelling twice, or an order without shipments, is fine."""
        ...

    @callers("gateway")
    @repeatable
    async def shipments_for_order(self, actor: Actor, order_id: str) -> list[Shipment]:
        """The buyer, a seller (their own shipment only), or the system."""
        ...

    @callers("verify")
    @repeatable
    async def audit(self, actor: Actor) -> DeliveryAudit: ...
