"""``/api/v1`` for checkout and after: orders, tracking, payments, refunds, notifications,
webhooks and recommendations."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

import msgspec

from colony.platform.errors import Forbidden, NotFound
from colony.platform.web.api import ApiRouter, Call
from colony.services.delivery.api import Address, Shipment
from colony.services.gateway.backends import Backends
from colony.services.gateway.fallbacks import recommendations_or_none
from colony.services.notifications.api import (
    Notification,
    NotificationFeed,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookUrl,
)
from colony.services.orders.api import (
    Order,
    OrderAccepted,
    OrderPage,
    PageNumber,
    PageSize,
    Reason,
    SellerOrderPage,
)
from colony.services.payments.api import CardNumber, LedgerEntry, Payment
from colony.services.recommendations.api import Recommendation

T = TypeVar("T")


async def _theirs(call: Awaitable[T], what: str = "order") -> T:
    """An order (or a notification) the caller has no part in is answered as none at all
    (404), whichever service refused it: whether its id exists is its owners' business."""
    try:
        return await call
    except Forbidden:
        raise NotFound(f"No such {what}.") from None


# Subclasses inherit these options, but each says frozen=True again: type checkers read
# msgspec through PEP 681 (dataclass_transform), under which a subclass that does not is a
# mutable one, and a mutable subclass of a frozen class an error (msgspec/msgspec#657).
class _Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Checkout(_Body, frozen=True):
    card_number: CardNumber
    address: Address


class ReasonBody(_Body, frozen=True):
    reason: Reason


class WebhookBody(_Body, frozen=True):
    url: WebhookUrl


class PageQuery(_Body, frozen=True):
    page: PageNumber = 1
    page_size: PageSize = 20


class LimitQuery(_Body, frozen=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=20)] = 4


class FeedQuery(_Body, frozen=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20


def add_order_routes(api: ApiRouter, backends: Backends, recommendation_timeout: float) -> None:
    orders, delivery, payments = backends.orders, backends.delivery, backends.payments
    notifications = backends.notifications

    @api.route(
        "POST",
        "/orders",
        summary="Check out the cart (Idempotency-Key required)",
        tag="orders",
        body=Checkout,
        response=OrderAccepted,
        status=201,
        auth=True,
        errors=(400, 409, 503),
        idempotency_required=True,
    )
    async def place_order(call: Call) -> OrderAccepted:
        return await orders.place_order(
            call.require_actor(), call.body.card_number, call.body.address
        )

    @api.route(
        "GET",
        "/orders",
        summary="The signed-in buyer's orders",
        tag="orders",
        query=PageQuery,
        response=OrderPage,
        auth=True,
    )
    async def order_history(call: Call) -> OrderPage:
        return await orders.order_history(
            call.require_actor(), call.query.page, call.query.page_size
        )

    @api.route(
        "GET",
        "/orders/{order_id}",
        summary="An order, with its timeline",
        tag="orders",
        response=Order,
        auth=True,
        errors=(403, 404),
    )
    async def get_order(call: Call) -> Order:
        return await _theirs(orders.get_order(call.require_actor(), call.path["order_id"]))

    @api.route(
        "GET",
        "/orders/{order_id}/shipments",
        summary="An order's shipments and their tracking",
        tag="orders",
        response=list[Shipment],
        auth=True,
        errors=(403, 404),
    )
    async def order_shipments(call: Call) -> list[Shipment]:
        return await _theirs(
            delivery.shipments_for_order(call.require_actor(), call.path["order_id"])
        )

    @api.route(
        "GET",
        "/orders/{order_id}/payment",
        summary="An order's payment",
        tag="orders",
        response=Payment,
        auth=True,
        errors=(403, 404),
    )
    async def order_payment(call: Call) -> Payment:
        return await _theirs(payments.get_payment(call.require_actor(), call.path["order_id"]))

    @api.route(
        "GET",
        "/orders/{order_id}/ledger",
        summary="An order's ledger entries",
        tag="orders",
        response=list[LedgerEntry],
        auth=True,
        errors=(403, 404),
    )
    async def order_ledger(call: Call) -> list[LedgerEntry]:
        return await _theirs(payments.ledger(call.require_actor(), call.path["order_id"]))

    @api.route(
        "POST",
        "/orders/{order_id}/cancellation",
        summary="The buyer cancels an order (until a shipment is picked up)",
        tag="orders",
        body=ReasonBody,
        response=Order,
        auth=True,
        errors=(403, 404, 409),
    )
    async def cancel_order(call: Call) -> Order:
        return await _theirs(
            orders.cancel_order(call.require_actor(), call.path["order_id"], call.body.reason)
        )

    @api.route(
        "POST",
        "/orders/{order_id}/refunds",
        summary="A seller refunds their part of an order",
        tag="orders",
        body=ReasonBody,
        response=Order,
        auth=True,
        errors=(403, 404, 409),
    )
    async def refund_order(call: Call) -> Order:
        return await _theirs(
            orders.refund_order(call.require_actor(), call.path["order_id"], call.body.reason)
        )

    @api.route(
        "GET",
        "/seller/orders",
        summary="The signed-in seller's order queue",
        tag="orders",
        query=PageQuery,
        response=SellerOrderPage,
        auth=True,
        errors=(403,),
    )
    async def seller_queue(call: Call) -> SellerOrderPage:
        return await orders.seller_queue(
            call.require_actor(), call.query.page, call.query.page_size
        )

    @api.route(
        "POST",
        "/admin/projections/rebuild",
        summary="Rebuild the order read models from their events (admin)",
        tag="operations",
        response=dict[str, int],
        auth=True,
        errors=(403,),
    )
    async def rebuild(call: Call) -> dict[str, int]:
        return await orders.rebuild_projections(call.require_actor())

    # --- notifications --------------------------------------------------------------------
    @api.route(
        "GET",
        "/notifications",
        summary="The signed-in user's notifications",
        tag="notifications",
        query=FeedQuery,
        response=NotificationFeed,
        auth=True,
    )
    async def feed(call: Call) -> NotificationFeed:
        return await notifications.feed(call.require_actor(), call.query.limit)

    @api.route(
        "POST",
        "/notifications/{notification_id}/read",
        summary="Mark a notification read",
        tag="notifications",
        response=Notification,
        auth=True,
        errors=(403, 404),
    )
    async def mark_read(call: Call) -> Notification:
        return await _theirs(
            notifications.mark_read(call.require_actor(), call.path["notification_id"]),
            "notification",
        )

    @api.route(
        "PUT",
        "/seller/webhook",
        summary="Set the seller's webhook URL (events are signed with its secret)",
        tag="notifications",
        body=WebhookBody,
        response=WebhookEndpoint,
        auth=True,
        errors=(403,),
    )
    async def set_webhook(call: Call) -> WebhookEndpoint:
        return await notifications.set_webhook(call.require_actor(), call.body.url)

    @api.route(
        "GET",
        "/seller/webhook",
        summary="The seller's webhook",
        tag="notifications",
        response=WebhookEndpoint,
        auth=True,
        errors=(403, 404),
    )
    async def get_webhook(call: Call) -> WebhookEndpoint:
        return await notifications.get_webhook(call.require_actor())

    @api.route(
        "GET",
        "/seller/webhook/deliveries",
        summary="Recent webhook deliveries",
        tag="notifications",
        query=FeedQuery,
        response=list[WebhookDelivery],
        auth=True,
        errors=(403,),
    )
    async def webhook_deliveries(call: Call) -> list[WebhookDelivery]:
        return await notifications.webhook_deliveries(call.require_actor(), call.query.limit)

    # --- recommendations ------------------------------------------------------------------
    @api.route(
        "GET",
        "/listings/{listing_id}/recommendations",
        summary="Bought together with this listing (empty when recommendations is away)",
        tag="catalog",
        query=LimitQuery,
        response=list[Recommendation],
    )
    async def recommendations(call: Call) -> list[Recommendation]:
        return await recommendations_or_none(
            backends.recommendations,
            call.path["listing_id"],
            call.query.limit,
            recommendation_timeout,
        )
