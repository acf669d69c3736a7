"""The order aggregate: its events, and its state as their replay.

The stream ``order-{id}`` is the order's truth. Events are named for what happened; the
state they fold into is what the API shows. Nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

import msgspec

from colony.services.delivery.api import Address
from colony.services.orders.api import Order, OrderLine, OrderStatus, OrderStep


class OrderEvent(msgspec.Struct, frozen=True, kw_only=True):
    at: str


class Placed(OrderEvent, frozen=True, kw_only=True):
    order_id: str
    buyer_id: str
    lines: list[OrderLine]
    total_minor: int
    currency: str
    address: Address
    card_last4: str
    deadline_at: str


class StockReserved(OrderEvent, frozen=True, kw_only=True):
    reservation_id: str


class PaymentAuthorized(OrderEvent, frozen=True, kw_only=True):
    amount_minor: int


class ShipmentsCreated(OrderEvent, frozen=True, kw_only=True):
    shipment_ids: list[str]


class PaymentCaptured(OrderEvent, frozen=True, kw_only=True):
    amount_minor: int


class StockCommitted(OrderEvent, frozen=True, kw_only=True):
    pass


class CartCleared(OrderEvent, frozen=True, kw_only=True):
    pass


class StepSkipped(OrderEvent, frozen=True, kw_only=True):
    step: str
    reason: str


class CheckoutFailed(OrderEvent, frozen=True, kw_only=True):
    step: str
    reason: str


class StepCompensated(OrderEvent, frozen=True, kw_only=True):
    step: str


class Completed(OrderEvent, frozen=True, kw_only=True):
    pass


class CancellationRequested(OrderEvent, frozen=True, kw_only=True):
    reason: str
    by: str


class CancellationRefused(OrderEvent, frozen=True, kw_only=True):
    reason: str


class Cancelled(OrderEvent, frozen=True, kw_only=True):
    reason: str


class RefundRequested(OrderEvent, frozen=True, kw_only=True):
    seller_id: str
    reason: str


class Refunded(OrderEvent, frozen=True, kw_only=True):
    seller_id: str
    amount_minor: int
    reason: str


EVENT_TYPES: dict[str, type[OrderEvent]] = {
    cls.__name__: cls
    for cls in (
        Placed,
        StockReserved,
        PaymentAuthorized,
        ShipmentsCreated,
        PaymentCaptured,
        StockCommitted,
        CartCleared,
        StepSkipped,
        CheckoutFailed,
        StepCompensated,
        Completed,
        CancellationRequested,
        CancellationRefused,
        Cancelled,
        RefundRequested,
        Refunded,
    )
}

_STAGES: dict[type[OrderEvent], str] = {
    Placed: "placed",
    StockReserved: "stock_reserved",
    PaymentAuthorized: "payment_authorized",
    ShipmentsCreated: "shipments_created",
    PaymentCaptured: "payment_captured",
    StockCommitted: "confirmed",
    CartCleared: "cart_cleared",
    CheckoutFailed: "compensating",
    Completed: "completed",
    CancellationRequested: "cancellation_requested",
    Cancelled: "cancelled",
}


def _detail(event: OrderEvent) -> str:
    match event:
        case Placed():
            return f"{sum(line.quantity for line in event.lines)} items, {event.total_minor}"
        case CheckoutFailed() | StepSkipped():
            return f"{event.step}: {event.reason}"
        case StepCompensated():
            return f"undid {event.step}"
        case Cancelled() | CancellationRequested() | CancellationRefused():
            return event.reason
        case Refunded():
            return f"seller {event.seller_id} refunded {event.amount_minor}"
        case RefundRequested():
            return f"seller {event.seller_id}: {event.reason}"
        case PaymentAuthorized() | PaymentCaptured():
            return str(event.amount_minor)
    return ""


class OrderState:
    """An order as its events tell it; ``version`` is the stream's, for the next append."""

    def __init__(self) -> None:
        self.placed: Placed | None = None
        self.status: OrderStatus = "pending"
        self.stage = "new"
        self.cancel_reason: str | None = None
        self.refunded: dict[str, int] = {}
        self.refunds_pending: set[str] = set()
        self.cancellation_pending = False
        self.version = 0
        self.updated_at = ""
        self.timeline: list[OrderStep] = []

    @classmethod
    def replay(cls, events: list[tuple[str, Any]]) -> OrderState:
        state = cls()
        for type_name, event in events:
            state.apply(type_name, event)
        return state

    def apply(self, type_name: str, event: OrderEvent) -> None:
        self.version += 1
        self.updated_at = event.at
        self.stage = _STAGES.get(type(event), self.stage)
        self.timeline.append(OrderStep(type=type_name, at=event.at, detail=_detail(event)))
        match event:
            case Placed():
                self.placed = event
            case Completed():
                self.status = "completed"
            case Cancelled():
                self.status = "cancelled"
                self.cancel_reason = event.reason
                self.cancellation_pending = False
            case CancellationRequested():
                self.cancellation_pending = True
            case CancellationRefused():
                self.cancellation_pending = False
                self.stage = "completed" if self.status == "completed" else self.stage
            case RefundRequested():
                self.refunds_pending.add(event.seller_id)
            case Refunded():
                self.refunds_pending.discard(event.seller_id)
                self.refunded[event.seller_id] = (
                    self.refunded.get(event.seller_id, 0) + event.amount_minor
                )

    @property
    def refunded_minor(self) -> int:
        return sum(self.refunded.values())

    def sellers(self) -> list[str]:
        assert self.placed is not None
        return sorted({line.seller_id for line in self.placed.lines})

    def subtotal(self, seller_id: str) -> int:
        assert self.placed is not None
        return sum(
            line.line_total_minor for line in self.placed.lines if line.seller_id == seller_id
        )

    def view(self) -> Order:
        placed = self.placed
        assert placed is not None
        return Order(
            id=placed.order_id,
            buyer_id=placed.buyer_id,
            status=self.status,
            stage=self.stage,
            lines=placed.lines,
            total_minor=placed.total_minor,
            currency=placed.currency,
            address=placed.address,
            card_last4=placed.card_last4,
            cancel_reason=self.cancel_reason,
            refunded_minor=self.refunded_minor,
            version=self.version,
            created_at=placed.at,
            updated_at=self.updated_at,
            deadline_at=placed.deadline_at,
            timeline=self.timeline,
        )
