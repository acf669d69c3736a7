"""Events over NATS JetStream: published in batches, deduplicated by message id, consumed by
competing replicas with one effect each, and parked after too many deliveries."""

from __future__ import annotations

import asyncio
import uuid
from typing import ClassVar

import msgspec
import nats
import pytest

from colony.platform.clock import utc_now_iso
from colony.platform.errors import CircuitOpen
from colony.platform.messaging import Consumer, Event, Outbox, OutboxRelay
from colony.platform.messaging.consumer import RetryPolicy, list_dead_letters
from colony.platform.messaging.jetstream import JetStreamBroker, JetStreamPolicy
from colony.platform.messaging.message import Message
from colony.platform.resilience import CallPolicy, Resilience
from colony.platform.storage.migrations import PLATFORM_MIGRATIONS, migrate
from colony.platform.storage.sqlite import SqliteDatabase
from nats_support import require_nats
from waiting import eventually


class Parcel(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "shop.parcel.sent"
    number: int


class Other(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "shop.parcel.weighed"
    number: int


@pytest.fixture
async def policy():
    """A stream of this test's own, deleted afterwards."""
    url = require_nats()
    tag = uuid.uuid4().hex[:8]
    policy = JetStreamPolicy(
        stream=f"TEST_{tag}", subject_prefix=f"test{tag}", ack_wait_seconds=1.0, max_deliver=2
    )
    yield policy
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(policy.stream)
    finally:
        await nc.close()


async def open_db(path, name: str) -> SqliteDatabase:
    db = SqliteDatabase(name, str(path / f"{name}.db"))
    await db.open()
    await migrate(db, "platform", PLATFORM_MIGRATIONS)
    await db.run_script("CREATE TABLE IF NOT EXISTS received (number INTEGER NOT NULL);")
    return db


class Receiver:
    def __init__(self, db: SqliteDatabase, hang: bool = False) -> None:
        self.db = db
        self.hang = hang

    async def on_parcel(self, event: Parcel) -> None:
        if self.hang:
            await asyncio.Event().wait()
        await self.db.execute("INSERT INTO received (number) VALUES (?)", (event.number,))

    def consumer(self) -> Consumer:
        return Consumer("receiver", self.db, {Parcel: self.on_parcel}, RetryPolicy(attempts=1))


async def received(db: SqliteDatabase, expected: int, within: float = 10.0) -> list[int]:
    async def arrived() -> bool:
        return bool(await db.fetch_value("SELECT count(*) FROM received") >= expected)

    await eventually(arrived, within)
    await asyncio.sleep(0.3)  # long enough for a duplicate to land, were there one
    rows = await db.fetch_all("SELECT number FROM received ORDER BY number")
    return [row[0] for row in rows]


async def test_a_batch_is_delivered_once_even_when_published_twice(tmp_path, policy):
    url = require_nats()
    source, sink = await open_db(tmp_path, "source"), await open_db(tmp_path, "sink")
    publisher = JetStreamBroker(url, "publisher", policy)
    subscriber = JetStreamBroker(url, "subscriber", policy)
    subscriber.subscribe(Receiver(sink).consumer())
    await publisher.start()
    await subscriber.start()
    try:
        outbox = Outbox(source, "shop")
        async with source.transaction():
            for number in range(50):
                await outbox.add(Parcel(number=number), key=str(number))
            await outbox.add(Other(number=99), key="99")  # no handler: acknowledged, skipped
        relay = OutboxRelay(outbox, publisher)
        batch = await relay.pending()
        await publisher.publish(batch)  # a relay that crashed before marking its rows ...
        assert await relay.drain() == 51  # ... publishes them again
        assert await received(sink, 50) == list(range(50))
    finally:
        await subscriber.stop()
        await publisher.stop()


async def test_replicas_compete_for_messages_with_one_effect_each(tmp_path, policy):
    url = require_nats()
    sink = await open_db(tmp_path, "sink")
    publisher = JetStreamBroker(url, "publisher", policy)
    replicas = [JetStreamBroker(url, f"replica-{i}", policy) for i in range(3)]
    for replica in replicas:
        # Each replica has its own connection to the one database, as separate processes do.
        db = await open_db(tmp_path, "sink")
        replica.subscribe(Receiver(db).consumer())
    await publisher.start()
    for replica in replicas:
        await replica.start()
    try:
        messages = [
            Message(
                id=uuid.uuid4().hex,
                topic=Parcel.topic,
                key=str(n),
                payload=msgspec.Raw(msgspec.json.encode(Parcel(number=n))),
                created_at=utc_now_iso(),
                source="shop",
            )
            for n in range(300)
        ]
        for start in range(0, 300, 100):
            await publisher.publish(messages[start : start + 100])
        assert await received(sink, 300) == list(range(300))
    finally:
        for replica in replicas:
            await replica.stop()
        await publisher.stop()


async def test_a_message_that_keeps_dying_with_its_consumer_is_dead_lettered(tmp_path, policy):
    url = require_nats()
    source, sink = await open_db(tmp_path, "source"), await open_db(tmp_path, "sink")
    publisher = JetStreamBroker(url, "publisher", policy)
    await publisher.start()
    outbox = Outbox(source, "shop")
    async with source.transaction():
        await outbox.add(Parcel(number=7), key="7")
    await OutboxRelay(outbox, publisher).drain()
    # The first replica takes the message and dies with it (never acknowledges) ...
    doomed = JetStreamBroker(url, "doomed", policy)
    doomed.subscribe(Receiver(sink, hang=True).consumer())
    await doomed.start()
    await asyncio.sleep(0.5)
    await doomed.stop()
    # ... so its last allowed delivery goes to the dead-letter store, not to the handler.
    survivor = JetStreamBroker(url, "survivor", policy)
    survivor.subscribe(Receiver(sink).consumer())
    await survivor.start()
    try:
        [letter] = await eventually(lambda: list_dead_letters(sink), within=10)
        assert letter.topic == Parcel.topic and letter.consumer == "receiver"
        assert await sink.fetch_value("SELECT count(*) FROM received") == 0
    finally:
        await survivor.stop()
        await publisher.stop()


async def test_publishes_go_through_the_brokers_breaker(policy):
    url = require_nats()
    resilience = Resilience(
        {"nats": CallPolicy(timeout=2.0, attempts=1)},
        {
            "nats": {
                "breaker.consecutive_failures": 2,
                "breaker.open_seconds": 30.0,
                "breaker.max_open_seconds": 30.0,
            }
        },
    )
    publisher = JetStreamBroker(url, "publisher", policy, resilience=resilience)
    await publisher.start()
    message = Message(
        id=uuid.uuid4().hex,
        topic=Parcel.topic,
        key="1",
        payload=msgspec.Raw(msgspec.json.encode(Parcel(number=1))),
        created_at=utc_now_iso(),
        source="shop",
    )
    try:
        await publisher.publish([message])
        dependency = resilience.dependencies["nats"]
        assert (dependency.calls, dependency.failures, dependency.state) == (1, 0, "closed")
        await publisher._nc.close()  # the connection gone, as with the server down
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await publisher.publish([message])
        assert dependency.state == "open"
        with pytest.raises(CircuitOpen):  # held back at once, the relay tries again later
            await publisher.publish([message])
    finally:
        await publisher.stop()
