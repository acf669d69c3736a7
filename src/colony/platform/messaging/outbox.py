"""The transactional outbox and its relay: no dual writes.

A service adds events inside the transaction that changes its state; the relay publishes
committed rows to the broker and marks them published. A crash between the two publishes a
row again, which consumers' inboxes absorb: at-least-once delivery, exactly-once effect.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

import msgspec
import stamina

from colony.platform import context
from colony.platform.clock import utc_now_iso
from colony.platform.ids import new_id
from colony.platform.logging import get_logger
from colony.platform.messaging.broker import Broker
from colony.platform.messaging.message import Event, Message, owner_of
from colony.platform.observability import tracing
from colony.platform.observability.metrics import messaging_published
from colony.platform.storage import Database
from colony.platform.tasks import cancelled

_encode = msgspec.json.Encoder().encode


class Outbox:
    def __init__(self, db: Database, source: str) -> None:
        self.db = db
        self.source = source
        self._listeners: list[asyncio.Event] = []

    def listen(self) -> asyncio.Event:
        signal = asyncio.Event()
        self._listeners.append(signal)
        return signal

    def _wake(self) -> None:
        for signal in self._listeners:
            signal.set()

    async def add(self, event: Event, key: str) -> str:
        """Record ``event`` in the open transaction; it is published only if that commits."""
        if not self.db.in_transaction():
            raise RuntimeError("Outbox.add must run inside the transaction of the state change")
        if owner_of(event.topic) != self.source:
            # Consumers would refuse it anyway (see Consumer); failing here shows the mistake
            # where it is made.
            raise ValueError(f"{self.source} cannot publish {event.topic}: it is not its event")
        message_id = new_id()
        headers = {"correlation_id": context.correlation_id() or message_id}
        # The event carries the trace it was raised in: its consumers' work joins that trace.
        tracing.inject(headers)
        await self.db.execute(
            "INSERT INTO outbox (id, topic, key, payload, headers, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (message_id, event.topic, key, _encode(event), _encode(headers), utc_now_iso()),
        )
        self.db.after_commit(self._wake)
        return message_id


class OutboxRelay:
    """Publishes committed outbox rows in batches, woken on commit and by a slow poll."""

    def __init__(
        self,
        outbox: Outbox,
        broker: Broker,
        batch_size: int = 256,
        poll_seconds: float = 1.0,
    ) -> None:
        self.outbox = outbox
        self.db = outbox.db
        self.broker = broker
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self._signal = outbox.listen()
        self._task: asyncio.Task[None] | None = None
        self._log = get_logger("outbox.relay", service=outbox.source)
        self._counters: dict[str, Any] = {}

    def _published(self, topic: str) -> Any:
        counter = self._counters.get(topic)
        if counter is None:
            counter = self._counters[topic] = messaging_published.labels(self.outbox.source, topic)
        return counter

    async def pending(self) -> list[Message]:
        rows = await self.db.fetch_all(
            "SELECT id, topic, key, payload, headers, created_at FROM outbox "
            "WHERE published_at IS NULL ORDER BY seq LIMIT ?",
            (self.batch_size,),
        )
        return [
            Message(
                id=row[0],
                topic=row[1],
                key=row[2],
                payload=msgspec.Raw(row[3]),
                headers=msgspec.json.decode(row[4]),
                created_at=row[5],
                source=self.outbox.source,
            )
            for row in rows
        ]

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows it published."""
        batch = await self.pending()
        if not batch:
            return 0
        await self.broker.publish(batch)
        # Counted per topic and batch, not per message: each increment takes a lock.
        for topic, count in collections.Counter(message.topic for message in batch).items():
            self._published(topic).inc(count)
        now = utc_now_iso()
        await self.db.execute_many(
            "UPDATE outbox SET published_at = ? WHERE id = ?",
            [(now, message.id) for message in batch],
        )
        return len(batch)

    async def drain(self) -> int:
        """Publish until nothing is pending (seeding, tests, shutdown)."""
        total = 0
        while count := await self.publish_pending():
            total += count
        return total

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.outbox.source}")

    async def stop(self) -> None:
        await cancelled(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            self._signal.clear()
            try:
                async for attempt in stamina.retry_context(
                    on=Exception, attempts=None, timeout=None, wait_initial=0.05, wait_max=5.0
                ):
                    with attempt:
                        while await self.publish_pending() == self.batch_size:
                            pass
            except asyncio.CancelledError:
                raise
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event fires, and stop() would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._signal.wait()
