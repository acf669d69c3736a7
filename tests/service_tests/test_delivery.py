"""Delivery: shipments per seller, the courier's durable schedule, cancellation and access.

Run in both bindings, so errors such as ``Undeliverable`` are seen crossing HTTP too. Events
from orders are handed to delivery's consumer as the broker would hand them.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from colony.platform.clock import utc_now_iso
from colony.platform.config import Settings
from colony.platform.errors import Conflict, Forbidden, InvalidInput, NotFound, Undeliverable
from colony.platform.ids import new_id
from colony.platform.messaging import Event, Message
from colony.platform.messaging.consumer import list_dead_letters
from colony.platform.runtime import Runtime, ServiceDefinition, Topology
from colony.platform.security import Actor
from colony.platform.web.server import free_port
from colony.services.delivery.api import (
    Address,
    DeliveryApi,
    Shipment,
    ShipmentLine,
    ShipmentRequest,
    ShipmentStatusChanged,
)
from colony.services.delivery.courier import Courier
from colony.services.delivery.service import DeliveryService
from colony.services.orders.api import OrderCancelled, OrderCompleted, OrderLine
from trust_support import AllowedCaller
from waiting import eventually

MIGRATIONS = Path(inspect.getfile(DeliveryService)).parent / "migrations"
SYSTEM = Actor.system("orders")
ADMIN = Actor(id="admin-1", role="admin")
ADDRESS = Address(
    name="Ada Lovelace",
    line1="12 St James's Square",
    city="London",
    postcode="SW1Y 4JH",
    country="GB",
)
ZERO_QUANTITY = ShipmentLine(listing_id="a", title="A", quantity=0)
COURIER_STATES = ["label_created", "picked_up", "in_transit", "delivered"]


def topology_for(binding: str) -> Topology:
    if binding == "inprocess":
        return Topology.one_process()
    return Topology.local_over_http({"delivery": free_port()})


async def start_runtime(data_dir: Path, binding: str, step: float) -> Runtime:
    runtime = Runtime(
        Settings(data_dir=data_dir, courier_step_seconds=step),
        [ServiceDefinition("delivery", DeliveryApi, DeliveryService, MIGRATIONS)],
        topology_for(binding),
    )
    await runtime.start()
    return runtime


@dataclass
class World:
    runtime: Runtime
    binding: str
    data_dir: Path

    @property
    def api(self) -> DeliveryApi:
        return AllowedCaller(self.runtime, DeliveryApi)

    async def publish(self, event: Event, message_id: str | None = None) -> None:
        """Hand an event to delivery's consumer as the broker would (never raises)."""
        await self.runtime.consumers["delivery"].deliver(message(event, message_id))

    async def outbox_events(self) -> list[ShipmentStatusChanged]:
        rows = await self.runtime.databases["delivery"].fetch_all(
            "SELECT payload FROM outbox WHERE topic = ? ORDER BY seq",
            (ShipmentStatusChanged.topic,),
        )
        return [msgspec.json.decode(row[0], type=ShipmentStatusChanged) for row in rows]

    async def dead_letters(self) -> int:
        return len(await list_dead_letters(self.runtime.databases["delivery"]))


def message(event: Event, message_id: str | None = None) -> Message:
    return Message(
        id=message_id or new_id(),
        topic=event.topic,
        key=getattr(event, "order_id", ""),
        payload=msgspec.Raw(msgspec.json.encode(event)),
        created_at=utc_now_iso(),
        source="orders",
    )


def parcel(seller_id: str, *listings: str) -> ShipmentRequest:
    return ShipmentRequest(
        seller_id=seller_id,
        lines=[
            ShipmentLine(listing_id=item, title=f"Item {item}", quantity=1) for item in listings
        ],
    )


def completed(order_id: str, buyer_id: str) -> OrderCompleted:
    line = OrderLine(
        listing_id="l1",
        seller_id="s1",
        title="Item",
        quantity=1,
        unit_price_minor=100,
        line_total_minor=100,
    )
    return OrderCompleted(
        order_id=order_id, buyer_id=buyer_id, lines=[line], total_minor=100, currency="EUR"
    )


def cancelled(order_id: str, buyer_id: str, sellers: list[str]) -> OrderCancelled:
    return OrderCancelled(
        order_id=order_id, buyer_id=buyer_id, seller_ids=sellers, reason="payment declined"
    )


@pytest.fixture(params=["inprocess", "http"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    runtime = await start_runtime(tmp_path, request.param, step=0.05)
    try:
        yield World(runtime, request.param, tmp_path)
    finally:
        await runtime.stop()


async def new_order(world: World, sellers: tuple[str, ...] = ("s1", "s2")) -> tuple[str, str]:
    order_id, buyer_id = new_id(), new_id()
    await world.api.create_shipments(
        SYSTEM, order_id, buyer_id, ADDRESS, [parcel(s, f"{s}-item") for s in sellers]
    )
    return order_id, buyer_id


def statuses(shipments: list[Shipment]) -> list[str]:
    return [shipment.status for shipment in shipments]


async def all_in(world: World, order_id: str, status: str) -> bool:
    shipments = await world.api.shipments_for_order(SYSTEM, order_id)
    return all(shipment.status == status for shipment in shipments)


# Creating shipments.


async def test_one_pending_shipment_per_seller(world: World):
    order_id, buyer_id = new_id(), new_id()
    requests = [parcel("s2", "a", "b"), parcel("s1", "c"), parcel("s3", "d")]
    shipments = await world.api.create_shipments(SYSTEM, order_id, buyer_id, ADDRESS, requests)
    assert sorted(s.seller_id for s in shipments) == ["s1", "s2", "s3"]
    assert len({s.id for s in shipments}) == 3
    by_seller = {s.seller_id: s for s in shipments}
    assert [line.listing_id for line in by_seller["s2"].lines] == ["a", "b"]
    for shipment in shipments:
        assert shipment.status == "pending"
        assert shipment.order_id == order_id and shipment.buyer_id == buyer_id
        assert shipment.address == ADDRESS
        assert [t.status for t in shipment.tracking] == ["pending"]
    # Nothing is announced until the order completes.
    assert await world.outbox_events() == []


async def test_creating_again_returns_the_same_shipments(world: World):
    order_id, buyer_id = new_id(), new_id()
    requests = [parcel("s1", "a"), parcel("s2", "b")]
    first = await world.api.create_shipments(SYSTEM, order_id, buyer_id, ADDRESS, requests)
    again = await world.api.create_shipments(SYSTEM, order_id, buyer_id, ADDRESS, requests)
    assert again == first
    # Concurrent repeats (a saga step retried while the first is in flight) make one set.
    racing = await asyncio.gather(
        *(
            world.api.create_shipments(SYSTEM, "order-race", buyer_id, ADDRESS, requests)
            for _ in range(5)
        )
    )
    assert all(result == racing[0] for result in racing)
    assert len(racing[0]) == 2
    audit = await world.api.audit(SYSTEM)
    assert audit.shipments == 4


async def test_an_undeliverable_address_writes_nothing(world: World):
    order_id = new_id()
    nowhere = msgspec.structs.replace(ADDRESS, postcode="00000")
    with pytest.raises(Undeliverable) as caught:
        await world.api.create_shipments(
            SYSTEM, order_id, "b1", nowhere, [parcel("s1", "a"), parcel("s2", "b")]
        )
    assert caught.value.status == 422
    assert await world.api.shipments_for_order(SYSTEM, order_id) == []
    assert (await world.api.audit(SYSTEM)).shipments == 0


@pytest.mark.parametrize(
    "requests",
    [
        [],
        [parcel("s1", "a"), parcel("s1", "b")],
        [parcel("", "a")],
        [ShipmentRequest(seller_id="s1", lines=[])],
        [ShipmentRequest(seller_id="s1", lines=[ZERO_QUANTITY])],
    ],
    ids=["no-sellers", "seller-twice", "blank-seller", "no-lines", "zero-quantity"],
)
async def test_bad_shipment_requests_are_refused(world: World, requests):
    with pytest.raises(InvalidInput):
        await world.api.create_shipments(SYSTEM, new_id(), "b1", ADDRESS, requests)
    assert (await world.api.audit(SYSTEM)).shipments == 0


async def test_a_malformed_address_is_refused_in_either_binding(world: World):
    bad = msgspec.structs.replace(ADDRESS, country="gb")
    with pytest.raises(InvalidInput):
        await world.api.create_shipments(SYSTEM, new_id(), "b1", bad, [parcel("s1", "a")])


async def test_only_the_system_creates_shipments(world: World):
    for actor in (ADMIN, Actor(id="b1", role="buyer"), Actor(id="s1", role="seller")):
        with pytest.raises(Forbidden):
            await world.api.create_shipments(actor, new_id(), "b1", ADDRESS, [parcel("s1", "a")])


# The courier.


async def test_the_courier_takes_a_completed_order_to_delivered(world: World):
    order_id, buyer_id = await new_order(world)
    await world.publish(completed(order_id, buyer_id))
    await eventually(lambda: all_in(world, order_id, "delivered"))
    shipments = await world.api.shipments_for_order(SYSTEM, order_id)
    for shipment in shipments:
        assert [t.status for t in shipment.tracking] == ["pending", *COURIER_STATES]
        times = [t.at for t in shipment.tracking]
        assert times == sorted(times)
    events = await world.outbox_events()
    for shipment in shipments:
        mine = [e for e in events if e.shipment_id == shipment.id]
        assert [e.status for e in mine] == COURIER_STATES
        assert {(e.order_id, e.buyer_id, e.seller_id) for e in mine} == {
            (order_id, buyer_id, shipment.seller_id)
        }
    audit = await world.api.audit(ADMIN)
    assert audit.by_status["delivered"] == 2 and audit.shipments == 2
    assert await world.dead_letters() == 0


async def test_order_completed_twice_hands_over_once(world: World):
    order_id, buyer_id = await new_order(world, ("s1",))
    message_id = new_id()
    await world.publish(completed(order_id, buyer_id), message_id)
    await world.publish(completed(order_id, buyer_id), message_id)
    await eventually(lambda: all_in(world, order_id, "delivered"))
    # Even a second, distinct OrderCompleted finds nothing pending to hand over.
    await world.publish(completed(order_id, buyer_id))
    [shipment] = await world.api.shipments_for_order(SYSTEM, order_id)
    assert [t.status for t in shipment.tracking] == ["pending", *COURIER_STATES]
    assert [e.status for e in await world.outbox_events()] == COURIER_STATES


async def test_a_restarted_courier_resumes_where_it_stopped(tmp_path: Path):
    # Slow steps, so the stop lands mid-way through the journey.
    runtime = await start_runtime(tmp_path, "inprocess", step=0.25)
    world = World(runtime, "inprocess", tmp_path)
    try:
        order_id, buyer_id = await new_order(world)
        await world.publish(completed(order_id, buyer_id))
        await eventually(lambda: all_in(world, order_id, "picked_up"))
    finally:
        await runtime.stop()

    runtime = await start_runtime(tmp_path, "inprocess", step=0.25)
    world = World(runtime, "inprocess", tmp_path)
    try:
        before = await world.api.shipments_for_order(SYSTEM, order_id)
        assert "delivered" not in statuses(before)
        await eventually(lambda: all_in(world, order_id, "delivered"))
        for shipment in await world.api.shipments_for_order(SYSTEM, order_id):
            assert [t.status for t in shipment.tracking] == ["pending", *COURIER_STATES]
        counts = Counter((e.shipment_id, e.status) for e in await world.outbox_events())
        assert len(counts) == 2 * len(COURIER_STATES) and set(counts.values()) == {1}
    finally:
        await runtime.stop()


class Interleaving:
    """The delivery database, but every read yields to the loop after it: two couriers then
    both see the same due rows before either claims one, as replicas would on a real server."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    async def fetch_all(self, sql: str, params: Any = ()) -> list[Any]:
        rows = await self._db.fetch_all(sql, params)
        await asyncio.sleep(0)
        return rows


async def test_two_couriers_never_take_the_same_step_twice(tmp_path: Path):
    step = 0.02
    runtime = await start_runtime(tmp_path, "inprocess", step=step)
    world = World(runtime, "inprocess", tmp_path)
    service = runtime.services["delivery"]
    await service.courier.stop()  # the two replicas below do the work, in lockstep
    db = Interleaving(runtime.databases["delivery"])
    replicas = [Courier(db, service.outbox, step), Courier(db, service.outbox, step)]
    try:
        orders = [await new_order(world, ("s1", "s2", "s3")) for _ in range(5)]
        for order_id, buyer_id in orders:
            await world.publish(completed(order_id, buyer_id))
        for _ in COURIER_STATES[1:]:
            await asyncio.sleep(step * 1.5)
            advanced = await asyncio.gather(*(courier.advance_due() for courier in replicas))
            assert sum(advanced) == 15, advanced
        for order_id, _ in orders:
            assert await all_in(world, order_id, "delivered")
        counts = Counter((e.shipment_id, e.status) for e in await world.outbox_events())
        assert len(counts) == 15 * len(COURIER_STATES) and set(counts.values()) == {1}
    finally:
        await runtime.stop()


# Cancelling.


async def test_cancel_before_pickup(world: World):
    order_id, buyer_id = await new_order(world)
    buyer = Actor(id=buyer_id, role="buyer")
    shipments = await world.api.cancel_shipments(buyer, order_id)
    assert statuses(shipments) == ["cancelled", "cancelled"]
    assert [t.status for t in shipments[0].tracking] == ["pending", "cancelled"]
    # Twice is fine, and cancelled stays cancelled: completing the order hands nothing over.
    assert await world.api.cancel_shipments(SYSTEM, order_id) == shipments
    await world.publish(completed(order_id, buyer_id))
    await asyncio.sleep(0.12)
    assert await world.api.shipments_for_order(SYSTEM, order_id) == shipments
    assert [e.status for e in await world.outbox_events()] == ["cancelled", "cancelled"]
    # An order without shipments cancels to nothing.
    assert await world.api.cancel_shipments(SYSTEM, new_id()) == []


async def test_cancel_with_the_label_printed_stops_the_courier(tmp_path: Path):
    runtime = await start_runtime(tmp_path, "inprocess", step=0.2)
    world = World(runtime, "inprocess", tmp_path)
    try:
        order_id, buyer_id = await new_order(world)
        await world.publish(completed(order_id, buyer_id))
        assert statuses(await world.api.shipments_for_order(SYSTEM, order_id)) == [
            "label_created",
            "label_created",
        ]
        shipments = await world.api.cancel_shipments(SYSTEM, order_id)
        assert statuses(shipments) == ["cancelled", "cancelled"]
        await asyncio.sleep(0.3)  # past the step the courier would have taken
        assert await world.api.shipments_for_order(SYSTEM, order_id) == shipments
    finally:
        await runtime.stop()


async def test_cancel_after_pickup_is_a_conflict(world: World):
    order_id, buyer_id = await new_order(world, ("s1",))
    await world.publish(completed(order_id, buyer_id))
    await eventually(lambda: all_in(world, order_id, "delivered"))
    with pytest.raises(Conflict):
        await world.api.cancel_shipments(Actor(id=buyer_id, role="buyer"), order_id)
    assert statuses(await world.api.shipments_for_order(SYSTEM, order_id)) == ["delivered"]


async def test_order_cancelled_event_cancels_once(world: World):
    order_id, buyer_id = await new_order(world)
    message_id = new_id()
    event = cancelled(order_id, buyer_id, ["s1", "s2"])
    await world.publish(event, message_id)
    await world.publish(event, message_id)
    shipments = await world.api.shipments_for_order(SYSTEM, order_id)
    assert statuses(shipments) == ["cancelled", "cancelled"]
    assert [t.status for t in shipments[0].tracking] == ["pending", "cancelled"]
    assert "payment declined" in shipments[0].tracking[-1].note
    assert [e.status for e in await world.outbox_events()] == ["cancelled", "cancelled"]
    # A late cancellation of a delivered order changes nothing and dead-letters nothing.
    other_id, other_buyer = await new_order(world, ("s1",))
    await world.publish(completed(other_id, other_buyer))
    await eventually(lambda: all_in(world, other_id, "delivered"))
    await world.publish(cancelled(other_id, other_buyer, ["s1"]))
    assert statuses(await world.api.shipments_for_order(SYSTEM, other_id)) == ["delivered"]
    assert await world.dead_letters() == 0


async def test_who_may_cancel(world: World):
    order_id, _ = await new_order(world)
    for actor in (
        Actor(id="someone-else", role="buyer"),
        Actor(id="s1", role="seller"),
        ADMIN,
    ):
        with pytest.raises(Forbidden):
            await world.api.cancel_shipments(actor, order_id)
    assert statuses(await world.api.shipments_for_order(SYSTEM, order_id)) == [
        "pending",
        "pending",
    ]


# Who sees what.


async def test_who_sees_which_shipments(world: World):
    order_id, buyer_id = await new_order(world, ("s1", "s2"))
    everything = await world.api.shipments_for_order(SYSTEM, order_id)
    assert await world.api.shipments_for_order(Actor(id=buyer_id, role="buyer"), order_id) == (
        everything
    )
    assert await world.api.shipments_for_order(ADMIN, order_id) == everything
    mine = await world.api.shipments_for_order(Actor(id="s2", role="seller"), order_id)
    assert [s.seller_id for s in mine] == ["s2"]
    for stranger in (Actor(id="other", role="buyer"), Actor(id="s9", role="seller")):
        with pytest.raises(Forbidden):
            await world.api.shipments_for_order(stranger, order_id)
    unknown = new_id()
    assert await world.api.shipments_for_order(SYSTEM, unknown) == []
    for actor in (Actor(id=buyer_id, role="buyer"), ADMIN):
        with pytest.raises(NotFound):
            await world.api.shipments_for_order(actor, unknown)


async def test_audit_is_for_the_system_and_admins(world: World):
    await new_order(world, ("s1",))
    audit = await world.api.audit(SYSTEM)
    assert audit.shipments == 1 and audit.by_status["pending"] == 1
    assert set(audit.by_status) == {
        "pending",
        "label_created",
        "picked_up",
        "in_transit",
        "delivered",
        "cancelled",
    }
    with pytest.raises(Forbidden):
        await world.api.audit(Actor(id="b1", role="buyer"))
