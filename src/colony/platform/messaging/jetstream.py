"""Events between processes over NATS JetStream.

Deliberate choices, each against a way messages get lost or doubled:

- **One durable stream on file storage** (``COLONY``, subjects ``colony.>``). Limits retention
  with a maximum age rather than interest retention: a subscriber whose consumer does not
  exist yet (a service deployed later) still finds every event of that age.
- **Durability of an acknowledged publish is the server's sync policy**, which no client can
  set: JetStream acknowledges before it fsyncs unless the server runs with
  ``jetstream { sync_interval: always }``. The nats-server Colony starts for itself does;
  a server you bring should too (see deploy/nats/nats.conf). The cost is an fsync per write.
- **Broker-side deduplication**: every publish carries the outbox row's id as ``Nats-Msg-Id``,
  so a relay that publishes a batch again after a crash inside the duplicate window stores it
  once. Past the window, the consumer's inbox absorbs it.
- **Durable pull consumers, one per (subscribing service, source service)**, filtered to
  ``colony.<source>.>``: replicas of a service bind the same durable consumer and compete for
  its messages. Explicit acks, sent only after the inbox row and the effect commit; unacked
  messages come back after ``ack_wait``. After ``max_deliver`` deliveries a message is parked
  in the dead-letter store instead of being tried again (the process died on it each time).
- **Batches both ways**: a relay batch is published pipelined and awaited as a whole; a
  consumer fetches up to ``fetch_batch`` messages and applies them in one transaction.

Ordering: the stream keeps publish order, and a relay publishes its outbox in commit order,
so the events of one aggregate (which all come from one service) reach each consumer in the
order they happened, and one replica applies a fetched batch in order. Replicas of one
subscriber fetch different batches concurrently, so two events of the same aggregate in
flight at the same moment may be applied by two replicas in either order; the handlers that
care are guarded by state (a shipment moves only forward, a payout needs a capture).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js import api

from colony.platform.logging import get_logger
from colony.platform.messaging.consumer import Consumer, record_dead_letter
from colony.platform.messaging.message import Message, decode_message, encode_message
from colony.platform.observability.metrics import jetstream_redeliveries
from colony.platform.resilience import Resilience

NATS = "nats"
"""The broker as a dependency, under the resilience policies' name."""

_log = get_logger("jetstream")


@dataclass(frozen=True, slots=True)
class JetStreamPolicy:
    stream: str = "COLONY"
    subject_prefix: str = "colony"
    max_age_seconds: float = 7 * 24 * 3600.0
    duplicate_window_seconds: float = 120.0
    ack_wait_seconds: float = 30.0
    max_deliver: int = 5
    max_ack_pending: int = 2000
    fetch_batch: int = 100
    fetch_wait_seconds: float = 1.0
    publish_timeout_seconds: float = 10.0


class JetStreamBroker:
    def __init__(
        self,
        url: str,
        client_name: str,
        policy: JetStreamPolicy | None = None,
        resilience: Resilience | None = None,
    ) -> None:
        """With ``resilience``, publishes go through its ``nats`` dependency: a breaker that
        fails them at once while the server is down (the relay tries again later, durably),
        a bulkhead and the publish timeout as its deadline."""
        self.url = url
        self.client_name = client_name
        self.policy = policy or JetStreamPolicy()
        self._dependency = resilience.dependency(NATS, [url]) if resilience else None
        self._consumers: list[Consumer] = []
        self._nc: Any = None
        self._js: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def subject(self, topic: str) -> str:
        return f"{self.policy.subject_prefix}.{topic}"

    def subscribe(self, consumer: Consumer) -> None:
        self._consumers.append(consumer)

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def start(self) -> None:
        self._stopping = False
        self._nc = await nats.connect(
            self.url,
            name=self.client_name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            error_cb=self._on_error,
        )
        self._js = self._nc.jetstream(timeout=self.policy.publish_timeout_seconds)
        await self._ensure_stream()
        for consumer in self._consumers:
            for source, durable in self._durables(consumer).items():
                subscription = await self._bind(durable, source)
                self._tasks.append(
                    asyncio.create_task(
                        self._fetch_loop(consumer, subscription), name=f"jetstream-{durable}"
                    )
                )

    async def stop(self) -> None:
        """Stop fetching, then close, quietly and at once.

        The fetch loops are cancelled and awaited first, so no fetch is pending when the
        connection closes. The connection is then closed, not drained: a drain waits for every
        message delivered to a subscription to be processed, which nothing does once the loops
        have stopped, and with the server going down as well (a Ctrl-C reaches both) it
        waited out its bound and left nats-py's gather of the subscriptions' drains with an
        exception nobody retrieved, printed by every process. The close writes out what is
        buffered (the last acknowledgements) without waiting for the server to answer, which
        a server going down never does; what was fetched and not acknowledged comes back
        after ``ack_wait``."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def pending(self) -> dict[tuple[str, str], int]:
        """Messages JetStream holds for each of this process's durable consumers and has not
        delivered yet, by (consumer, durable): how far behind the consumers are."""
        if self._js is None:
            return {}
        counts = {}
        for consumer in self._consumers:
            for durable in self._durables(consumer).values():
                info = await self._js.consumer_info(self.policy.stream, durable, timeout=2.0)
                counts[(consumer.name, durable)] = int(info.num_pending or 0)
        return counts

    async def _on_error(self, exc: Exception) -> None:
        """nats-py's own handler logs every error with a traceback: one per reconnection
        attempt (every half second) while the server is down, and more at every stop."""
        if not self._stopping:
            _log.warning("NATS connection error", error=repr(exc))

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish pipelined; return once the server has stored every one (raise otherwise,
        and the relay publishes the batch again: the message ids make that harmless)."""
        if self._js is None:
            raise RuntimeError("the JetStream broker is not started")
        if self._dependency is None:
            await self._publish(messages, self.policy.publish_timeout_seconds)
            return
        # Repeatable: the message ids make a batch published twice one stored batch.
        await self._dependency.call(
            lambda _server, seconds: self._publish(messages, seconds), repeatable=True
        )

    async def _publish(self, messages: Sequence[Message], seconds: float) -> None:
        assert self._js is not None
        try:
            await self._publish_pipelined(messages, seconds)
        except nats.errors.TimeoutError as exc:
            raise TimeoutError(f"NATS stored no answer within {seconds:g} s") from exc
        except nats.errors.Error as exc:
            raise ConnectionError(f"NATS: {exc!r}") from exc

    async def _publish_pipelined(self, messages: Sequence[Message], seconds: float) -> None:
        assert self._js is not None
        acks = []
        for message in messages:
            acks.append(
                await self._js.publish_async(
                    self.subject(message.topic),
                    encode_message(message),
                    headers={"Nats-Msg-Id": message.id},
                    wait_stall=seconds,
                )
            )
        async with asyncio.timeout(seconds):
            await asyncio.gather(*acks)

    async def _ensure_stream(self) -> None:
        config = api.StreamConfig(
            name=self.policy.stream,
            subjects=[f"{self.policy.subject_prefix}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=self.policy.max_age_seconds,
            duplicate_window=self.policy.duplicate_window_seconds,
            num_replicas=1,
        )
        try:
            await self._js.add_stream(config)
        except nats.js.errors.BadRequestError:
            # It exists with another configuration (an older Colony's): bring it up to date.
            await self._js.update_stream(config)

    def _durables(self, consumer: Consumer) -> dict[str, str]:
        sources = sorted({topic.split(".", 1)[0] for topic in consumer.topics})
        return {source: f"{consumer.name}-from-{source}" for source in sources}

    async def _bind(self, durable: str, source: str) -> Any:
        config = api.ConsumerConfig(
            name=durable,
            durable_name=durable,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.policy.ack_wait_seconds,
            max_deliver=self.policy.max_deliver,
            max_ack_pending=self.policy.max_ack_pending,
            filter_subject=f"{self.policy.subject_prefix}.{source}.>",
        )
        with contextlib.suppress(nats.js.errors.BadRequestError):
            # Created by a replica that started first: bind to it as it is.
            await self._js.add_consumer(self.policy.stream, config)
        return await self._js.pull_subscribe_bind(durable=durable, stream=self.policy.stream)

    async def _fetch_loop(self, consumer: Consumer, subscription: Any) -> None:
        log = _log.bind(consumer=consumer.name)
        while True:
            try:
                fetched = await subscription.fetch(
                    self.policy.fetch_batch, timeout=self.policy.fetch_wait_seconds
                )
            except (nats.errors.TimeoutError, TimeoutError):
                continue  # nothing arrived within the wait
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection is down; nats-py reconnects
                log.warning("fetch failed", error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            try:
                await self._apply(consumer, fetched)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Unacked, so JetStream delivers them again after ack_wait.
                log.error("batch not applied; left for redelivery", error=repr(exc))

    async def _apply(self, consumer: Consumer, fetched: list[Any]) -> None:
        handled = set(consumer.topics)
        batch: list[Message] = []
        for msg in fetched:
            message = decode_message(msg.data)
            if message.topic not in handled:
                continue  # another topic of the same source: nothing to do here
            if msg.metadata.num_delivered > 1:
                jetstream_redeliveries.labels(consumer.name, message.topic).inc()
            if msg.metadata.num_delivered >= self.policy.max_deliver:
                await record_dead_letter(
                    consumer.db,
                    consumer.name,
                    message,
                    f"delivered {msg.metadata.num_delivered} times without an acknowledgement",
                    msg.metadata.num_delivered,
                )
                continue
            batch.append(message)
        if batch:
            await consumer.deliver_all(batch)
        for msg in fetched:
            await msg.ack()
