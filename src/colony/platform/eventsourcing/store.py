"""The event store: a stream per aggregate, appended to only at the version the writer read."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from colony.platform.clock import utc_now_iso
from colony.platform.errors import Conflict
from colony.platform.storage import Database

EVENT_STORE_MIGRATIONS = Path(__file__).parent / "migrations"
_encode = msgspec.json.Encoder().encode


class ConcurrencyConflict(Conflict):
    slug = "concurrency-conflict"
    title = "The resource was changed by someone else; read it again and retry"


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    stream_id: str
    version: int
    type: str
    data: msgspec.Raw
    recorded_at: str

    # builtins.type: in this class `type` is the field above.
    def decode(self, event_type: builtins.type[Any]) -> Any:
        return msgspec.json.decode(self.data, type=event_type)


def event_type_name(event: Any) -> str:
    return type(event).__name__


class EventStore:
    """Streams in a service's own database. Appends join the caller's open transaction, so
    an aggregate's new events, its outbox rows and any saga state commit together."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(
        self, stream_id: str, expected_version: int | None, events: Sequence[Any]
    ) -> int:
        """Append after ``expected_version`` (0 for a new stream); returns the new version.

        ``None`` appends at the end, whatever it is: for a writer that decided inside the
        same transaction it appends in, so nothing can have come between."""
        async with self.db.transaction():
            current = await self.version(stream_id)
            if expected_version is not None and current != expected_version:
                raise ConcurrencyConflict(
                    f"{stream_id} is at version {current}, not {expected_version}."
                )
            now = utc_now_iso()
            version = current
            for event in events:
                version += 1
                await self.db.execute(
                    "INSERT INTO event_store (stream_id, version, type, data, recorded_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (stream_id, version, event_type_name(event), _encode(event), now),
                )
            return version

    async def version(self, stream_id: str) -> int:
        value = await self.db.fetch_value(
            "SELECT max(version) FROM event_store WHERE stream_id = ?", (stream_id,)
        )
        return int(value or 0)

    async def load(self, stream_id: str) -> list[RecordedEvent]:
        rows = await self.db.fetch_all(
            "SELECT position, stream_id, version, type, data, recorded_at FROM event_store"
            " WHERE stream_id = ? ORDER BY version",
            (stream_id,),
        )
        return [_recorded(row) for row in rows]

    async def read_all(self, after: int, limit: int = 500) -> list[RecordedEvent]:
        rows = await self.db.fetch_all(
            "SELECT position, stream_id, version, type, data, recorded_at FROM event_store"
            " WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )
        return [_recorded(row) for row in rows]


def _recorded(row: Any) -> RecordedEvent:
    return RecordedEvent(
        position=row[0],
        stream_id=row[1],
        version=row[2],
        type=row[3],
        data=msgspec.Raw(row[4]),
        recorded_at=row[5],
    )


def decode_stream(events: Iterable[RecordedEvent], types: dict[str, type[Any]]) -> list[Any]:
    """Decode recorded events with the aggregate's own event classes, by type name."""
    return [event.decode(types[event.type]) for event in events]
