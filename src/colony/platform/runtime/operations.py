"""What every service answers about the platform parts inside it, whatever else it does:
its outbox and its dead letters.

Operators' tools (``colony verify``, ``colony dlq``, the console) ask a service these
things through its own endpoint, as they ask its audit, never by opening its database: in
the multi-process topology each service's tables are reachable by that service's database
role alone. The interface is the same for every service; the runtime serves it beside the
service's own interface (``POST /platform/<method>``) and hands out clients for it by
service name (:meth:`Runtime.operations`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from colony.platform.errors import InvalidInput, NotFound
from colony.platform.messaging import Consumer
from colony.platform.messaging.consumer import DeadLetter, list_dead_letters, load_dead_letter
from colony.platform.runtime.interface import callers, repeatable
from colony.platform.security import Actor
from colony.platform.storage import Database

OPERATORS = ("verify", "cli", "gateway")
"""Who may ask: the operator's commands, and the gateway for an admin in the console."""


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


class ServiceOperations(OperationsApi):
    """The answers of one service of this process, from its database and its consumer."""

    def __init__(self, service: str, db: Database, consumer: Consumer | None) -> None:
        self.service = service
        self.db = db
        self.consumer = consumer

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


def _parse(moment: str) -> datetime:
    parsed = datetime.fromisoformat(moment)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
