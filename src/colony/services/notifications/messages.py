"""What notifications say: for each event, who is told what, in the feed and by e-mail.

Each :class:`Note` carries its ``key``: what happened, from the recipient's side, named by the
event's natural identity (an order id, a shipment and its status), not by the message that
carried it. Every row written for a note derives its id from that key, which is what makes a
redelivered or republished event notify nobody twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from colony.services.delivery.api import ShipmentStatusChanged
from colony.services.orders.api import OrderCancelled, OrderCompleted, OrderLine, OrderRefunded

_ZERO_DECIMAL = frozenset({"JPY", "KRW", "ISK", "CLP", "VND"})


@dataclass(frozen=True, slots=True)
class Note:
    key: str
    user_id: str
    kind: str
    title: str
    body: str
    link: str | None
    email: bool
    """Also mailed; the feed alone for steps that would only be noise in an inbox."""


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A seller's webhook for a note: ``type`` and ``data`` of the body it is posted."""

    note: Note
    type: str
    data: dict[str, Any]


def money(minor: int, currency: str) -> str:
    if currency.upper() in _ZERO_DECIMAL:
        return f"{minor:,} {currency}"
    return f"{minor / 100:,.2f} {currency}"


def order_ref(order_id: str) -> str:
    # The tail of a UUIDv7 is its random part; the head is the time, alike for orders placed
    # close together.
    return "#" + order_id[-8:].upper()


def _items(count: int) -> str:
    return f"{count} item{'s' if count != 1 else ''}"


def order_link(order_id: str) -> str:
    return f"/orders/{order_id}"


SELLER_ORDERS_LINK = "/seller/orders"


def order_completed(event: OrderCompleted) -> list[WebhookEvent | Note]:
    """The buyer's confirmation, and each seller's new sale (their lines only)."""
    ref = order_ref(event.order_id)
    count = sum(line.quantity for line in event.lines)
    buyer = Note(
        key=f"order.completed:{event.order_id}",
        user_id=event.buyer_id,
        kind="order.completed",
        title=f"Order {ref} confirmed",
        body=(
            f"Your order of {_items(count)} for {money(event.total_minor, event.currency)}"
            " is confirmed. We will tell you when it ships."
        ),
        link=order_link(event.order_id),
        email=True,
    )
    by_seller: dict[str, list[OrderLine]] = {}
    for line in event.lines:
        by_seller.setdefault(line.seller_id, []).append(line)
    notes: list[WebhookEvent | Note] = [buyer]
    for seller_id, lines in by_seller.items():
        subtotal = sum(line.line_total_minor for line in lines)
        titles = ", ".join(f"{line.quantity} x {line.title}" for line in lines)
        note = Note(
            key=f"sale.received:{event.order_id}",
            user_id=seller_id,
            kind="sale.received",
            title=f"New order {ref}",
            body=f"To ship: {titles}. Your subtotal: {money(subtotal, event.currency)}.",
            link=SELLER_ORDERS_LINK,
            email=True,
        )
        notes.append(note)
        notes.append(
            WebhookEvent(
                note=note,
                type="order.completed",
                data={
                    "order_id": event.order_id,
                    "seller_id": seller_id,
                    "buyer_id": event.buyer_id,
                    "lines": [
                        {
                            "listing_id": line.listing_id,
                            "title": line.title,
                            "quantity": line.quantity,
                            "unit_price_minor": line.unit_price_minor,
                            "line_total_minor": line.line_total_minor,
                        }
                        for line in lines
                    ],
                    "subtotal_minor": subtotal,
                    "currency": event.currency,
                },
            )
        )
    return notes


def order_cancelled(event: OrderCancelled) -> list[WebhookEvent | Note]:
    ref = order_ref(event.order_id)
    notes: list[WebhookEvent | Note] = [
        Note(
            key=f"order.cancelled:{event.order_id}",
            user_id=event.buyer_id,
            kind="order.cancelled",
            title=f"Order {ref} cancelled",
            body=(
                f"Your order was cancelled: {event.reason}. Any payment taken for it is refunded."
            ),
            link=order_link(event.order_id),
            email=True,
        )
    ]
    for seller_id in dict.fromkeys(event.seller_ids):
        note = Note(
            key=f"sale.cancelled:{event.order_id}",
            user_id=seller_id,
            kind="sale.cancelled",
            title=f"Order {ref} cancelled",
            body=f"Order {ref} was cancelled ({event.reason}). Do not ship it.",
            link=SELLER_ORDERS_LINK,
            email=True,
        )
        notes.append(note)
        notes.append(
            WebhookEvent(
                note=note,
                type="order.cancelled",
                data={"order_id": event.order_id, "seller_id": seller_id, "reason": event.reason},
            )
        )
    return notes


def order_refunded(event: OrderRefunded) -> list[WebhookEvent | Note]:
    # The event names no refund id: a seller refunds their part of an order, so the order, the
    # seller and the amount identify it. Two refunds of one amount by one seller on one order
    # would read as one; the event would need a refund id to tell them apart.
    ref = order_ref(event.order_id)
    amount = money(event.amount_minor, event.currency)
    natural = f"{event.order_id}:{event.seller_id}:{event.amount_minor}"
    seller = Note(
        key=f"sale.refunded:{natural}",
        user_id=event.seller_id,
        kind="sale.refunded",
        title=f"Refund on order {ref}",
        body=f"{amount} of order {ref} was refunded to the buyer.",
        link=SELLER_ORDERS_LINK,
        email=True,
    )
    return [
        Note(
            key=f"order.refunded:{natural}",
            user_id=event.buyer_id,
            kind="order.refunded",
            title=f"Refund for order {ref}",
            body=f"{amount} has been refunded to your card.",
            link=order_link(event.order_id),
            email=True,
        ),
        seller,
        WebhookEvent(
            note=seller,
            type="order.refunded",
            data={
                "order_id": event.order_id,
                "seller_id": event.seller_id,
                "amount_minor": event.amount_minor,
                "currency": event.currency,
            },
        ),
    ]


# Per status: title, body, and whether it is worth an e-mail. ``pending`` is the shipment being
# set up during checkout: nothing to tell yet.
_SHIPMENT_TEXTS: dict[str, tuple[str, str, bool]] = {
    "label_created": ("Preparing your parcel", "The seller is preparing your parcel.", False),
    "picked_up": ("Your order has shipped", "Your parcel is with the courier.", True),
    "in_transit": ("Your parcel is on its way", "Your parcel is in transit.", False),
    "delivered": ("Delivered", "Your parcel has been delivered. Enjoy!", True),
    "cancelled": ("Shipment cancelled", "This shipment was cancelled.", False),
}


def shipment_status_changed(event: ShipmentStatusChanged) -> list[WebhookEvent | Note]:
    texts = _SHIPMENT_TEXTS.get(event.status)
    if texts is None:
        return []
    title, body, email = texts
    ref = order_ref(event.order_id)
    return [
        Note(
            key=f"shipment.{event.status}:{event.shipment_id}",
            user_id=event.buyer_id,
            kind=f"shipment.{event.status}",
            title=f"{title} ({ref})",
            body=body,
            link=order_link(event.order_id),
            email=email,
        )
    ]


def mail_body(note: Note, site_url: str) -> str:
    """The e-mail's text as queued; the greeting is added when it is sent (:func:`greeted`),
    once the recipient's name is known."""
    text = note.body
    if note.link:
        text += f"\n\n{site_url.rstrip('/')}{note.link}"
    return text


def greeted(name: str, text: str) -> str:
    return f"Hello {name},\n\n{text}\n\n— Colony\n"
