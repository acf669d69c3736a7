"""Delivery's service layer: the implementation of :class:`DeliveryApi`."""

from __future__ import annotations

from typing import Any

import msgspec

from colony.platform.clock import utc_now
from colony.platform.errors import Conflict, Forbidden, InvalidInput, NotFound, Undeliverable
from colony.platform.idempotency import idempotent
from colony.platform.ids import new_id
from colony.platform.logging import get_logger
from colony.platform.messaging.consumer import Handler
from colony.platform.observability import tracing
from colony.platform.runtime import ServiceContext
from colony.platform.security import Actor
from colony.services.delivery.api import (
    UNDELIVERABLE_POSTCODE,
    Address,
    DeliveryAudit,
    Shipment,
    ShipmentLine,
    ShipmentRequest,
    ShipmentStatus,
    TrackingEvent,
)
from colony.services.delivery.courier import REF_COLUMNS, Courier, ShipmentRef, iso, transition
from colony.services.orders.api import OrderCancelled, OrderCompleted

_log = get_logger("delivery")
_encode = msgspec.json.Encoder().encode
_decode_address = msgspec.json.Decoder(Address).decode
_decode_lines = msgspec.json.Decoder(list[ShipmentLine]).decode

_COLUMNS = "id, order_id, seller_id, buyer_id, status, address, lines, created_at, updated_at"
_STATUSES: tuple[ShipmentStatus, ...] = (
    "pending",
    "label_created",
    "picked_up",
    "in_transit",
    "delivered",
    "cancelled",
)
_CANCELLABLE = ("pending", "label_created")
_WITH_COURIER = ("picked_up", "in_transit", "delivered")
_MAX_SHIPMENTS = 100
_MAX_LINES = 500


def _checked_address(address: Address) -> Address:
    # In-process callers hand us a struct msgspec never validated (constraints are checked on
    # decode only); converting it once makes both bindings refuse the same addresses.
    try:
        return msgspec.convert(msgspec.structs.asdict(address), Address)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"The address is not valid: {exc}", field="address") from None


def _check_requests(order_id: str, buyer_id: str, requests: list[ShipmentRequest]) -> None:
    if not order_id or not buyer_id:
        raise InvalidInput("An order id and a buyer id are required.")
    if not requests:
        raise InvalidInput("At least one shipment is required.", field="shipments")
    if len(requests) > _MAX_SHIPMENTS:
        raise InvalidInput(f"At most {_MAX_SHIPMENTS} shipments per order.", field="shipments")
    sellers = [request.seller_id for request in requests]
    if not all(sellers):
        raise InvalidInput("Every shipment needs a seller.", field="shipments")
    if len(set(sellers)) != len(sellers):
        raise InvalidInput("One shipment per seller: a seller is named twice.", field="shipments")
    for request in requests:
        if not request.lines or len(request.lines) > _MAX_LINES:
            raise InvalidInput(
                f"A shipment needs between 1 and {_MAX_LINES} lines.", field="shipments"
            )
        for line in request.lines:
            if not line.listing_id or line.quantity < 1:
                raise InvalidInput(
                    "Every line needs a listing and a quantity of at least 1.", field="shipments"
                )


def _undeliverable(address: Address) -> bool:
    postcode = address.postcode.replace(" ", "").replace("-", "")
    return postcode == UNDELIVERABLE_POSTCODE


class DeliveryService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.db = ctx.db
        self.outbox = ctx.outbox
        self.courier = Courier(ctx.db, ctx.outbox, ctx.settings.courier_step_seconds)

    async def start_workers(self) -> None:
        self.courier.start()

    async def stop(self) -> None:
        await self.courier.stop()

    def subscriptions(self) -> dict[type[Any], Handler]:
        return {OrderCompleted: self.on_order_completed, OrderCancelled: self.on_order_cancelled}

    # Consumers: each runs inside the consumer's transaction, with its inbox row.

    async def on_order_completed(self, event: OrderCompleted) -> None:
        now = utc_now()
        handed_over = False
        for ref in await self._refs(event.order_id, ("pending",)):
            handed_over |= await transition(
                self.db,
                self.outbox,
                ref,
                "label_created",
                "Label created; waiting for the courier.",
                now,
                now + self.courier.step,
            )
        if handed_over:
            self.db.after_commit(self.courier.wake)

    async def on_order_cancelled(self, event: OrderCancelled) -> None:
        now = utc_now()
        for ref in await self._refs(event.order_id):
            if ref.status in _CANCELLABLE:
                await transition(
                    self.db, self.outbox, ref, "cancelled", f"Cancelled: {event.reason}", now, None
                )
            elif ref.status in _WITH_COURIER:
                # Orders refuses to cancel once a shipment is picked up, so this is a late or
                # racing event; retrying cannot make it true, so say so and carry on.
                _log.warning(
                    "order cancelled after pickup; shipment left as it is",
                    order_id=event.order_id,
                    shipment_id=ref.id,
                    status=ref.status,
                )

    # The interface.

    @idempotent
    async def create_shipments(
        self,
        actor: Actor,
        order_id: str,
        buyer_id: str,
        address: Address,
        shipments: list[ShipmentRequest],
    ) -> list[Shipment]:
        actor.require("system")
        address = _checked_address(address)
        _check_requests(order_id, buyer_id, shipments)
        # Refused before anything is written, so no order is left half-shipped.
        if _undeliverable(address):
            raise Undeliverable(
                f"No courier delivers to postcode {address.postcode}.", field="address.postcode"
            )
        now = iso(utc_now())
        address_json = _encode(address)
        async with self.db.transaction():
            existing = await self._load(order_id)
            if existing:
                return existing
            for request in shipments:
                shipment_id = new_id()
                # ON CONFLICT: a concurrent create on another connection may have won the race;
                # its rows stand and both callers read back the same set.
                inserted = await self.db.execute(
                    "INSERT INTO shipments (id, order_id, seller_id, buyer_id, status, address,"
                    " lines, version, next_step_at, created_at, updated_at, trace_context)"
                    " VALUES (?, ?, ?, ?, 'pending', ?, ?, 1, NULL, ?, ?, ?)"
                    " ON CONFLICT (order_id, seller_id) DO NOTHING",
                    (
                        shipment_id,
                        order_id,
                        request.seller_id,
                        buyer_id,
                        address_json,
                        _encode(request.lines),
                        now,
                        now,
                        tracing.current_traceparent(),
                    ),
                )
                if inserted:
                    await self.db.execute(
                        "INSERT INTO tracking_events (shipment_id, status, at, note)"
                        " VALUES (?, 'pending', ?, ?)",
                        (shipment_id, now, "Shipment registered; waiting for the order."),
                    )
            return await self._load(order_id)

    @idempotent
    async def cancel_shipments(self, actor: Actor, order_id: str) -> list[Shipment]:
        # Not admins: cancelling shipments behind the order's back would leave a completed
        # order with nothing on its way. Orders cancels them (as the system) on their behalf.
        actor.require("system", "buyer")
        async with self.db.transaction():
            refs = await self._refs(order_id)
            if not refs:
                return []
            if actor.role != "system" and actor.id != refs[0].buyer_id:
                raise Forbidden("This order belongs to another account.")
            gone = [ref for ref in refs if ref.status in _WITH_COURIER]
            if gone:
                raise Conflict(
                    "A shipment of this order has already been picked up.",
                    shipments={ref.id: ref.status for ref in gone},
                )
            now = utc_now()
            for ref in refs:
                if ref.status in _CANCELLABLE and not await transition(
                    self.db, self.outbox, ref, "cancelled", "Cancelled.", now, None
                ):
                    # Only another writer can get here (another replica's courier on a
                    # database with real concurrency); the caller may retry.
                    raise Conflict("A shipment changed while it was being cancelled; retry.")
            return await self._load(order_id)

    async def shipments_for_order(self, actor: Actor, order_id: str) -> list[Shipment]:
        shipments = await self._load(order_id)
        if actor.role == "system":
            return shipments
        if not shipments:
            raise NotFound("No shipments for that order.")
        if actor.role == "admin" or actor.id == shipments[0].buyer_id:
            return shipments
        own = [shipment for shipment in shipments if shipment.seller_id == actor.id]
        if own:
            return own
        raise Forbidden("This order belongs to another account.")

    async def audit(self, actor: Actor) -> DeliveryAudit:
        actor.require("system", "admin")
        async with self.db.snapshot() as moment:
            rows = await self.db.fetch_all("SELECT status, COUNT(*) FROM shipments GROUP BY status")
        by_status: dict[str, int] = dict.fromkeys(_STATUSES, 0)
        by_status.update({row[0]: row[1] for row in rows})
        return DeliveryAudit(
            checked_at=moment.isoformat(),
            shipments=sum(by_status.values()),
            by_status=by_status,
        )

    # Reading.

    async def _refs(
        self, order_id: str, statuses: tuple[str, ...] | None = None
    ) -> list[ShipmentRef]:
        sql = f"SELECT {REF_COLUMNS} FROM shipments WHERE order_id = ?"
        params: list[Any] = [order_id]
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            params.extend(statuses)
        rows = await self.db.fetch_all(sql + " ORDER BY seller_id", params)
        return [ShipmentRef.from_row(row) for row in rows]

    async def _load(self, order_id: str) -> list[Shipment]:
        rows = await self.db.fetch_all(
            f"SELECT {_COLUMNS} FROM shipments WHERE order_id = ? ORDER BY seller_id",
            (order_id,),
        )
        if not rows:
            return []
        ids = [row[0] for row in rows]
        tracking: dict[str, list[TrackingEvent]] = {shipment_id: [] for shipment_id in ids}
        events = await self.db.fetch_all(
            "SELECT shipment_id, status, at, note FROM tracking_events"
            f" WHERE shipment_id IN ({','.join('?' * len(ids))}) ORDER BY seq",
            ids,
        )
        for shipment_id, status, at, note in events:
            tracking[shipment_id].append(TrackingEvent(status=status, at=at, note=note))
        return [
            Shipment(
                id=row[0],
                order_id=row[1],
                seller_id=row[2],
                buyer_id=row[3],
                status=row[4],
                address=_decode_address(row[5]),
                lines=_decode_lines(row[6]),
                tracking=tracking[row[0]],
                created_at=row[7],
                updated_at=row[8],
            )
            for row in rows
        ]
