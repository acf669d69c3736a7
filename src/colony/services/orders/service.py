"""Orders' service layer: the implementation of :class:`OrdersApi`."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Generic, TypeVar

import msgspec

from colony.platform import context
from colony.platform.clock import utc_now_iso
from colony.platform.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from colony.platform.eventsourcing import EventStore, ProjectionRunner
from colony.platform.idempotency import replayed, run_once
from colony.platform.ids import new_id
from colony.platform.runtime import ServiceContext
from colony.platform.saga import SagaEngine, SagaHooks, SagaPolicy
from colony.platform.security import Actor
from colony.services.cart.api import CartApi
from colony.services.catalog.api import CatalogApi
from colony.services.delivery.api import Address, DeliveryApi
from colony.services.inventory.api import InventoryApi
from colony.services.orders import domain
from colony.services.orders.api import (
    Order,
    OrderAccepted,
    OrderCancelled,
    OrderCompleted,
    OrderLine,
    OrderPage,
    OrderRefunded,
    OrdersAudit,
    OrderSummary,
    SellerOrder,
    SellerOrderPage,
)
from colony.services.orders.projections import BuyerHistory, SellerQueue
from colony.services.orders.sagas import (
    SYSTEM,
    CancellationState,
    Cards,
    CheckoutState,
    Dependencies,
    RefundState,
    cancellation_saga,
    checkout_saga,
    refund_saga,
)
from colony.services.orders.throttle import CheckoutThrottle
from colony.services.payments.api import PaymentsApi

S = TypeVar("S")
_decode_lines = msgspec.json.Decoder(list[OrderLine]).decode
WAIT_FOR_ANSWER_SECONDS = 5.0
"""How long a cancel or refund request waits for its saga before answering with the order
as it stands (the saga goes on either way)."""


def stream_of(order_id: str) -> str:
    return f"order-{order_id}"


class OrderStreams:
    """Loads orders from the event store and appends to them."""

    def __init__(self, store: EventStore, runner: ProjectionRunner) -> None:
        self.store = store
        self.runner = runner

    async def load(self, order_id: str) -> domain.OrderState:
        recorded = await self.store.load(stream_of(order_id))
        return domain.OrderState.replay(
            [(r.type, r.decode(domain.EVENT_TYPES[r.type])) for r in recorded]
        )

    async def append(self, order_id: str, *events: domain.OrderEvent) -> None:
        """Append at the stream's end: every writer of an order decides inside the write
        transaction it appends in, so no one can come between its read and its write."""
        await self.store.append(stream_of(order_id), None, events)
        self.store.db.after_commit(self.runner.notify)


class _Hooks(SagaHooks[S], Generic[S]):
    def __init__(self, streams: OrderStreams, outbox: Any) -> None:
        self.streams = streams
        self.outbox = outbox


class CheckoutHooks(_Hooks[CheckoutState]):
    def __init__(self, streams: OrderStreams, outbox: Any, cards: Cards) -> None:
        super().__init__(streams, outbox)
        self.cards = cards

    _EVENTS: dict[str, Any] = {
        "reserve_stock": lambda s, at: domain.StockReserved(at=at, reservation_id=s.order_id),
        "authorize_payment": lambda s, at: domain.PaymentAuthorized(
            at=at, amount_minor=s.total_minor
        ),
        "create_shipments": lambda s, at: domain.ShipmentsCreated(
            at=at, shipment_ids=s.shipment_ids
        ),
        "capture_payment": lambda s, at: domain.PaymentCaptured(at=at, amount_minor=s.total_minor),
        "confirm": lambda s, at: domain.StockCommitted(at=at),
        "clear_cart": lambda s, at: domain.CartCleared(at=at),
    }

    async def step_completed(self, saga_id: str, step: str, state: CheckoutState) -> None:
        event = self._EVENTS.get(step)
        if event is not None:
            await self.streams.append(saga_id, event(state, utc_now_iso()))

    async def step_skipped(
        self, saga_id: str, step: str, reason: str, state: CheckoutState
    ) -> None:
        await self.streams.append(
            saga_id, domain.StepSkipped(at=utc_now_iso(), step=step, reason=reason)
        )

    async def failed(self, saga_id: str, step: str, reason: str, state: CheckoutState) -> None:
        # Turned round, the checkout never authorizes: its card is needed no more.
        self.cards.forget(saga_id)
        await self.streams.append(
            saga_id, domain.CheckoutFailed(at=utc_now_iso(), step=step, reason=reason)
        )

    async def step_compensated(self, saga_id: str, step: str, state: CheckoutState) -> None:
        await self.streams.append(saga_id, domain.StepCompensated(at=utc_now_iso(), step=step))

    async def completed(self, saga_id: str, state: CheckoutState) -> None:
        await self.streams.append(saga_id, domain.Completed(at=utc_now_iso()))
        await self.outbox.add(
            OrderCompleted(
                order_id=state.order_id,
                buyer_id=state.buyer_id,
                lines=state.lines,
                total_minor=state.total_minor,
                currency=state.currency,
            ),
            key=state.order_id,
        )

    async def cancelled(self, saga_id: str, reason: str, state: CheckoutState) -> None:
        await self.streams.append(saga_id, domain.Cancelled(at=utc_now_iso(), reason=reason))
        await self.outbox.add(
            OrderCancelled(
                order_id=state.order_id,
                buyer_id=state.buyer_id,
                seller_ids=sorted({line.seller_id for line in state.lines}),
                reason=reason,
            ),
            key=state.order_id,
        )


class CancellationHooks(_Hooks[CancellationState]):
    async def completed(self, saga_id: str, state: CancellationState) -> None:
        order = await self.streams.load(state.order_id)
        now = utc_now_iso()
        refunds = [
            domain.Refunded(at=now, seller_id=s, amount_minor=left, reason=state.reason)
            for s in order.sellers()
            if (left := order.subtotal(s) - order.refunded.get(s, 0)) > 0
        ]
        await self.streams.append(
            state.order_id, *refunds, domain.Cancelled(at=now, reason=state.reason)
        )
        await self.outbox.add(
            OrderCancelled(
                order_id=state.order_id,
                buyer_id=state.buyer_id,
                seller_ids=order.sellers(),
                reason=state.reason,
            ),
            key=state.order_id,
        )

    async def cancelled(self, saga_id: str, reason: str, state: CancellationState) -> None:
        await self.streams.append(
            state.order_id, domain.CancellationRefused(at=utc_now_iso(), reason=reason)
        )


class RefundHooks(_Hooks[RefundState]):
    async def completed(self, saga_id: str, state: RefundState) -> None:
        order = await self.streams.load(state.order_id)
        assert order.placed is not None
        amount = order.subtotal(state.seller_id) - order.refunded.get(state.seller_id, 0)
        await self.streams.append(
            state.order_id,
            domain.Refunded(
                at=utc_now_iso(),
                seller_id=state.seller_id,
                amount_minor=max(amount, 0),
                reason=state.reason,
            ),
        )
        await self.outbox.add(
            OrderRefunded(
                order_id=state.order_id,
                buyer_id=order.placed.buyer_id,
                seller_id=state.seller_id,
                amount_minor=max(amount, 0),
                currency=order.placed.currency,
            ),
            key=state.order_id,
        )


class OrdersService:
    def __init__(self, ctx: ServiceContext, throttle: CheckoutThrottle | None = None) -> None:
        settings = ctx.settings
        self.throttle = throttle or CheckoutThrottle()
        self.db = ctx.db
        self.outbox = ctx.outbox
        self.settings = settings
        self.cart = ctx.client(CartApi)
        self.store = EventStore(ctx.db)
        self.projections = ProjectionRunner(self.store, [BuyerHistory(), SellerQueue()])
        self.streams = OrderStreams(self.store, self.projections)
        deps = Dependencies(
            catalog=ctx.client(CatalogApi),
            inventory=ctx.client(InventoryApi),
            payments=ctx.client(PaymentsApi),
            delivery=ctx.client(DeliveryApi),
            cart=self.cart,
            reservation_ttl_seconds=settings.reservation_ttl_seconds,
            cards=Cards(keep_seconds=settings.order_deadline_seconds),
            throttle=self.throttle,
        )
        self.cards = deps.cards
        policy = SagaPolicy(
            step_timeout=settings.saga_step_timeout_seconds,
            attempts=settings.saga_step_attempts,
            patience=settings.saga_step_patience_seconds,
            deadline=settings.order_deadline_seconds,
            lease_seconds=settings.saga_lease_seconds,
        )
        owner = f"orders/{settings.instance}"
        self.checkout = SagaEngine(
            ctx.db,
            checkout_saga(deps),
            CheckoutHooks(self.streams, ctx.outbox, deps.cards),
            owner,
            policy,
        )
        self.cancellation = SagaEngine(
            ctx.db,
            cancellation_saga(deps),
            CancellationHooks(self.streams, ctx.outbox),
            owner,
            policy,
        )
        self.refunds = SagaEngine(
            ctx.db, refund_saga(deps), RefundHooks(self.streams, ctx.outbox), owner, policy
        )
        self.engines = (self.checkout, self.cancellation, self.refunds)

    async def start_workers(self) -> None:
        for engine in self.engines:
            engine.start()
        self.projections.start()

    async def stop(self) -> None:
        for engine in self.engines:
            await engine.stop()
        await self.projections.stop()

    async def idle(self) -> None:
        """Wait for every saga running here, then for the read models (tests, benchmarks)."""
        for engine in self.engines:
            await engine.idle()
        await self.projections.catch_up_all()

    # --- placing an order -----------------------------------------------------------------

    async def place_order(self, actor: Actor, card_number: str, address: Address) -> OrderAccepted:
        actor.require("buyer")
        # A repeat answers as the first did, whatever the cart holds by now (emptied by the
        # first order's checkout, most likely).
        request = context.idempotency_request()
        if request is not None:
            earlier = await replayed(self.db, request, OrderAccepted)
            if earlier is not None:
                return earlier  # type: ignore[no-any-return]
        # After the replay, so a repeat of an order already placed is answered as before; a
        # refused placement stores nothing, and the same key may be sent again later.
        self.throttle.admit(actor.id)
        # Read the cart before any transaction: the write lock is not held across a call.
        cart = await self.cart.cart_of(SYSTEM, actor.id)
        if not cart.lines:
            raise InvalidInput("The cart is empty.")
        unavailable = [line.title for line in cart.lines if line.status == "unavailable"]
        if unavailable:
            raise Conflict("No longer for sale: " + ", ".join(unavailable) + ".")
        if not cart.prices_current:
            raise ServiceUnavailable("Prices cannot be confirmed right now; try again shortly.")
        currencies = {line.currency for line in cart.lines}
        if len(currencies) != 1:
            raise InvalidInput("A cart in several currencies cannot be checked out at once.")
        lines = [
            OrderLine(
                listing_id=line.listing_id,
                seller_id=line.seller_id,
                title=line.title,
                quantity=line.quantity,
                unit_price_minor=line.unit_price_minor,
                line_total_minor=line.line_total_minor,
            )
            for line in cart.lines
        ]
        state = CheckoutState(
            order_id=new_id(),
            buyer_id=actor.id,
            lines=lines,
            total_minor=sum(line.line_total_minor for line in lines),
            currency=currencies.pop(),
            address=address,
        )

        async def place() -> OrderAccepted:
            # Kept in memory before the saga begins, since it starts running once this commits.
            self.cards.keep(state.order_id, card_number)
            async with self.db.transaction():
                deadline = await self.checkout.begin(state.order_id, state)
                await self.streams.append(
                    state.order_id,
                    domain.Placed(
                        at=utc_now_iso(),
                        order_id=state.order_id,
                        buyer_id=state.buyer_id,
                        lines=state.lines,
                        total_minor=state.total_minor,
                        currency=state.currency,
                        address=address,
                        card_last4=card_number[-4:],
                        deadline_at=deadline,
                    ),
                )
            return OrderAccepted(
                order_id=state.order_id,
                status="pending",
                status_url=f"/api/v1/orders/{state.order_id}",
            )

        try:
            if request is None:
                return await place()
            accepted, _ = await run_once(self.db, request, OrderAccepted, place)
        except Exception:
            self.cards.forget(state.order_id)
            raise
        if accepted.order_id != state.order_id:
            self.cards.forget(state.order_id)  # another request with the key placed it first
        return accepted

    # --- reading orders -------------------------------------------------------------------

    async def _order(self, actor: Actor, order_id: str) -> domain.OrderState:
        order = await self.streams.load(order_id)
        if order.placed is None:
            raise NotFound("No such order.")
        if actor.role != "system":
            actor.require_owner(order.placed.buyer_id, "order")
        return order

    async def get_order(self, actor: Actor, order_id: str) -> Order:
        return (await self._order(actor, order_id)).view()

    async def order_history(self, actor: Actor, page: int = 1, page_size: int = 20) -> OrderPage:
        actor.require("buyer")
        rows = await self.db.fetch_all(
            "SELECT order_id, buyer_id, status, item_count, total_minor, currency, created_at,"
            " updated_at FROM buyer_orders WHERE buyer_id = ? ORDER BY created_at DESC"
            " LIMIT ? OFFSET ?",
            (actor.id, page_size, (page - 1) * page_size),
        )
        total = await self.db.fetch_value(
            "SELECT count(*) FROM buyer_orders WHERE buyer_id = ?", (actor.id,)
        )
        return OrderPage(
            items=[
                OrderSummary(
                    id=r[0],
                    buyer_id=r[1],
                    status=r[2],
                    item_count=r[3],
                    total_minor=r[4],
                    currency=r[5],
                    created_at=r[6],
                    updated_at=r[7],
                )
                for r in rows
            ],
            page=page,
            page_size=page_size,
            total=int(total or 0),
        )

    async def seller_queue(
        self, actor: Actor, page: int = 1, page_size: int = 20
    ) -> SellerOrderPage:
        actor.require("seller")
        rows = await self.db.fetch_all(
            "SELECT order_id, seller_id, buyer_id, status, lines, subtotal_minor,"
            " refunded_minor, currency, created_at, updated_at FROM seller_orders"
            " WHERE seller_id = ? ORDER BY created_at DESC LIMIT ? OFFSET ?",
            (actor.id, page_size, (page - 1) * page_size),
        )
        total = await self.db.fetch_value(
            "SELECT count(*) FROM seller_orders WHERE seller_id = ?", (actor.id,)
        )
        return SellerOrderPage(
            items=[
                SellerOrder(
                    order_id=r[0],
                    seller_id=r[1],
                    buyer_id=r[2],
                    status=r[3],
                    lines=_decode_lines(r[4]),
                    subtotal_minor=r[5],
                    refunded_minor=r[6],
                    currency=r[7],
                    created_at=r[8],
                    updated_at=r[9],
                )
                for r in rows
            ],
            page=page,
            page_size=page_size,
            total=int(total or 0),
        )

    # --- after checkout -------------------------------------------------------------------

    async def _answer(self, engine: SagaEngine[Any], saga_id: str, order_id: str) -> Order:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT_FOR_ANSWER_SECONDS):
                await engine.settled(saga_id)
        return (await self.streams.load(order_id)).view()

    async def cancel_order(self, actor: Actor, order_id: str, reason: str) -> Order:
        actor.require("buyer")
        reason = reason.strip()
        if not reason:
            raise InvalidInput("Say why the order is cancelled.", field="reason")
        async with self.db.transaction():
            order = await self._order(actor, order_id)
            if order.status == "cancelled":
                return order.view()
            if order.cancellation_pending:
                raise Conflict("A cancellation of this order is already under way.")
            if order.status == "pending":
                if not await self.checkout.request_cancel(order_id, f"Cancelled: {reason}"):
                    raise Conflict("The checkout is already being undone.")
                await self.streams.append(
                    order_id,
                    domain.CancellationRequested(at=utc_now_iso(), reason=reason, by=actor.id),
                )
                return (await self.streams.load(order_id)).view()
            if order.status != "completed":
                raise Conflict(f"An order that is {order.status} cannot be cancelled.")
            saga_id = f"{order_id}:cancellation:{order.version}"
            assert order.placed is not None
            await self.cancellation.begin(
                saga_id,
                CancellationState(order_id=order_id, buyer_id=order.placed.buyer_id, reason=reason),
            )
            await self.streams.append(
                order_id,
                domain.CancellationRequested(at=utc_now_iso(), reason=reason, by=actor.id),
            )
        return await self._answer(self.cancellation, saga_id, order_id)

    async def refund_order(self, actor: Actor, order_id: str, reason: str) -> Order:
        actor.require("seller")
        reason = reason.strip()
        if not reason:
            raise InvalidInput("Say why the order is refunded.", field="reason")
        async with self.db.transaction():
            order = await self.streams.load(order_id)
            if order.placed is None or (actor.role != "admin" and actor.id not in order.sellers()):
                raise NotFound("No such order among yours.")
            seller_id = actor.id if actor.role != "admin" else order.sellers()[0]
            if order.status != "completed":
                raise Conflict(f"An order that is {order.status} cannot be refunded.")
            if seller_id in order.refunds_pending:
                raise Conflict("A refund of your part of this order is under way.")
            if order.refunded.get(seller_id, 0) >= order.subtotal(seller_id):
                return order.view()
            saga_id = f"{order_id}:refund:{seller_id}:{order.version}"
            await self.refunds.begin(
                saga_id, RefundState(order_id=order_id, seller_id=seller_id, reason=reason)
            )
            await self.streams.append(
                order_id,
                domain.RefundRequested(at=utc_now_iso(), seller_id=seller_id, reason=reason),
            )
        view = await self._answer(self.refunds, saga_id, order_id)
        return view

    # --- operations -----------------------------------------------------------------------

    async def rebuild_projections(self, actor: Actor) -> dict[str, int]:
        actor.require("admin", "system")
        return await self.projections.rebuild()

    async def audit(self, actor: Actor) -> OrdersAudit:
        """The event store and the sagas read in one snapshot, so an order's state and its
        saga's are of the same moment."""
        actor.require("system")
        async with self.db.snapshot() as moment:
            rows = await self.db.fetch_all(
                "SELECT stream_id, type, data FROM event_store ORDER BY position"
            )
            overdue = sorted(await self.checkout.overdue())
            for engine in (self.cancellation, self.refunds):
                overdue.extend(saga.split(":", 1)[0] for saga in await engine.overdue())
        streams: dict[str, list[tuple[str, Any]]] = {}
        for stream_id, type_name, data in rows:
            event = msgspec.json.decode(data, type=domain.EVENT_TYPES[type_name])
            streams.setdefault(stream_id, []).append((type_name, event))
        by_status: dict[str, int] = {}
        owed: dict[str, int] = {}
        for events in streams.values():
            order = domain.OrderState.replay(events)
            if order.placed is None:
                continue
            order_id = order.placed.order_id
            by_status[order.status] = by_status.get(order.status, 0) + 1
            if order.status == "completed":
                owed[order_id] = order.placed.total_minor - order.refunded_minor
            elif order.status == "cancelled":
                owed[order_id] = 0
        return OrdersAudit(
            checked_at=moment.isoformat(),
            orders=sum(by_status.values()),
            by_status=by_status,
            overdue=overdue,
            owed=owed,
        )
