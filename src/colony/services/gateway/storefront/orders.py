"""After checkout, for the buyer: the order history, an order's page (status, timeline,
payment, tracking) that keeps itself current, and cancelling an order."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import ColonyError, Conflict, Forbidden, InvalidInput, NotFound
from colony.platform.security import Actor
from colony.services.delivery.api import Shipment
from colony.services.gateway.api_orders import ReasonBody
from colony.services.gateway.storefront.display import by_seller
from colony.services.gateway.storefront.forms import FormInvalid, convert, read_form
from colony.services.gateway.storefront.money import format_money
from colony.services.gateway.storefront.session import redirect, require_role
from colony.services.gateway.storefront.site import Site
from colony.services.orders.api import Order, OrderStep
from colony.services.payments.api import Payment

PAGE_SIZE = 20
# A checkout takes seconds: look again soon. Parcels move in steps of minutes or days, so
# while only they are moving a slower refresh is enough (and kinder to the servers).
PENDING_REFRESH_SECONDS = 2
SHIPPING_REFRESH_SECONDS = 10
SHIPMENT_DONE = frozenset({"delivered", "cancelled"})
NOT_PICKED_UP = frozenset({"pending", "label_created"})
LABELS = {"reason": "Reason"}

STATUS_TEXT = {"pending": "Processing", "completed": "Completed", "cancelled": "Cancelled"}
STAGE_TEXT = {
    "new": "We have your order and are checking it.",
    "placed": "We have your order and are checking it.",
    "stock_reserved": "Your items are reserved. Taking the payment…",
    "payment_authorized": "Payment authorized. Booking the delivery…",
    "shipments_created": "Delivery booked. Taking the payment…",
    "payment_captured": "Paid. Confirming your order…",
    "confirmed": "Confirming your order…",
    "cart_cleared": "Confirming your order…",
    "compensating": "The order could not go through; undoing what was done…",
    "completed": "Your order is confirmed.",
    "cancellation_requested": "Your cancellation is under way…",
    "cancelled": "This order is cancelled.",
}
STEP_TEXT = {
    "Placed": "Order placed",
    "StockReserved": "Items reserved",
    "PaymentAuthorized": "Payment authorized",
    "ShipmentsCreated": "Delivery booked",
    "PaymentCaptured": "Payment taken",
    "StockCommitted": "Items confirmed",
    "CartCleared": "Bought items taken out of your cart",
    "StepSkipped": "Step skipped",
    "CheckoutFailed": "The order could not go through",
    "StepCompensated": "Undone",
    "Completed": "Order confirmed",
    "CancellationRequested": "Cancellation requested",
    "CancellationRefused": "Cancellation refused",
    "Cancelled": "Order cancelled",
    "RefundRequested": "Refund requested",
    "Refunded": "Refunded",
}
UNDONE_TEXT = {
    "reserve_stock": "items released",
    "authorize_payment": "payment released",
    "create_shipments": "delivery cancelled",
    "capture_payment": "payment returned",
}
SHIPMENT_TEXT = {
    "pending": "Waiting for the order",
    "label_created": "Being prepared",
    "picked_up": "Picked up by the courier",
    "in_transit": "On its way",
    "delivered": "Delivered",
    "cancelled": "Cancelled",
}
PAYMENT_TEXT = {
    "authorized": "Authorized, not yet charged",
    "declined": "Declined",
    "captured": "Paid",
    "voided": "Released, nothing charged",
    "partially_refunded": "Partly refunded",
    "refunded": "Refunded",
}
# What a redirect back to the order may say; a fixed list, so no text can be injected.
NOTICES = {
    "cancelled": "Your order is cancelled. Anything you paid is refunded.",
    "cancelling": "Your cancellation is under way; this page shows when it is done.",
}
# The order's timeline names amounts and sellers in its own words; those read out for people.
_REFUNDED = re.compile(r"^seller (\S+) refunded (\d+)$")
_FAILED = re.compile(r"^\w+: (.+)$")


@dataclass(frozen=True)
class TimelineRow:
    label: str
    at: str
    detail: str


def refresh_seconds(order: Order, shipments: list[Shipment] | None) -> int | None:
    """How soon the order page should look again, or None once nothing more will change
    without someone acting (the page then stays still)."""
    if order.status == "pending" or order.stage == "cancellation_requested":
        return PENDING_REFRESH_SECONDS
    if order.status == "cancelled":
        return None
    if shipments is None or any(s.status not in SHIPMENT_DONE for s in shipments):
        return SHIPPING_REFRESH_SECONDS  # unknown (delivery away) counts as still moving
    return None


def lead_text(order: Order, shipments: list[Shipment] | None) -> str:
    """One sentence on where the order is: the checkout's stage, then the parcels'."""
    if order.stage == "completed" and shipments:
        if all(s.status == "delivered" for s in shipments):
            return "Everything is delivered."
        if any(s.status in ("picked_up", "in_transit", "delivered") for s in shipments):
            return "Your order is on its way."
    return STAGE_TEXT.get(order.stage, order.stage)


def can_cancel(order: Order, shipments: list[Shipment] | None) -> bool:
    """Whether to offer cancelling: the order service has the last word (409 otherwise)."""
    if order.status == "cancelled" or order.stage in ("compensating", "cancellation_requested"):
        return False
    return shipments is None or all(s.status in NOT_PICKED_UP for s in shipments)


def timeline_rows(order: Order, sellers: dict[str, str]) -> list[TimelineRow]:
    return [_row(step, order.currency, sellers) for step in order.timeline]


def _row(step: OrderStep, currency: str, sellers: dict[str, str]) -> TimelineRow:
    label, detail = STEP_TEXT.get(step.type, step.type), ""
    if step.type in ("PaymentAuthorized", "PaymentCaptured") and step.detail.isdigit():
        detail = format_money(int(step.detail), currency)
    elif step.type in ("CheckoutFailed", "StepSkipped"):
        found = _FAILED.match(step.detail)
        detail = found.group(1) if found else step.detail
    elif step.type == "StepCompensated":
        step_name = step.detail.removeprefix("undid ")
        detail = UNDONE_TEXT.get(step_name, step_name.replace("_", " "))
    elif step.type in ("Cancelled", "CancellationRequested", "CancellationRefused"):
        detail = step.detail
    elif step.type == "Refunded" and (found := _REFUNDED.match(step.detail)):
        seller, amount = found.groups()
        detail = f"{format_money(int(amount), currency)} by {sellers.get(seller, 'a seller')}"
    return TimelineRow(label=label, at=step.at, detail=detail)


def order_url(order_id: str) -> str:
    return "/orders/" + quote(order_id, safe="")


def routes(site: Site) -> list[Route]:
    orders, payments = site.backends.orders, site.backends.payments
    delivery = site.backends.delivery

    async def buyer(request: Request, next_path: str) -> Actor:
        return require_role(await site.viewer(request), "buyer", next_path)

    async def own_order(actor: Actor, order_id: str) -> Order:
        try:
            return await orders.get_order(actor, order_id)
        except Forbidden:
            # Someone else's order: not even whether it exists is theirs to learn.
            raise NotFound("No such order.") from None

    async def payment_of(actor: Actor, order_id: str) -> tuple[Payment | None, bool]:
        """The order's payment, and whether it could be asked for (none yet is no failure)."""
        try:
            return await payments.get_payment(actor, order_id), True
        except NotFound:
            return None, True
        except ColonyError:
            return None, False

    async def shipments_of(actor: Actor, order_id: str) -> list[Shipment] | None:
        try:
            return await delivery.shipments_for_order(actor, order_id)
        except ColonyError:
            return None  # the page still shows the order; tracking says it is unavailable

    @site.page
    async def history(request: Request) -> Response:
        actor = await buyer(request, "/orders")
        try:
            page = max(1, min(int(request.query_params.get("page", "1")), 10_000))
        except ValueError:
            page = 1
        result = await orders.order_history(actor, page, PAGE_SIZE)
        pages = max(1, -(-result.total // PAGE_SIZE))
        return await site.render(
            request,
            "orders.html",
            {
                "result": result,
                "page": page,
                "pages": pages,
                "previous_url": f"/orders?page={page - 1}" if page > 1 else None,
                "next_url": f"/orders?page={page + 1}" if page < pages else None,
                "status_text": STATUS_TEXT,
            },
        )

    @site.page
    async def order_page(request: Request) -> Response:
        order_id = request.path_params["order_id"]
        actor = await buyer(request, order_url(order_id))
        order = await own_order(actor, order_id)
        (payment, payment_known), shipments, sellers = await asyncio.gather(
            payment_of(actor, order.id),
            shipments_of(actor, order.id),
            site.account_names((line.seller_id for line in order.lines), "Seller"),
        )
        # The buyer may turn the refresh off (?refresh=off): a page that reloads by itself
        # can get in the way of reading it, or of a screen reader.
        refresh_off = request.query_params.get("refresh") == "off"
        refresh = refresh_seconds(order, shipments)
        return await site.render(
            request,
            "order.html",
            {
                "order": order,
                "groups": by_seller(order.lines),
                "sellers": sellers,
                "shipments": (None if shipments is None else {s.seller_id: s for s in shipments}),
                "payment": payment,
                "payment_known": payment_known,
                "timeline": timeline_rows(order, sellers),
                "refresh": None if refresh_off else refresh,
                "updating": refresh is not None,
                "can_cancel": can_cancel(order, shipments),
                "notice": NOTICES.get(request.query_params.get("notice", "")),
                "status_text": STATUS_TEXT,
                "lead": lead_text(order, shipments),
                "shipment_text": SHIPMENT_TEXT,
                "payment_text": PAYMENT_TEXT,
            },
        )

    async def cancel_page(
        request: Request,
        actor: Actor,
        order: Order,
        reason: str = "",
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        shipments = await shipments_of(actor, order.id)
        return await site.render(
            request,
            "order_cancel.html",
            {
                "order": order,
                "reason": reason,
                "errors": errors or {},
                "can_cancel": can_cancel(order, shipments),
                "status_text": STATUS_TEXT,
            },
            status=status,
        )

    @site.page
    async def cancel_form(request: Request) -> Response:
        order_id = request.path_params["order_id"]
        actor = await buyer(request, order_url(order_id) + "/cancel")
        order = await own_order(actor, order_id)
        if order.status == "cancelled":
            return redirect(order_url(order.id))
        return await cancel_page(request, actor, order)

    @site.page
    async def cancel(request: Request) -> Response:
        fields = await read_form(request)
        order_id = request.path_params["order_id"]
        actor = await buyer(request, order_url(order_id))
        reason = fields.get("reason", "").replace("\r\n", "\n").strip()
        try:
            body = convert({"reason": reason}, ReasonBody, LABELS)
            order = await orders.cancel_order(actor, order_id, body.reason)
        except Forbidden:
            raise NotFound("No such order.") from None
        except (FormInvalid, InvalidInput, Conflict) as exc:
            current = await own_order(actor, order_id)
            if isinstance(exc, Conflict) and (
                current.status == "cancelled" or current.stage == "cancellation_requested"
            ):
                # A second click while the first one's cancellation runs: what was asked for.
                return redirect(order_url(order_id) + "?notice=cancelling")
            failure = exc if isinstance(exc, FormInvalid) else FormInvalid.from_service(exc, LABELS)
            return await cancel_page(
                request, actor, current, reason, failure.errors, failure.status
            )
        notice = "cancelled" if order.status == "cancelled" else "cancelling"
        return redirect(f"{order_url(order.id)}?notice={notice}")

    return [
        Route("/orders", history, methods=["GET"]),
        Route("/orders/{order_id}", order_page, methods=["GET"]),
        Route("/orders/{order_id}/cancel", cancel_form, methods=["GET"]),
        Route("/orders/{order_id}/cancel", cancel, methods=["POST"]),
    ]
