"""Notifications: the feed, e-mail through a real SMTP sink, and signed seller webhooks that
are retried, dead-lettered and replayed.

Events are handed to notifications' consumer as the broker would hand them. The API tests run
in both bindings, so errors are seen crossing HTTP too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.mail_sink import running_mail_sink
from colony.mail_sink.server import MailSink
from colony.platform.clock import utc_now_iso
from colony.platform.config import Settings
from colony.platform.errors import Forbidden, InvalidInput, NotFound
from colony.platform.ids import new_id
from colony.platform.messaging import Event, Message
from colony.platform.messaging.consumer import list_dead_letters
from colony.platform.messaging.message import owner_of
from colony.platform.runtime import Runtime, ServiceDefinition, Topology
from colony.platform.security import Actor
from colony.platform.web.server import HttpServer, free_port
from colony.services.delivery.api import ShipmentStatusChanged
from colony.services.identity.api import AccountRegistered
from colony.services.notifications import webhooks
from colony.services.notifications.api import SIGNATURE_HEADER, NotificationsApi
from colony.services.notifications.dispatcher import DeliveryGaveUp, backoff
from colony.services.notifications.service import NotificationsService
from colony.services.orders.api import OrderCancelled, OrderCompleted, OrderLine, OrderRefunded
from trust_support import AllowedCaller
from waiting import eventually

MIGRATIONS = Path(inspect.getfile(NotificationsService)).parent / "migrations"
BINDINGS = ["inprocess", "http"]
ATTEMPTS = 3


# The world: a mail sink, a webhook receiver, and notifications in a runtime


@dataclass
class Receiver:
    """A seller's webhook endpoint that records what it is sent and fails when told to."""

    server: HttpServer
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_with: int | None = None
    delay: float = 0.0

    @property
    def url(self) -> str:
        return self.server.url + "/hooks"


@pytest.fixture(scope="module")
async def sink() -> AsyncIterator[MailSink]:
    async with running_mail_sink(free_port(), free_port(), ":memory:") as running:
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async def hook(request: Request) -> Response:
        body = await request.body()
        recorder.requests.append(
            {"headers": dict(request.headers), "body": body, "at": time.monotonic()}
        )
        if recorder.delay:
            await asyncio.sleep(recorder.delay)
        return Response(status_code=recorder.fail_with or 204)

    app = Starlette(routes=[Route("/hooks", hook, methods=["POST"])])
    recorder = Receiver(HttpServer(app, "127.0.0.1", free_port()))
    await recorder.server.start()
    try:
        yield recorder
    finally:
        await recorder.server.stop()


@dataclass
class World:
    runtime: Runtime
    sink: MailSink
    receiver: Receiver

    @property
    def api(self) -> NotificationsApi:
        return AllowedCaller(self.runtime, NotificationsApi)

    @property
    def service(self) -> NotificationsService:
        return self.runtime.services["notifications"]  # type: ignore[no-any-return]

    @property
    def db(self) -> Any:
        return self.runtime.databases["notifications"]

    async def deliver(self, event: Event, message_id: str | None = None) -> str:
        message = message_for(event, message_id)
        await self.runtime.consumers["notifications"].deliver(message)
        return message.id

    async def register(self, role: str = "buyer", name: str = "Ada") -> Actor:
        account_id = new_id()
        await self.deliver(
            AccountRegistered(
                account_id=account_id, email=address_of(account_id), name=name, role=role
            )
        )
        return Actor(id=account_id, role=role)  # type: ignore[arg-type]

    async def mails_to(self, actor: Actor) -> list[Any]:
        return await self.sink.store.recent(to=address_of(actor.id))

    async def settled(self) -> None:
        """Nothing left to send: whatever was going to arrive has arrived."""
        await eventually(
            lambda: self.db.fetch_value(
                "SELECT COUNT(*) = 0 FROM deliveries WHERE status = 'pending'"
            )
        )


def message_for(event: Event, message_id: str | None = None) -> Message:
    return Message(
        id=message_id or new_id(),
        topic=event.topic,
        key="test",
        payload=msgspec.Raw(msgspec.json.encode(event)),
        created_at=utc_now_iso(),
        source=owner_of(event.topic),
    )


def address_of(account_id: str) -> str:
    return f"user-{account_id}@example.com"


@contextlib.asynccontextmanager
async def open_world(
    data_dir: Path, sink: MailSink, receiver: Receiver, binding: str = "inprocess", **settings: Any
) -> AsyncIterator[World]:
    topology = (
        Topology.one_process()
        if binding == "inprocess"
        else Topology.local_over_http({"notifications": free_port()})
    )
    runtime = Runtime(
        Settings(
            data_dir=data_dir,
            **{
                "smtp_port": sink.smtp_port,
                "webhook_attempts": ATTEMPTS,
                # The receiver listens on this machine, which a seller's URL may not reach.
                "internal_hosts_allowed": "127.0.0.1",
                **settings,
            },
        ),
        [ServiceDefinition("notifications", NotificationsApi, NotificationsService, MIGRATIONS)],
        topology,
    )
    await runtime.start()
    world = World(runtime, sink, receiver)
    dispatcher = world.service.dispatcher
    dispatcher.backoff_base, dispatcher.backoff_cap = 0.05, 0.5
    try:
        yield world
    finally:
        await runtime.stop()


@pytest.fixture(params=BINDINGS)
async def world(
    request: pytest.FixtureRequest, tmp_path: Path, sink: MailSink, receiver: Receiver
) -> AsyncIterator[World]:
    async with open_world(tmp_path, sink, receiver, request.param) as opened:
        yield opened


@pytest.fixture
async def local(tmp_path: Path, sink: MailSink, receiver: Receiver) -> AsyncIterator[World]:
    async with open_world(tmp_path, sink, receiver) as opened:
        yield opened


def line(seller: Actor, title: str = "Walnut desk lamp", quantity: int = 1) -> OrderLine:
    return OrderLine(
        listing_id=new_id(),
        seller_id=seller.id,
        title=title,
        quantity=quantity,
        unit_price_minor=2500,
        line_total_minor=2500 * quantity,
    )


def completed(buyer: Actor, *lines: OrderLine) -> OrderCompleted:
    return OrderCompleted(
        order_id=new_id(),
        buyer_id=buyer.id,
        lines=list(lines),
        total_minor=sum(item.line_total_minor for item in lines),
        currency="EUR",
    )


def verify_independently(secret: str, header: str, body: bytes) -> bool:
    """The receiver's side of the contract, written from the docstring, not from our code."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(
        secret.encode(), f"{parts['t']}.{body.decode()}".encode(), hashlib.sha256
    ).hexdigest()
    return abs(time.time() - int(parts["t"])) < 60 and hmac.compare_digest(parts["v1"], expected)


# The whole path: event → feed, mail, webhook


async def test_a_completed_order_mails_feeds_and_signs_a_webhook(world):
    buyer = await world.register("buyer", name="Ada")
    seller = await world.register("seller", name="Grace")
    other = await world.register("seller", name="Linus")
    endpoint = await world.api.set_webhook(seller, world.receiver.url)

    order = completed(buyer, line(seller, "Lamp", 2), line(seller, "Shade"), line(other, "Desk"))
    await world.deliver(order)

    (mail,) = await eventually(lambda: world.mails_to(buyer))
    assert "confirmed" in mail.subject and mail.message_id
    full = await world.sink.store.get(mail.id)
    assert full is not None and "Hello Ada," in full.text and "100.00 EUR" in full.text
    (seller_mail,) = await eventually(lambda: world.mails_to(seller))
    assert "New order" in seller_mail.subject
    assert await eventually(lambda: world.mails_to(other))

    buyer_feed = await world.api.feed(buyer)
    assert [n.kind for n in buyer_feed.items] == ["order.completed"] and buyer_feed.unread == 1
    assert buyer_feed.items[0].link == f"/orders/{order.order_id}"
    seller_feed = await world.api.feed(seller)
    assert [n.kind for n in seller_feed.items] == ["sale.received"]
    assert "2 x Lamp" in seller_feed.items[0].body and "Desk" not in seller_feed.items[0].body

    await eventually(lambda: asyncio.sleep(0, world.receiver.requests))
    (hook,) = world.receiver.requests
    assert verify_independently(
        endpoint.secret, hook["headers"][SIGNATURE_HEADER.lower()], hook["body"]
    )
    body = json.loads(hook["body"])
    assert set(body) == {"id", "type", "created_at", "data"}
    assert body["id"] == hook["headers"]["x-colony-event-id"] and body["type"] == "order.completed"
    assert body["data"]["order_id"] == order.order_id and body["data"]["seller_id"] == seller.id
    assert [item["title"] for item in body["data"]["lines"]] == ["Lamp", "Shade"]
    assert body["data"]["subtotal_minor"] == 7500

    await world.settled()
    (delivery,) = await world.api.webhook_deliveries(seller)
    assert (delivery.status, delivery.attempts, delivery.event) == (
        "delivered",
        1,
        "order.completed",
    )
    assert delivery.id == body["id"] and delivery.url == world.receiver.url
    assert await world.api.webhook_deliveries(other) == []  # no endpoint, no webhook


async def test_the_same_event_twice_notifies_once(local):
    buyer = await local.register("buyer")
    seller = await local.register("seller")
    await local.api.set_webhook(seller, local.receiver.url)
    order = completed(buyer, line(seller))

    message_id = await local.deliver(order)
    await local.deliver(order, message_id)  # redelivered: the inbox absorbs it
    await local.deliver(order)  # republished under another id: the derived row ids absorb it
    await local.settled()
    await local.deliver(order)  # and again after everything was sent
    await local.settled()

    assert len(await local.mails_to(buyer)) == 1
    assert len(await local.mails_to(seller)) == 1
    assert len((await local.api.feed(buyer)).items) == 1
    assert len((await local.api.feed(seller)).items) == 1
    assert len(local.receiver.requests) == 1
    assert await local.db.fetch_value("SELECT COUNT(*) FROM deliveries") == 3


# Webhooks that fail


@pytest.fixture
async def unbroken(tmp_path: Path, sink: MailSink, receiver: Receiver) -> AsyncIterator[World]:
    """A world whose breaker for the receiver never opens: for tests of the dispatcher's own
    schedule, which an open circuit would cut short (see the tests of breakers below)."""
    never = {"breaker.consecutive_failures": 10**6, "breaker.minimum_calls": 10**6}
    overrides = {f"webhooks:{receiver.server.url}": never}
    async with open_world(tmp_path, sink, receiver, resilience=overrides) as opened:
        yield opened


async def test_a_failing_webhook_backs_off_dies_and_is_replayed(unbroken):
    local = unbroken
    buyer = await local.register("buyer")
    seller = await local.register("seller")
    await local.api.set_webhook(seller, local.receiver.url)
    local.receiver.fail_with = 500

    await local.deliver(completed(buyer, line(seller)))

    async def status() -> str:
        deliveries = await local.api.webhook_deliveries(seller)
        return deliveries[0].status if deliveries else ""

    await eventually(lambda: _is(status, "dead"))
    (dead,) = await local.api.webhook_deliveries(seller)
    assert (dead.attempts, dead.last_error) == (ATTEMPTS, "failed (HTTP 500)")
    hooks = local.receiver.requests
    assert len(hooks) == ATTEMPTS
    assert {h["headers"]["x-colony-event-id"] for h in hooks} == {dead.id}
    gaps = [later["at"] - earlier["at"] for earlier, later in itertools.pairwise(hooks)]
    # Equal jitter: at least half of 0.05 s, then half of 0.1 s.
    assert gaps[0] >= 0.024 and gaps[1] >= 0.049, gaps
    assert await local.mails_to(buyer)  # the mail went out regardless

    (letter,) = await list_dead_letters(local.db)
    assert (letter.consumer, letter.topic) == ("notifications", DeliveryGaveUp.topic)
    assert (letter.attempts, letter.error) == (ATTEMPTS, "HTTP 500")
    assert letter.message.decode(DeliveryGaveUp).delivery_id == dead.id

    # Replayed while the receiver still fails: a fresh budget, spent, and a new dead letter.
    consumer = local.runtime.consumers["notifications"]
    assert await consumer.replay(letter.id)
    await eventually(lambda: _is(status, "pending"), within=1)
    await eventually(lambda: _is(status, "dead"))
    assert len(local.receiver.requests) == 2 * ATTEMPTS
    (again,) = await list_dead_letters(local.db)
    assert again.id != letter.id

    local.receiver.fail_with = None
    assert await consumer.replay(again.id)
    await eventually(lambda: _is(status, "delivered"))
    (delivered,) = await local.api.webhook_deliveries(seller)
    assert delivered.attempts == 2 * ATTEMPTS + 1
    assert len(local.receiver.requests) == 2 * ATTEMPTS + 1
    assert await list_dead_letters(local.db) == []
    # Replaying an already replayed letter changes nothing.
    assert await consumer.replay(again.id)
    await local.settled()
    assert len(local.receiver.requests) == 2 * ATTEMPTS + 1


async def _is(read: Callable[[], Awaitable[str]], expected: str) -> bool:
    return await read() == expected


async def test_a_send_cut_short_by_a_stop_is_sent_again_after_restart(tmp_path, sink, receiver):
    receiver.delay = 0.5
    async with open_world(tmp_path, sink, receiver) as world:
        buyer = await world.register("buyer")
        seller = await world.register("seller")
        await world.api.set_webhook(seller, receiver.url)
        await world.deliver(completed(buyer, line(seller)))
        await eventually(lambda: asyncio.sleep(0, receiver.requests))
    # Stopped while the receiver was answering: not marked delivered, so sent again.
    receiver.delay = 0
    async with open_world(tmp_path, sink, receiver) as world:
        await world.settled()
        (delivery,) = await world.api.webhook_deliveries(seller)
        assert delivery.status == "delivered"
    assert len(receiver.requests) == 2
    assert len({r["headers"]["x-colony-event-id"] for r in receiver.requests}) == 1


# E-mail that cannot go yet


async def test_a_mail_waits_for_its_recipients_address(local):
    buyer_id, seller = new_id(), await local.register("seller")
    await local.deliver(completed(Actor(id=buyer_id, role="buyer"), line(seller)))
    await eventually(
        lambda: local.db.fetch_value(
            "SELECT awaiting_recipient FROM deliveries WHERE recipient_id = ?", (buyer_id,)
        )
    )
    assert await local.sink.store.recent(to=address_of(buyer_id)) == []

    started = time.monotonic()
    await local.deliver(
        AccountRegistered(account_id=buyer_id, email=address_of(buyer_id), name="Ada", role="buyer")
    )
    assert await eventually(lambda: local.sink.store.recent(to=address_of(buyer_id)))
    # Woken by the registration, not by the minute-long recheck.
    assert time.monotonic() - started < local.service.dispatcher.recipient_wait / 10


async def test_a_mail_is_retried_until_the_smtp_server_answers(tmp_path, sink, receiver):
    smtp_port = free_port()
    async with open_world(tmp_path, sink, receiver, smtp_port=smtp_port) as world:
        world.service.dispatcher.mail_attempts = 1000
        world.service.dispatcher.backoff_cap = 0.1
        buyer = await world.register("buyer")
        await world.deliver(completed(buyer, line(Actor(id=new_id(), role="seller"))))
        await eventually(
            lambda: world.db.fetch_value(
                "SELECT attempts >= 2 AND last_error LIKE 'SMTP%' FROM deliveries"
                " WHERE recipient_id = ?",
                (buyer.id,),
            )
        )
        async with running_mail_sink(smtp_port, free_port()) as late:
            assert await eventually(lambda: late.store.recent(to=address_of(buyer.id)))


# Dependencies that keep failing: their circuits open, and nothing waiting on them is lost


@dataclass
class BrokenServer:
    """Accepts connections and closes them at once (a mail server that is broken), counting
    how often it is tried."""

    port: int
    connections: int = 0


@contextlib.asynccontextmanager
async def broken_server(port: int) -> AsyncIterator[BrokenServer]:
    broken = BrokenServer(port)

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        broken.connections += 1
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", port)
    try:
        yield broken
    finally:
        server.close()
        await server.wait_closed()


async def test_a_failing_mail_server_is_held_back_and_its_mail_kept(tmp_path, sink, receiver):
    smtp_port = free_port()
    breaker = {"breaker.consecutive_failures": 3, "breaker.open_seconds": 1.0}
    settings = {"smtp_port": smtp_port, "resilience": {"smtp": breaker}}
    async with open_world(tmp_path, sink, receiver, **settings) as world:
        dispatcher = world.service.dispatcher
        dispatcher.mail_attempts, dispatcher.backoff_cap = 1000, 0.02
        smtp = world.service.smtp.dependency
        buyer = await world.register("buyer")
        async with broken_server(smtp_port) as broken:
            await world.deliver(completed(buyer, line(Actor(id=new_id(), role="seller"))))
            await eventually(lambda: asyncio.sleep(0, smtp.state == "open"))
            assert broken.connections == 3
            # Open: each attempt on the dispatcher's schedule fails at once, without
            # connecting, and the mail stays queued for the next one.
            attempts, status, error = await eventually(
                lambda: _held_back(world, buyer.id, "email", more_than=6), within=1
            )
            assert status == "pending" and error.startswith(f"SMTP 127.0.0.1:{smtp_port}: ")
            assert broken.connections == 3

        # The server is back: once the circuit lets a probe through, the mail goes out, once.
        async with running_mail_sink(smtp_port, free_port()) as late:
            final, _, _ = await eventually(lambda: _delivered(world, buyer.id, "email"))
            assert final > attempts
            assert len(await late.store.recent(to=address_of(buyer.id))) == 1
        assert smtp.state == "closed"


async def test_a_sellers_failing_endpoint_is_held_back_and_its_webhook_kept(
    tmp_path, sink, receiver
):
    breaker = {"breaker.consecutive_failures": 2, "breaker.open_seconds": 1.0}
    settings = {"webhook_attempts": 50, "resilience": {f"webhooks:{receiver.server.url}": breaker}}
    async with open_world(tmp_path, sink, receiver, **settings) as world:
        buyer, seller = await world.register("buyer"), await world.register("seller")
        await world.api.set_webhook(seller, receiver.url)
        receiver.fail_with = 503
        await world.deliver(completed(buyer, line(seller)))

        # Two posts failed and opened the seller's circuit; the next attempt was held back
        # without a post, and the webhook stays queued for the dispatcher's next attempt.
        # The seller reads that it failed, not why.
        await eventually(lambda: _attempted_without_posting(world, seller.id, 2), within=1)
        assert len(receiver.requests) == 2
        (held,) = await world.api.webhook_deliveries(seller)
        assert (held.status, held.last_error) == ("pending", "failed")

        receiver.fail_with = None
        await world.settled()
        (delivery,) = await world.api.webhook_deliveries(seller)
        assert delivery.status == "delivered" and delivery.attempts > 3
        assert len(receiver.requests) == 3  # the two that failed, and the probe that did not


async def _delivery(world: World, recipient_id: str, channel: str) -> tuple[int, str, str]:
    """The recipient's delivery on ``channel``: its attempts, status and last error."""
    row = await world.db.fetch_one(
        "SELECT attempts, status, last_error FROM deliveries WHERE recipient_id = ?"
        " AND channel = ?",
        (recipient_id, channel),
    )
    assert row is not None
    return row["attempts"], row["status"], row["last_error"] or ""


async def _held_back(
    world: World, recipient_id: str, channel: str, more_than: int
) -> tuple[int, str, str] | None:
    """The delivery, once its last attempt found the circuit open after ``more_than``."""
    attempts, status, error = await _delivery(world, recipient_id, channel)
    return (attempts, status, error) if attempts > more_than and "held back" in error else None


async def _attempted_without_posting(world: World, seller_id: str, posts: int) -> bool:
    """The seller's webhook was attempted more often than its receiver was posted to."""
    attempts, _, _ = await _delivery(world, seller_id, "webhook")
    return attempts > posts and len(world.receiver.requests) == posts


async def _delivered(world: World, recipient_id: str, channel: str) -> tuple[int, str, str] | None:
    delivery = await _delivery(world, recipient_id, channel)
    return delivery if delivery[1] == "delivered" else None


# Other events


async def test_shipment_updates_feed_the_buyer_and_mail_the_big_steps(local):
    buyer = await local.register("buyer")
    seller = await local.register("seller")
    shipment_id, order_id = new_id(), new_id()
    for status in ("pending", "label_created", "picked_up", "in_transit", "delivered"):
        await local.deliver(
            ShipmentStatusChanged(
                shipment_id=shipment_id,
                order_id=order_id,
                seller_id=seller.id,
                buyer_id=buyer.id,
                status=status,  # type: ignore[arg-type]
                at=utc_now_iso(),
            )
        )
    await local.settled()
    feed = await local.api.feed(buyer)
    assert [n.kind for n in feed.items] == [
        "shipment.delivered",
        "shipment.in_transit",
        "shipment.picked_up",
        "shipment.label_created",
    ]
    subjects = sorted(m.subject for m in await local.mails_to(buyer))
    assert len(subjects) == 2 and "Delivered" in subjects[0] and "shipped" in subjects[1]
    assert (await local.api.feed(seller)).items == []


async def test_cancellations_and_refunds_reach_buyer_and_sellers(local):
    buyer = await local.register("buyer")
    hooked, plain = await local.register("seller"), await local.register("seller")
    await local.api.set_webhook(hooked, local.receiver.url)
    order_id = new_id()
    await local.deliver(
        OrderCancelled(
            order_id=order_id,
            buyer_id=buyer.id,
            seller_ids=[hooked.id, plain.id],
            reason="the buyer changed their mind",
        )
    )
    await local.deliver(
        OrderRefunded(
            order_id=order_id,
            buyer_id=buyer.id,
            seller_id=hooked.id,
            amount_minor=1250,
            currency="EUR",
        )
    )
    await local.settled()
    assert [n.kind for n in (await local.api.feed(buyer)).items] == [
        "order.refunded",
        "order.cancelled",
    ]
    assert [n.kind for n in (await local.api.feed(hooked)).items] == [
        "sale.refunded",
        "sale.cancelled",
    ]
    assert [n.kind for n in (await local.api.feed(plain)).items] == ["sale.cancelled"]
    bodies = [json.loads(r["body"]) for r in local.receiver.requests]
    assert sorted(b["type"] for b in bodies) == ["order.cancelled", "order.refunded"]
    refund = next(b for b in bodies if b["type"] == "order.refunded")
    assert refund["data"] == {
        "order_id": order_id,
        "seller_id": hooked.id,
        "amount_minor": 1250,
        "currency": "EUR",
    }
    assert len(await local.mails_to(buyer)) == 2 and len(await local.mails_to(plain)) == 1


# The API: access and validation


async def test_a_feed_is_its_owners_own(world):
    ada, bob = await world.register("buyer"), await world.register("buyer")
    seller = await world.register("seller")
    await world.deliver(completed(ada, line(seller)))
    (note,) = (await world.api.feed(ada)).items
    assert not note.read
    assert (await world.api.feed(bob)).items == []

    with pytest.raises(Forbidden):
        await world.api.mark_read(bob, note.id)
    with pytest.raises(NotFound):
        await world.api.mark_read(ada, "no-such-notification")
    read = await world.api.mark_read(ada, note.id)
    assert read.read and read.id == note.id
    assert (await world.api.mark_read(ada, note.id)).read  # twice is fine
    feed = await world.api.feed(ada)
    assert feed.unread == 0 and feed.items[0].read
    with pytest.raises(InvalidInput):
        await world.api.feed(ada, limit=0)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "not a url", "http://", "http://:8080/x", "http://h:port/"]
)
async def test_a_webhook_url_must_be_http(world, url):
    seller = Actor(id=new_id(), role="seller")
    with pytest.raises(InvalidInput):
        await world.api.set_webhook(seller, url)


async def test_only_sellers_have_webhooks_and_the_secret_is_kept(world):
    seller, buyer = Actor(id=new_id(), role="seller"), Actor(id=new_id(), role="buyer")
    with pytest.raises(NotFound):
        await world.api.get_webhook(seller)
    with pytest.raises(Forbidden):
        await world.api.set_webhook(buyer, "https://example.com/hook")
    with pytest.raises(Forbidden):
        await world.api.webhook_deliveries(buyer)

    first = await world.api.set_webhook(seller, "https://example.com/hook")
    assert len(first.secret) == 64 and int(first.secret, 16) >= 0
    moved = await world.api.set_webhook(seller, "https://hooks.example.com/colony")
    assert moved.secret == first.secret and moved.created_at == first.created_at
    assert await world.api.get_webhook(seller) == moved
    assert moved.url == "https://hooks.example.com/colony"
    other = await world.api.set_webhook(Actor(id=new_id(), role="seller"), first.url)
    assert other.secret != first.secret
    assert await world.api.webhook_deliveries(seller) == []


# The pieces


def test_backoff_doubles_up_to_its_cap_with_jitter():
    rng = random.Random(7)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 30.0)]:
        waits = [backoff(failures, 1.0, 30.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert max(waits) - min(waits) > ceiling / 4  # jittered, not fixed


@pytest.mark.parametrize(
    ("url", "origin", "path", "authorization"),
    [
        ("https://Shop.example/hooks?v=2", "https://shop.example", "/hooks?v=2", None),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080", "/", None),
        ("http://[::1]:9000/h", "http://[::1]:9000", "/h", None),
        (
            "https://a%40b:s3cret@shop.example/h",
            "https://shop.example",
            "/h",
            "Basic YUBiOnMzY3JldA==",
        ),
    ],
)
def test_a_webhook_url_is_posted_to_its_origins_dependency(url, origin, path, authorization):
    # The origin names the dependency (its breaker, in logs and metrics): no credentials in it.
    assert webhooks._split(url) == (origin, path, authorization)


def test_signatures_verify_and_refuse_tampering():
    body = b'{"id":"x"}'
    header = webhooks.signature_header("s3cret", body)
    assert webhooks.verify("s3cret", header, body)
    assert verify_independently("s3cret", header, body)
    assert not webhooks.verify("s3cret", header, body + b" ")
    assert not webhooks.verify("other", header, body)
    stale = webhooks.signature_header("s3cret", body, timestamp=int(time.time()) - 3600)
    assert not webhooks.verify("s3cret", stale, body)
    assert not webhooks.verify("s3cret", "garbage", body)
