"""Delivery faults through the in-process broker into a consumer with an inbox: duplicates,
shuffled windows and a slow consumer change when and how often messages arrive, never how
often their effect happens."""

from __future__ import annotations

import asyncio
import time

import pytest

from colony.platform import faults
from colony.platform.faults import Duplicate, Reorder, SlowConsumer
from colony.platform.messaging import Consumer, InProcessBroker, Outbox, OutboxRelay
from colony.platform.messaging.consumer import RetryPolicy
from colony.platform.storage.sqlite import SqliteDatabase
from messaging_support import Deposited, open_db


class Ledger:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self.applied: list[int] = []

    async def on_deposited(self, event: Deposited) -> None:
        self.applied.append(event.amount)
        await self.db.execute(
            "INSERT INTO balances (account, amount) VALUES (?, ?) ON CONFLICT (account)"
            " DO UPDATE SET amount = amount + excluded.amount",
            (event.account, event.amount),
        )

    async def balance(self, account: str) -> int:
        value = await self.db.fetch_value(
            "SELECT amount FROM balances WHERE account = ?", (account,)
        )
        return int(value or 0)


class World:
    def __init__(self, source: SqliteDatabase, sink: SqliteDatabase) -> None:
        self.ledger = Ledger(sink)
        self.consumer = Consumer(
            "sink",
            sink,
            {Deposited: self.ledger.on_deposited},
            RetryPolicy(attempts=2, wait_initial=0.001, wait_max=0.002),
        )
        broker = InProcessBroker()
        broker.subscribe(self.consumer)
        self.outbox = Outbox(source, "test")
        self.relay = OutboxRelay(self.outbox, broker)
        self.source = source
        self.deliveries: list[list[int]] = []
        real = self.consumer._deliver_all

        async def spy(messages):
            self.deliveries.append([m.decode(Deposited).amount for m in messages])
            await real(messages)

        self.consumer._deliver_all = spy  # type: ignore[method-assign]

    async def deposit(self, *amounts: int) -> None:
        async with self.source.transaction():
            for amount in amounts:
                await self.outbox.add(Deposited(account="a", amount=amount), key="a")


@pytest.fixture
async def world(tmp_path):
    faults.heal_all()
    source = await open_db(tmp_path, "source")
    sink = await open_db(tmp_path, "sink")
    yield World(source, sink)
    faults.heal_all()
    await source.close()
    await sink.close()


async def test_duplicate_delivery_has_one_effect(world):
    faults.install(Duplicate(consumer="sink"))
    await world.deposit(1, 2, 3)
    await world.relay.drain()
    await world.deposit(4)
    await world.relay.drain()
    # Every message came twice, the second time in a delivery of its own ...
    assert world.deliveries == [[1, 2, 3], [1, 2, 3], [4], [4]]
    # ... and was applied once.
    assert sorted(world.ledger.applied) == [1, 2, 3, 4]
    assert await world.ledger.balance("a") == 10


async def test_a_share_of_duplicates(world):
    faults._rng.seed(5)
    faults.install(Duplicate(consumer="sink", probability=0.5))
    for amount in range(1, 41):
        await world.deposit(amount)
        await world.relay.drain()
    assert 40 + 10 < sum(len(d) for d in world.deliveries) < 40 + 30
    assert await world.ledger.balance("a") == sum(range(1, 41))
    assert len(world.ledger.applied) == 40


async def test_another_consumer_is_untouched(world):
    faults.install(Duplicate(consumer="someone-else"))
    await world.deposit(1)
    await world.relay.drain()
    assert world.deliveries == [[1]]


async def test_reorder_shuffles_a_window_and_applies_each_once(world):
    faults._rng.seed(3)
    faults.install(Reorder(consumer="sink", window_ms=50))
    await world.deposit(*range(1, 21))
    started = time.perf_counter()
    await world.relay.drain()
    assert time.perf_counter() - started >= 0.045  # held for the window
    assert world.ledger.applied != list(range(1, 21))
    assert sorted(world.ledger.applied) == list(range(1, 21))
    assert await world.ledger.balance("a") == sum(range(1, 21))


async def test_deliveries_within_a_window_are_delivered_together(world):
    faults._rng.seed(11)
    faults.install(Reorder(consumer="sink", window_ms=50))
    await world.deposit(1, 2, 3)
    await world.deposit(4, 5, 6)
    pending = await world.relay.pending()
    first, second = pending[:3], pending[3:]
    await asyncio.gather(world.consumer.deliver_all(first), world.consumer.deliver_all(second))
    assert len(world.deliveries) == 1 and sorted(world.deliveries[0]) == [1, 2, 3, 4, 5, 6]
    assert await world.ledger.balance("a") == 21


async def test_a_window_whose_delivery_is_cancelled_fails_every_waiting_delivery(world):
    faults.install(Reorder(consumer="sink", window_ms=200))
    await world.deposit(1, 2)
    one, two = await world.relay.pending()
    leader = asyncio.create_task(world.consumer.deliver_all([one]))
    await asyncio.sleep(0.01)
    follower = asyncio.create_task(world.consumer.deliver_all([two]))
    await asyncio.sleep(0.01)
    leader.cancel()
    with pytest.raises(RuntimeError, match="not applied"):
        await follower  # so the broker delivers it again rather than acknowledging it
    assert world.ledger.applied == []


async def test_a_slow_consumer_waits_before_each_message(world):
    faults.install(SlowConsumer(consumer="sink", delay_ms=20))
    await world.deposit(1, 2, 3, 4, 5)
    started = time.perf_counter()
    await world.relay.drain()
    assert time.perf_counter() - started >= 0.1
    assert await world.ledger.balance("a") == 15


async def test_duplicates_of_a_shuffled_window_still_have_one_effect(world):
    faults.install(Reorder(consumer="sink", window_ms=10))
    faults.install(Duplicate(consumer="sink"))
    await world.deposit(*range(1, 11))
    await world.relay.drain()
    assert len(world.deliveries) == 2
    assert sorted(world.ledger.applied) == list(range(1, 11))
