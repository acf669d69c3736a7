"""Outbox, relay, inbox and dead letters: at-least-once delivery, exactly-once effect."""

from __future__ import annotations

import pytest

from colony.platform.messaging import Consumer, InProcessBroker, Outbox, OutboxRelay
from colony.platform.messaging.consumer import RetryPolicy, list_dead_letters
from colony.platform.resilience import deadline
from colony.platform.storage.sqlite import SqliteDatabase
from messaging_support import Deposited, open_db


@pytest.fixture
async def world(tmp_path):
    source = await open_db(tmp_path, "source")
    sink = await open_db(tmp_path, "sink")
    yield source, sink
    await source.close()
    await sink.close()


class Ledger:
    """A consumer's effect: add each deposit to a balance; fails while ``failures`` > 0."""

    def __init__(self, db: SqliteDatabase, failures: int = 0) -> None:
        self.db = db
        self.failures = failures
        self.calls = 0

    async def on_deposited(self, event: Deposited) -> None:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("downstream is down")
        await self.db.execute(
            "INSERT INTO balances (account, amount) VALUES (?, ?) ON CONFLICT (account)"
            " DO UPDATE SET amount = amount + excluded.amount",
            (event.account, event.amount),
        )

    async def balance(self, account: str) -> int:
        return (
            await self.db.fetch_value("SELECT amount FROM balances WHERE account = ?", (account,))
            or 0
        )


def wire(source, sink, ledger, attempts: int = 3):
    broker = InProcessBroker()
    consumer = Consumer(
        "sink",
        sink,
        {Deposited: ledger.on_deposited},
        RetryPolicy(attempts=attempts, wait_initial=0.001, wait_max=0.002),
    )
    broker.subscribe(consumer)
    outbox = Outbox(source, "test")
    return outbox, OutboxRelay(outbox, broker), consumer


async def test_events_commit_with_the_state_change_and_are_delivered_once(world):
    source, sink = world
    ledger = Ledger(sink)
    outbox, relay, _ = wire(source, sink, ledger)
    async with source.transaction():
        await outbox.add(Deposited(account="a", amount=5), key="a")
        await outbox.add(Deposited(account="a", amount=7), key="a")
    assert await relay.drain() == 2
    assert await relay.drain() == 0
    assert await ledger.balance("a") == 12


async def test_a_rolled_back_transaction_publishes_nothing(world):
    source, sink = world
    ledger = Ledger(sink)
    outbox, relay, _ = wire(source, sink, ledger)
    with pytest.raises(ZeroDivisionError):
        async with source.transaction():
            await outbox.add(Deposited(account="b", amount=5), key="b")
            1 / 0  # noqa: B018
    assert await relay.drain() == 0
    assert await ledger.balance("b") == 0


async def test_outbox_add_outside_a_transaction_is_a_bug(world):
    source, sink = world
    outbox, _, _ = wire(source, sink, Ledger(sink))
    with pytest.raises(RuntimeError):
        await outbox.add(Deposited(account="c", amount=1), key="c")


async def test_a_redelivered_message_has_no_second_effect(world):
    source, sink = world
    ledger = Ledger(sink)
    outbox, relay, consumer = wire(source, sink, ledger)
    async with source.transaction():
        await outbox.add(Deposited(account="d", amount=3), key="d")
    [message] = await relay.pending()
    await consumer.deliver(message)
    await consumer.deliver(message)  # the relay crashed before marking it published
    await relay.drain()  # ... so it is published again
    assert await ledger.balance("d") == 3
    assert ledger.calls == 1


async def test_transient_failures_are_retried(world):
    source, sink = world
    ledger = Ledger(sink, failures=2)
    outbox, relay, _ = wire(source, sink, ledger, attempts=3)
    async with source.transaction():
        await outbox.add(Deposited(account="e", amount=4), key="e")
    await relay.drain()
    assert await ledger.balance("e") == 4
    assert await list_dead_letters(sink) == []


async def test_a_message_that_keeps_failing_is_dead_lettered_and_can_be_replayed(world):
    source, sink = world
    ledger = Ledger(sink, failures=100)
    outbox, relay, consumer = wire(source, sink, ledger, attempts=3)
    async with source.transaction():
        await outbox.add(Deposited(account="f", amount=9), key="f")
    await relay.drain()
    [letter] = await list_dead_letters(sink)
    assert letter.attempts == 3 and letter.topic == "test.deposited"
    assert "downstream is down" in letter.error
    assert await ledger.balance("f") == 0

    assert await consumer.replay(letter.id) is False  # still failing: it stays
    assert len(await list_dead_letters(sink)) == 1

    ledger.failures = 0
    assert await consumer.replay(letter.id) is True
    assert await ledger.balance("f") == 9
    assert await list_dead_letters(sink) == []
    assert len(await list_dead_letters(sink, include_replayed=True)) == 1
    await consumer.replay(letter.id)  # a second replay finds the inbox row
    assert await ledger.balance("f") == 9


async def test_events_of_one_consumer_apply_in_outbox_order(world):
    source, sink = world
    seen: list[int] = []

    async def record(event: Deposited) -> None:
        seen.append(event.amount)

    broker = InProcessBroker()
    broker.subscribe(Consumer("order", sink, {Deposited: record}))
    outbox = Outbox(source, "test")
    async with source.transaction():
        for n in range(20):
            await outbox.add(Deposited(account="g", amount=n), key="g")
    await OutboxRelay(outbox, broker).drain()
    assert seen == list(range(20))


async def test_a_batch_that_fails_part_way_is_rolled_back_and_delivered_one_by_one(world):
    source, sink = world
    ledger = Ledger(sink)
    outbox, relay, _ = wire(source, sink, ledger)
    async with source.transaction():
        for amount in (1, 2, 4):
            await outbox.add(Deposited(account="batch", amount=amount), key="batch")
    original = ledger.on_deposited
    failed: list[int] = []

    async def second_fails_once(event: Deposited) -> None:
        if event.amount == 2 and not failed:
            failed.append(event.amount)
            raise RuntimeError("a hiccup")
        await original(event)

    ledger.on_deposited = second_fails_once  # type: ignore[method-assign]
    relay_consumer = Consumer(
        "sink",
        sink,
        {Deposited: second_fails_once},
        RetryPolicy(attempts=3, wait_initial=0.001, wait_max=0.002),
    )
    messages = await relay.pending()
    await relay_consumer.deliver_all(messages)
    await relay_consumer.deliver_all(messages)  # redelivered whole: no second effect
    assert await ledger.balance("batch") == 7
    assert await list_dead_letters(sink) == []


async def test_a_handler_runs_under_its_own_deadline(world):
    source, sink = world
    seen: list[float | None] = []

    async def on_deposited(event: Deposited) -> None:
        seen.append(deadline.remaining())

    broker = InProcessBroker()
    consumer = Consumer("sink", sink, {Deposited: on_deposited}, RetryPolicy(deadline_seconds=3))
    broker.subscribe(consumer)
    outbox = Outbox(source, "test")
    async with source.transaction():
        await outbox.add(Deposited(account="f", amount=1), key="f")
    await OutboxRelay(outbox, broker).drain()
    [left] = seen
    assert left is not None and 2.5 < left <= 3
