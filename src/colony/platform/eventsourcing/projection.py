"""Projections: read models kept from the event store, each with its own checkpoint.

A projection's rows and its checkpoint commit together, so it applies each event exactly once
and can be rebuilt from the first event at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from colony.platform.eventsourcing.store import EventStore, RecordedEvent
from colony.platform.logging import get_logger
from colony.platform.storage import Database
from colony.platform.tasks import cancelled

_log = get_logger("projection")


class Projection(Protocol):
    name: str

    async def reset(self, db: Database) -> None:
        """Delete every row the projection owns (before a rebuild)."""
        ...

    async def apply(self, db: Database, event: RecordedEvent) -> None: ...


class ProjectionRunner:
    def __init__(self, store: EventStore, projections: list[Projection], batch: int = 500) -> None:
        self.store = store
        self.db = store.db
        self.projections = projections
        self.batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        self._wake.set()

    async def checkpoint(self, projection: Projection) -> int:
        value = await self.db.fetch_value(
            "SELECT position FROM projection_checkpoints WHERE name = ?", (projection.name,)
        )
        return int(value or 0)

    async def catch_up(self, projection: Projection) -> int:
        """Apply every event past the projection's checkpoint; returns how many."""
        applied = 0
        while True:
            after = await self.checkpoint(projection)
            events = await self.store.read_all(after, self.batch)
            if not events:
                return applied
            async with self.db.transaction():
                if await self.checkpoint(projection) != after:
                    continue  # another runner moved it meanwhile: read again
                for event in events:
                    await projection.apply(self.db, event)
                await self.db.execute(
                    "INSERT INTO projection_checkpoints (name, position) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                    (projection.name, events[-1].position),
                )
            applied += len(events)

    async def catch_up_all(self) -> int:
        return sum([await self.catch_up(p) for p in self.projections])

    async def rebuild(self, name: str | None = None) -> dict[str, int]:
        """Empty the projections (all, or the one named) and apply every event again."""
        counts = {}
        for projection in self.projections:
            if name is not None and projection.name != name:
                continue
            async with self.db.transaction():
                await projection.reset(self.db)
                await self.db.execute(
                    "DELETE FROM projection_checkpoints WHERE name = ?", (projection.name,)
                )
            counts[projection.name] = await self.catch_up(projection)
        if name is not None and not counts:
            raise LookupError(name)
        return counts

    def start(self, poll_seconds: float = 1.0) -> None:
        self._task = asyncio.create_task(self._run(poll_seconds), name="projections")

    async def stop(self) -> None:
        await cancelled(self._task)
        self._task = None

    async def _run(self, poll_seconds: float) -> None:
        while True:
            self._wake.clear()
            try:
                await self.catch_up_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("projection failed; retrying")
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event fires, and stop() would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_seconds):
                    await self._wake.wait()
