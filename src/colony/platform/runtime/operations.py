"""What every service answers about the platform parts inside it, whatever else it does:
its outbox, its consumer and dead letters, and its sagas.

Operators' tools (``colony verify``, ``colony dlq``, the console) ask a service these
things through its own endpoint, as they ask its audit, never by opening its database: in
the multi-process topology each service's tables are reachable by that service's database
role alone. The interface is the same for every service; the runtime serves it beside the
service's own interface (``POST /platform/<method>``) and hands out clients for it by
service name (:meth:`Runtime.operations`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec

from colony.platform.clock import utc_now_iso
from colony.platform.errors import InvalidInput, NotFound
from colony.platform.messaging import Consumer
from colony.platform.messaging.consumer import DeadLetter, list_dead_letters, load_dead_letter
from colony.platform.runtime.interface import callers, repeatable
from colony.platform.security import Actor
from colony.platform.storage import Database, Row

OPERATORS = ("verify", "cli", "gateway")
"""Who may ask: the operator's commands, and the gateway for an admin in the console."""
SAGA_STATUSES = ("running", "compensating", "completed", "cancelled")
SagaStatus = Literal["running", "compensating", "completed", "cancelled"]
MAX_SAGAS = 500
"""The most sagas one answer lists: a console page, not an export."""
SagaLimit = Annotated[int, msgspec.Meta(ge=1, le=MAX_SAGAS)]
SagaId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
JetStreamPending = Callable[[], Awaitable[dict[tuple[str, str], int]]]
"""What the broker holds for each of the process's consumers and has not delivered yet, by
(consumer, durable): :meth:`JetStreamBroker.pending`."""


class OutboxState(msgspec.Struct, frozen=True, kw_only=True):
    """A service's outbox, read in one snapshot of its database at ``as_of``."""

    service: str
    pending: int
    """Rows committed and not yet published."""
    stale: int
    """Of those, the ones older than the bound asked about."""
    oldest_pending_seconds: float | None
    """How long the oldest unpublished row has waited, if any waits."""
    as_of: str


class ConsumerState(msgspec.Struct, frozen=True, kw_only=True):
    """A service's consumer of events: what it takes, what it gave up on, how far behind."""

    service: str
    consumer: str | None
    """Its name (the service's), or None when the service consumes no events."""
    topics: list[str]
    dead_letters_open: int
    """Messages it gave up on and nobody has replayed yet."""
    jetstream_pending: dict[str, int] | None
    """Per durable JetStream consumer, the messages stored and not yet delivered to it; None
    when there is no such figure (events delivered in-process, or the broker not asked)."""


class SagaRow(msgspec.Struct, frozen=True, kw_only=True):
    """One saga as its service's ``saga_instances`` row holds it, without its state (which
    may hold a buyer's address: the console has no need of it)."""

    service: str
    id: str
    kind: str
    status: str
    step: int
    """The index of the step it is at (forward), or from which it compensates."""
    attempts: int
    reason: str | None
    """Why it turned round, in the words its buyer reads."""
    failed_step: str | None
    cancel_requested: str | None
    deadline_at: str
    next_attempt_at: str
    lease_owner: str | None
    lease_until: str | None
    created_at: str
    updated_at: str


class SagaList(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    sagas: list[SagaRow]
    """Newest first, at most the limit asked for."""
    counts: dict[str, int]
    """How many sagas the service has in each status, all of them (not only those listed)."""
    as_of: str


class OperationsApi:
    """The platform's part of every service's endpoint. Each method acts for an admin (the
    console, through the gateway) or for the system as the asking tool itself."""

    service_name = ""
    """Not one service's: the runtime addresses each client to the service it asks."""

    @callers(*OPERATORS)
    @repeatable
    async def outbox(self, actor: Actor, stale_after_seconds: float = 30.0) -> OutboxState:
        """The outbox's depth, and how many rows have waited past ``stale_after_seconds``."""
        raise NotImplementedError

    @callers(*OPERATORS)
    @repeatable
    async def dead_letters(self, actor: Actor, include_replayed: bool = False) -> list[DeadLetter]:
        """The messages this service's consumer gave up on, oldest first."""
        raise NotImplementedError

    @callers(*OPERATORS)
    @repeatable
    async def dead_letter(self, actor: Actor, dead_letter_id: str) -> DeadLetter:
        """One dead letter, with its message (404 if this service has none by that id)."""
        raise NotImplementedError

    @callers(*OPERATORS)
    async def replay(self, actor: Actor, dead_letter_id: str) -> bool:
        """Apply a dead letter again, once: True if it succeeded (and is marked replayed),
        False if it failed again and stays dead-lettered. The consumer's inbox still keeps a
        message that did get through from having a second effect."""
        raise NotImplementedError

    @callers(*OPERATORS)
    @repeatable
    async def consumers(self, actor: Actor) -> ConsumerState:
        """The service's consumer: its topics, its open dead letters, and the messages the
        broker holds for it (when the broker can say)."""
        raise NotImplementedError

    @callers(*OPERATORS)
    @repeatable
    async def sagas(
        self, actor: Actor, status: SagaStatus | None = None, limit: SagaLimit = 100
    ) -> SagaList:
        """The service's sagas, newest first, in ``status`` if given (an empty list from a
        service that runs none), and how many there are in each status."""
        raise NotImplementedError

    @callers(*OPERATORS)
    @repeatable
    async def saga(self, actor: Actor, saga_id: SagaId) -> SagaRow:
        """One saga (404 if this service has none by that id)."""
        raise NotImplementedError


class ServiceOperations(OperationsApi):
    """The answers of one service of this process, from its database, its consumer and (for
    the JetStream figures) its broker."""

    def __init__(
        self,
        service: str,
        db: Database,
        consumer: Consumer | None,
        jetstream_pending: JetStreamPending | None = None,
    ) -> None:
        self.service = service
        self.db = db
        self.consumer = consumer
        self.jetstream_pending = jetstream_pending
        self._runs_sagas: bool | None = None

    async def outbox(self, actor: Actor, stale_after_seconds: float = 30.0) -> OutboxState:
        actor.require("admin", "system")
        if not 0 <= stale_after_seconds <= 86_400:
            raise InvalidInput("stale_after_seconds must be between 0 and 86400.")
        async with self.db.snapshot() as moment:
            oldest = await self.db.fetch_value(
                "SELECT min(created_at) FROM outbox WHERE published_at IS NULL"
            )
            pending = await self.db.fetch_value(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
            cutoff = (moment - timedelta(seconds=stale_after_seconds)).isoformat()
            stale = await self.db.fetch_value(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL AND created_at < ?",
                (cutoff,),
            )
        waited = None
        if oldest is not None:
            waited = max(0.0, (moment - _parse(oldest)).total_seconds())
        return OutboxState(
            service=self.service,
            pending=int(pending),
            stale=int(stale),
            oldest_pending_seconds=waited,
            as_of=moment.isoformat(),
        )

    async def dead_letters(self, actor: Actor, include_replayed: bool = False) -> list[DeadLetter]:
        actor.require("admin", "system")
        return await list_dead_letters(self.db, include_replayed)

    async def dead_letter(self, actor: Actor, dead_letter_id: str) -> DeadLetter:
        actor.require("admin", "system")
        letter = await load_dead_letter(self.db, dead_letter_id)
        if letter is None:
            raise NotFound(f"{self.service} has no dead letter {dead_letter_id}.")
        return letter

    async def replay(self, actor: Actor, dead_letter_id: str) -> bool:
        actor.require("admin", "system")
        letter = await load_dead_letter(self.db, dead_letter_id)
        if letter is None or self.consumer is None or letter.consumer != self.consumer.name:
            raise NotFound(f"{self.service} has no dead letter {dead_letter_id}.")
        return await self.consumer.replay(dead_letter_id)

    async def consumers(self, actor: Actor) -> ConsumerState:
        actor.require("admin", "system")
        open_letters = await self.db.fetch_value(
            "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL"
        )
        pending = None
        if self.jetstream_pending is not None and self.consumer is not None:
            everything = await self.jetstream_pending()
            pending = {
                durable: count
                for (consumer, durable), count in sorted(everything.items())
                if consumer == self.consumer.name
            }
        return ConsumerState(
            service=self.service,
            consumer=None if self.consumer is None else self.consumer.name,
            topics=[] if self.consumer is None else sorted(self.consumer.topics),
            dead_letters_open=int(open_letters),
            jetstream_pending=pending,
        )

    async def sagas(
        self, actor: Actor, status: SagaStatus | None = None, limit: int = 100
    ) -> SagaList:
        actor.require("admin", "system")
        if status is not None and status not in SAGA_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(SAGA_STATUSES)}.")
        if not 1 <= limit <= MAX_SAGAS:
            raise InvalidInput(f"limit must be between 1 and {MAX_SAGAS}.")
        if not await self._has_sagas():
            return SagaList(service=self.service, sagas=[], counts={}, as_of=utc_now_iso())
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        async with self.db.snapshot() as moment:
            rows = await self.db.fetch_all(
                f"SELECT {_SAGA_COLUMNS} FROM saga_instances {where}"
                " ORDER BY created_at DESC, id DESC LIMIT ?",
                (*params, limit),
            )
            counted = await self.db.fetch_all(
                "SELECT status, count(*) AS n FROM saga_instances GROUP BY status"
            )
        return SagaList(
            service=self.service,
            sagas=[self._saga_row(row) for row in rows],
            counts={row["status"]: int(row["n"]) for row in counted},
            as_of=moment.isoformat(),
        )

    async def saga(self, actor: Actor, saga_id: str) -> SagaRow:
        actor.require("admin", "system")
        row = None
        if await self._has_sagas():
            row = await self.db.fetch_one(
                f"SELECT {_SAGA_COLUMNS} FROM saga_instances WHERE id = ?", (saga_id,)
            )
        if row is None:
            raise NotFound(f"{self.service} has no saga {saga_id}.")
        return self._saga_row(row)

    async def _has_sagas(self) -> bool:
        """Whether the service keeps sagas: the saga engine's migrations were applied to its
        database (asked once; a service does not stop keeping them)."""
        if not self._runs_sagas:
            self._runs_sagas = bool(
                await self.db.fetch_value(
                    "SELECT count(*) FROM schema_migrations WHERE component = 'saga'"
                )
            )
        return self._runs_sagas

    def _saga_row(self, row: Row) -> SagaRow:
        return SagaRow(service=self.service, **{name: row[name] for name in _SAGA_FIELDS})


_SAGA_FIELDS = (
    "id",
    "kind",
    "status",
    "step",
    "attempts",
    "reason",
    "failed_step",
    "cancel_requested",
    "deadline_at",
    "next_attempt_at",
    "lease_owner",
    "lease_until",
    "created_at",
    "updated_at",
)
_SAGA_COLUMNS = ", ".join(_SAGA_FIELDS)


def _parse(moment: str) -> datetime:
    parsed = datetime.fromisoformat(moment)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
