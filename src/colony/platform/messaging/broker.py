"""Brokers carry messages from a relay to the consumers subscribed to their topics."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from colony.platform.messaging.consumer import Consumer
    from colony.platform.messaging.message import Message


class Broker(Protocol):
    def subscribe(self, consumer: Consumer) -> None: ...

    async def publish(self, messages: Sequence[Message]) -> None:
        """Return once every message is durably accepted; raise if any is not."""
        ...

    @property
    def connected(self) -> bool:
        """Whether messages can be published now (readiness)."""
        ...

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class InProcessBroker:
    """Delivery inside one process: publishing hands each message to its consumers and returns
    once each has applied it or dead-lettered it, so the relay marks a row published only when
    nothing more can be lost."""

    def __init__(self) -> None:
        self._consumers: dict[str, list[Consumer]] = defaultdict(list)

    connected = True

    def subscribe(self, consumer: Consumer) -> None:
        for topic in consumer.topics:
            self._consumers[topic].append(consumer)

    async def publish(self, messages: Sequence[Message]) -> None:
        # Each consumer takes its messages in outbox order (so events of one aggregate apply in
        # the order they happened); different consumers work concurrently.
        queues: dict[Consumer, list[Message]] = defaultdict(list)
        for message in messages:
            for consumer in self._consumers.get(message.topic, ()):
                queues[consumer].append(message)
        if queues:
            await asyncio.gather(*(self._deliver_in_order(c, m) for c, m in queues.items()))

    @staticmethod
    async def _deliver_in_order(consumer: Consumer, messages: list[Message]) -> None:
        await consumer.deliver_all(messages)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
