"""The orders' sagas: checkout, a buyer's cancellation after checkout, and a seller's refund.

Each step calls one service with the order's id as the idempotency handle, so a step repeated
after a crash or a retry has its effect once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec

from colony.platform.errors import Conflict, OutOfStock, PaymentDeclined
from colony.platform.saga import SagaDefinition, Step
from colony.platform.security import Actor
from colony.services.cart.api import CartApi, PurchasedLine
from colony.services.catalog.api import CatalogApi
from colony.services.delivery.api import Address, DeliveryApi, ShipmentLine, ShipmentRequest
from colony.services.inventory.api import InventoryApi, ReservationLine
from colony.services.orders.api import OrderLine
from colony.services.orders.throttle import CheckoutThrottle
from colony.services.payments.api import PaymentsApi

SYSTEM = Actor.system("orders")


class CheckoutState(msgspec.Struct, kw_only=True):
    order_id: str
    buyer_id: str
    lines: list[OrderLine]
    total_minor: int
    currency: str
    address: Address
    shipment_ids: list[str] = msgspec.field(default_factory=list)


class CancellationState(msgspec.Struct, kw_only=True):
    order_id: str
    buyer_id: str
    reason: str


class RefundState(msgspec.Struct, kw_only=True):
    order_id: str
    seller_id: str
    reason: str
    """A refund is of the seller's whole part: what the order records is that part, less
    what it recorded as refunded before, however often the step ran."""


class Cards:
    """Each checkout's card number, from the order's placing to its authorization, in this
    process's memory alone. The saga's state is written to disk, and a card number must never
    be (what a marketplace keeps is the provider's intent id and the last four digits), so it
    is not there. A checkout taken up after a crash, or by another replica, finds no card and
    ends cancelled; payments voids whatever its authorization may have left held.

    An entry leaves once the authorization is answered, once the checkout turns round, and at
    the latest ``keep_seconds`` after it came (the order's deadline)."""

    def __init__(self, keep_seconds: float) -> None:
        self.keep_seconds = keep_seconds
        self._cards: dict[str, tuple[str, float]] = {}

    def keep(self, order_id: str, card_number: str) -> None:
        now = time.monotonic()
        # Dicts keep insertion order, so the expired are at the front.
        while self._cards:
            oldest, (_, until) = next(iter(self._cards.items()))
            if until > now:
                break
            del self._cards[oldest]
        self._cards[order_id] = (card_number, now + self.keep_seconds)

    def card_for(self, order_id: str) -> str | None:
        kept = self._cards.get(order_id)
        if kept is None or kept[1] <= time.monotonic():
            return None
        return kept[0]

    def forget(self, order_id: str) -> None:
        self._cards.pop(order_id, None)

    def __len__(self) -> int:
        return len(self._cards)


@dataclass(frozen=True)
class Dependencies:
    catalog: CatalogApi
    inventory: InventoryApi
    payments: PaymentsApi
    delivery: DeliveryApi
    cart: CartApi
    reservation_ttl_seconds: float
    cards: Cards
    throttle: CheckoutThrottle


def checkout_saga(deps: Dependencies) -> SagaDefinition[CheckoutState]:
    async def validate(state: CheckoutState) -> None:
        listings = {
            listing.id: listing
            for listing in await deps.catalog.get_listings([x.listing_id for x in state.lines])
        }
        for line in state.lines:
            listing = listings.get(line.listing_id)
            if listing is None or listing.status != "active":
                raise Conflict(f"{line.title} is no longer for sale.")
            if listing.price_minor != line.unit_price_minor or listing.currency != state.currency:
                raise Conflict(f"The price of {line.title} changed; please check out again.")

    async def reserve(state: CheckoutState) -> None:
        lines = [ReservationLine(listing_id=x.listing_id, quantity=x.quantity) for x in state.lines]
        try:
            reservation = await deps.inventory.reserve(
                SYSTEM, state.order_id, lines, deps.reservation_ttl_seconds
            )
        except OutOfStock as exc:
            # Inventory knows listings by id only; the buyer reads this, and knows them by title.
            raise OutOfStock(_short_of(exc, state.lines), **exc.extensions) from exc
        if reservation.status != "held":
            raise Conflict(f"The stock reservation was {reservation.status}.")

    async def release(state: CheckoutState) -> None:
        await deps.inventory.release_reservation(SYSTEM, state.order_id)

    async def authorize(state: CheckoutState) -> None:
        card_number = deps.cards.card_for(state.order_id)
        if card_number is None:
            raise Conflict("The checkout was interrupted; please check out again.")
        shares: dict[str, int] = {}
        for line in state.lines:
            shares[line.seller_id] = shares.get(line.seller_id, 0) + line.line_total_minor
        try:
            await deps.payments.authorize(
                SYSTEM,
                state.order_id,
                state.buyer_id,
                state.total_minor,
                state.currency,
                card_number,
                shares,
            )
        except PaymentDeclined:
            # Counted here, where the provider's answer is known: a buyer trying card after
            # card is held back at placing, before any reaches the provider.
            deps.throttle.declined(state.buyer_id)
            raise
        deps.throttle.authorized(state.buyer_id)
        deps.cards.forget(state.order_id)

    async def void(state: CheckoutState) -> None:
        deps.cards.forget(state.order_id)
        await deps.payments.void(SYSTEM, state.order_id)

    async def create_shipments(state: CheckoutState) -> CheckoutState:
        by_seller: dict[str, list[ShipmentLine]] = {}
        for line in state.lines:
            by_seller.setdefault(line.seller_id, []).append(
                ShipmentLine(listing_id=line.listing_id, title=line.title, quantity=line.quantity)
            )
        shipments = await deps.delivery.create_shipments(
            SYSTEM,
            state.order_id,
            state.buyer_id,
            state.address,
            [ShipmentRequest(seller_id=s, lines=lines) for s, lines in sorted(by_seller.items())],
        )
        state.shipment_ids = [shipment.id for shipment in shipments]
        return state

    async def cancel_shipments(state: CheckoutState) -> None:
        await deps.delivery.cancel_shipments(SYSTEM, state.order_id)

    async def capture(state: CheckoutState) -> None:
        await deps.payments.capture(SYSTEM, state.order_id)

    async def confirm(state: CheckoutState) -> None:
        await deps.inventory.commit_reservation(SYSTEM, state.order_id)

    async def clear_cart(state: CheckoutState) -> None:
        purchased = [
            PurchasedLine(listing_id=x.listing_id, quantity=x.quantity) for x in state.lines
        ]
        await deps.cart.remove_purchased(SYSTEM, state.buyer_id, state.order_id, purchased)

    return SagaDefinition(
        "checkout",
        CheckoutState,
        [
            # Progress is recorded once money has moved (the capture) and at the end; a
            # crash before either repeats the steps since, each idempotent by order id.
            Step("validate", validate, checkpoint=False),
            Step("reserve_stock", reserve, release, checkpoint=False),
            Step("authorize_payment", authorize, void, checkpoint=False),
            Step("create_shipments", create_shipments, cancel_shipments, checkpoint=False),
            # void refunds a captured payment: the compensation of a capture.
            Step("capture_payment", capture, void),
            Step("confirm", confirm, checkpoint=False),
            # The order is paid and confirmed; a cart that cannot be tidied does not undo it.
            Step("clear_cart", clear_cart, critical=False, checkpoint=False),
        ],
    )


def cancellation_saga(deps: Dependencies) -> SagaDefinition[CancellationState]:
    """A buyer cancels a completed order: refused (the saga ends cancelled) if a shipment has
    been picked up; once the shipments are cancelled there is no way back, only forward."""

    async def cancel_shipments(state: CancellationState) -> None:
        await deps.delivery.cancel_shipments(SYSTEM, state.order_id)

    async def refund(state: CancellationState) -> None:
        await deps.payments.refund(SYSTEM, state.order_id, None, state.reason)

    async def restock(state: CancellationState) -> None:
        await deps.inventory.release_reservation(SYSTEM, state.order_id)

    return SagaDefinition(
        "cancellation",
        CancellationState,
        [
            Step("cancel_shipments", cancel_shipments),
            Step("refund_payment", refund, persistent=True),
            Step("return_stock", restock, persistent=True),
        ],
    )


def refund_saga(deps: Dependencies) -> SagaDefinition[RefundState]:
    async def refund(state: RefundState) -> None:
        await deps.payments.refund(SYSTEM, state.order_id, state.seller_id, state.reason)

    return SagaDefinition("refund", RefundState, [Step("refund", refund, persistent=True)])


def _short_of(exc: OutOfStock, lines: list[OrderLine]) -> str:
    """Inventory's refusal, naming the order's lines it could not hold by their titles."""
    available = {
        item.get("listing_id"): item.get("available", 0)
        for item in exc.extensions.get("listings", [])
        if isinstance(item, dict)
    }
    short = []
    for line in lines:
        if line.listing_id in available:
            left = available[line.listing_id]
            short.append(f"{line.title} ({f'only {left} left' if left else 'sold out'})")
    if not short:
        return "Not enough stock is left for this order."
    return "Not enough stock for " + ", ".join(short) + "."
