"""Consumers: apply each message once, retry with backoff, dead-letter what keeps failing.

The inbox row and the handler's effect commit in one transaction, so a redelivered message
finds its id and has no second effect.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import stamina
from opentelemetry.trace import SpanKind

from colony.platform import context
from colony.platform.clock import utc_now_iso
from colony.platform.faults import delivery_fault
from colony.platform.ids import new_id
from colony.platform.logging import get_logger
from colony.platform.messaging.message import (
    Event,
    Message,
    decode_message,
    encode_message,
    owner_of,
)
from colony.platform.observability import tracing
from colony.platform.observability.metrics import dead_lettered, messaging_process_duration
from colony.platform.observability.trace_store import CORRELATION_ID, ORDER_ID
from colony.platform.resilience import deadline, retried_above
from colony.platform.storage import Database

Handler = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    wait_initial: float = 0.05
    wait_max: float = 2.0
    wait_jitter: float = 0.1
    deadline_seconds: float = 10.0
    """Each attempt's deadline, carried into any call its handler makes: the consumer is the
    layer that retries a message, so those calls make one attempt each."""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    consumer: str
    message_id: str
    topic: str
    error: str
    attempts: int
    failed_at: str
    replayed_at: str | None
    message: Message


class Consumer:
    """A named subscription of one service: topic → (event type, handler)."""

    def __init__(
        self,
        name: str,
        db: Database,
        handlers: dict[type[Event], Handler],
        retry: RetryPolicy | None = None,
    ) -> None:
        self.name = name
        self.db = db
        self.retry = retry or RetryPolicy()
        self._routes = {event_type.topic: (event_type, h) for event_type, h in handlers.items()}
        self._log = get_logger("consumer", consumer=name)
        self._timers: dict[tuple[str, str], Any] = {}

    @property
    def topics(self) -> Iterable[str]:
        return self._routes.keys()

    async def apply(self, message: Message) -> bool:
        """One attempt: returns False when the inbox shows it was already applied."""
        async with self.db.transaction():
            return await self._apply_in_transaction(message)

    async def _apply_in_transaction(self, message: Message) -> bool:
        if message.source != owner_of(message.topic):
            raise ForeignEvent(
                f"{message.topic} comes from {message.source!r}; only"
                f" {owner_of(message.topic)} publishes it"
            )
        event_type, handler = self._routes[message.topic]
        started = time.perf_counter()
        outcome = "retry"
        try:
            event = message.decode(event_type)
            correlation = message.headers.get("correlation_id")
            # A child of the span that raised the event, in the same trace: one checkout is
            # one trace across the broker (OpenTelemetry's messaging conventions allow
            # either; a link alone would split it).
            consuming = tracing.span(
                f"{message.topic} process",
                SpanKind.CONSUMER,
                service=self.name,
                parent=tracing.extract(message.headers),
            )
            if tracing.records(consuming):
                consuming.set_attributes(
                    {
                        "messaging.operation.type": "process",
                        "messaging.destination.name": message.topic,
                        "messaging.consumer.group.name": self.name,
                        "messaging.message.id": message.id,
                        **({CORRELATION_ID: correlation} if correlation else {}),
                        **_order_of(event),
                    }
                )
            with (
                context.call_context(correlation=correlation),
                consuming,
                deadline.deadline(self.retry.deadline_seconds),
                retried_above(),
            ):
                # The inbox row first: if the handler fails, the transaction takes both back.
                first = await self.db.execute(
                    "INSERT INTO inbox (consumer, message_id, processed_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (consumer, message_id) DO NOTHING",
                    (self.name, message.id, utc_now_iso()),
                )
                if not first:
                    outcome = "duplicate"
                    return False
                await handler(event)
            outcome = "ok"
            return True
        finally:
            self._timer(message.topic, outcome).observe(time.perf_counter() - started)

    def _timer(self, topic: str, outcome: str) -> Any:
        timer = self._timers.get((topic, outcome))
        if timer is None:
            timer = self._timers[(topic, outcome)] = messaging_process_duration.labels(
                self.name, self.name, topic, outcome
            )
        return timer

    async def deliver_all(self, messages: list[Message]) -> None:
        """Deliver in order: all in one transaction when every one applies at the first
        attempt (the common case, and one commit instead of many); otherwise that batch is
        rolled back and each is delivered on its own, with its retries. Under an injected
        delivery fault (:mod:`colony.platform.faults`) they may come late, shuffled or twice,
        and still through the inbox."""
        fault = delivery_fault(self.name)
        if fault is None:
            await self._deliver_all(messages)
        else:
            await fault.deliver(messages, self._deliver_all)

    async def _deliver_all(self, messages: list[Message]) -> None:
        if len(messages) > 1:
            try:
                async with self.db.transaction():
                    for message in messages:
                        await self._apply_in_transaction(message)
                return
            except Exception as exc:
                self._log.info("batch rolled back; one at a time", error=repr(exc))
        for message in messages:
            await self.deliver(message)

    async def deliver(self, message: Message) -> None:
        """Apply with bounded retries; on exhaustion record a dead letter. Never raises."""
        attempts = 0
        try:
            async for attempt in stamina.retry_context(
                on=_worth_retrying,
                attempts=self.retry.attempts,
                timeout=None,
                wait_initial=self.retry.wait_initial,
                wait_max=self.retry.wait_max,
                wait_jitter=self.retry.wait_jitter,
            ):
                with attempt:
                    attempts += 1
                    await self.apply(message)
        except Exception as exc:
            self._log.error(
                "message dead-lettered",
                message_id=message.id,
                topic=message.topic,
                attempts=attempts,
                error=repr(exc),
            )
            await self._dead_letter(message, exc, attempts)

    async def _dead_letter(self, message: Message, exc: Exception, attempts: int) -> None:
        error = "".join(traceback.format_exception_only(exc)).strip()
        await record_dead_letter(self.db, self.name, message, error, attempts)

    async def replay(self, dead_letter_id: str) -> bool:
        """Apply a dead letter again, once; marks it replayed when it succeeds."""
        letter = await load_dead_letter(self.db, dead_letter_id)
        if letter is None or letter.consumer != self.name:
            raise LookupError(dead_letter_id)
        try:
            await self.apply(letter.message)
        except Exception as exc:
            await self.db.execute(
                "UPDATE dead_letters SET attempts = attempts + 1, error = ?, failed_at = ?"
                " WHERE id = ?",
                (repr(exc), utc_now_iso(), dead_letter_id),
            )
            return False
        await self.db.execute(
            "UPDATE dead_letters SET replayed_at = ? WHERE id = ?", (utc_now_iso(), dead_letter_id)
        )
        return True


def _order_of(event: Any) -> dict[str, str]:
    order_id = getattr(event, "order_id", None)
    return {ORDER_ID: order_id} if isinstance(order_id, str) else {}


class ForeignEvent(Exception):
    """An event from a service that does not own its type: never applied, however often it
    comes, and parked as a dead letter for someone to look at."""


def _worth_retrying(exc: BaseException) -> bool:
    # stamina asks a predicate about whatever is raised, cancellation included: a stop must
    # not be retried.
    return isinstance(exc, Exception) and not isinstance(exc, ForeignEvent)


async def record_dead_letter(
    db: Database, consumer: str, message: Message, error: str, attempts: int
) -> None:
    """Park a message that kept failing, for ``colony dlq`` to list and replay through the
    consumer named."""
    await db.execute(
        "INSERT INTO dead_letters (id, consumer, message_id, topic, message, error,"
        " attempts, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id(),
            consumer,
            message.id,
            message.topic,
            encode_message(message),
            error,
            attempts,
            utc_now_iso(),
        ),
    )
    dead_lettered.labels(consumer, message.topic).inc()


def _dead_letter_from_row(row: Any) -> DeadLetter:
    return DeadLetter(
        id=row["id"],
        consumer=row["consumer"],
        message_id=row["message_id"],
        topic=row["topic"],
        error=row["error"],
        attempts=row["attempts"],
        failed_at=row["failed_at"],
        replayed_at=row["replayed_at"],
        message=decode_message(row["message"]),
    )


async def list_dead_letters(db: Database, include_replayed: bool = False) -> list[DeadLetter]:
    where = "" if include_replayed else "WHERE replayed_at IS NULL"
    rows = await db.fetch_all(f"SELECT * FROM dead_letters {where} ORDER BY failed_at")
    return [_dead_letter_from_row(row) for row in rows]


async def load_dead_letter(db: Database, dead_letter_id: str) -> DeadLetter | None:
    row = await db.fetch_one("SELECT * FROM dead_letters WHERE id = ?", (dead_letter_id,))
    return None if row is None else _dead_letter_from_row(row)
