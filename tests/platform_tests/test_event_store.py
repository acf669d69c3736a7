"""The event store: optimistic concurrency on append, replay, and rebuildable projections."""

from __future__ import annotations

import pytest

from colony.platform.eventsourcing import (
    EVENT_STORE_MIGRATIONS,
    ConcurrencyConflict,
    EventStore,
    ProjectionRunner,
    RecordedEvent,
)
from colony.platform.storage import Database
from colony.platform.storage.migrations import migrate
from colony.platform.storage.sqlite import SqliteDatabase


@pytest.fixture
async def store(tmp_path):
    db = SqliteDatabase("es", str(tmp_path / "es.db"))
    await db.open()
    await migrate(db, "eventstore", EVENT_STORE_MIGRATIONS)
    await db.run_script("CREATE TABLE owners (stream_id TEXT PRIMARY KEY, events INTEGER);")
    yield EventStore(db)
    await db.close()


async def test_append_and_load_in_order(store):
    assert await store.append("order-1", 0, [{"n": 1}, {"n": 2}]) == 2
    assert await store.append("order-1", 2, [{"n": 3}]) == 3
    events = await store.load("order-1")
    assert [e.version for e in events] == [1, 2, 3]
    assert [e.decode(dict)["n"] for e in events] == [1, 2, 3]
    assert await store.load("order-2") == []


async def test_append_at_a_stale_version_is_refused_and_writes_nothing(store):
    await store.append("order-1", 0, [{"n": 1}])
    with pytest.raises(ConcurrencyConflict):
        await store.append("order-1", 0, [{"n": "lost update"}])
    assert [e.decode(dict)["n"] for e in await store.load("order-1")] == [1]


async def test_an_append_rolls_back_with_its_transaction(store):
    with pytest.raises(RuntimeError):
        async with store.db.transaction():
            await store.append("order-9", 0, [{"n": 1}])
            raise RuntimeError
    assert await store.version("order-9") == 0


class CountPerStream:
    name = "count-per-stream"

    def __init__(self) -> None:
        self.applied = 0

    async def reset(self, db: Database) -> None:
        await db.execute("DELETE FROM owners")

    async def apply(self, db: Database, event: RecordedEvent) -> None:
        self.applied += 1
        await db.execute(
            "INSERT INTO owners (stream_id, events) VALUES (?, 1) ON CONFLICT (stream_id)"
            " DO UPDATE SET events = events + 1",
            (event.stream_id,),
        )


async def counts(store) -> dict[str, int]:
    rows = await store.db.fetch_all("SELECT stream_id, events FROM owners")
    return {r[0]: r[1] for r in rows}


async def test_projection_applies_each_event_once_and_rebuilds(store):
    projection = CountPerStream()
    runner = ProjectionRunner(store, [projection], batch=2)
    await store.append("a", 0, [{}, {}, {}])
    await store.append("b", 0, [{}])
    assert await runner.catch_up_all() == 4
    assert await runner.catch_up_all() == 0
    assert await counts(store) == {"a": 3, "b": 1}
    await store.append("b", 1, [{}])
    await runner.catch_up_all()
    assert await counts(store) == {"a": 3, "b": 2}
    await store.db.execute("UPDATE owners SET events = 99")  # a corrupted read model
    assert await runner.rebuild() == {"count-per-stream": 5}
    assert await counts(store) == {"a": 3, "b": 2}
    with pytest.raises(LookupError):
        await runner.rebuild("no-such-projection")


async def test_append_at_the_end_whatever_the_version(store):
    await store.append("order-9", 0, [{"n": 1}])
    assert await store.append("order-9", None, [{"n": 2}]) == 2
    assert [e.version for e in await store.load("order-9")] == [1, 2]
