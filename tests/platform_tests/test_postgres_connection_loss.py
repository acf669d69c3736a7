"""PostgreSQL connections that the server drops (a failover, ``pg_terminate_backend``): the next
unit of work finds a fresh connection, one that loses its connection is a 503, and no error is
hidden behind another."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from colony.platform.errors import ServiceUnavailable
from colony.platform.storage.postgres import PostgresDatabase
from postgres_support import fresh_schema_dsns, postgres_url, require_postgres


@pytest.fixture
async def pg() -> AsyncIterator[PostgresDatabase]:
    require_postgres()
    dsn = fresh_schema_dsns("lost", ["payments"])["payments"]
    # One pooled connection, so the next unit of work gets the very one that was terminated.
    database = PostgresDatabase("payments", dsn, pool_min_size=1, pool_max_size=1)
    await database.open()
    await database.execute("CREATE TABLE entries (n INTEGER PRIMARY KEY)")
    yield database
    await database.close()


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(postgres_url())
    yield conn
    await conn.close()


async def terminate(admin: asyncpg.Connection, pid: int) -> None:
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid) is True


def chain(exc: BaseException | None) -> list[BaseException]:
    found = []
    while exc is not None:
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


async def test_connections_name_their_service(pg, admin):
    pid = await pg.fetch_value("SELECT pg_backend_pid()")
    name = await admin.fetchval("SELECT application_name FROM pg_stat_activity WHERE pid = $1", pid)
    assert name == "colony-payments"


async def test_after_its_connection_is_terminated_the_next_transaction_succeeds(pg, admin):
    """Terminated between two units of work, as a failover does to idle connections: asyncpg
    may not have seen it close yet when the next one starts on it."""
    for n in range(10):
        await terminate(admin, await pg.fetch_value("SELECT pg_backend_pid()"))
        async with pg.transaction():
            await pg.execute("INSERT INTO entries (n) VALUES (?)", (n,))
    await terminate(admin, await pg.fetch_value("SELECT pg_backend_pid()"))
    assert await pg.fetch_value("SELECT count(*) FROM entries") == 10  # a read, too


async def test_a_connection_lost_inside_a_transaction_is_unavailable_and_not_masked(pg):
    with pytest.raises(ServiceUnavailable, match="nothing was committed") as raised:
        async with pg.transaction():
            await pg.execute("INSERT INTO entries (n) VALUES (1)")
            # The session ends itself, so the statement is the one that finds it gone.
            await pg.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    assert raised.value.status == 503
    causes = chain(raised.value)
    assert isinstance(causes[1], asyncpg.PostgresConnectionError | asyncpg.AdminShutdownError)
    assert "administrator command" in str(causes[1])
    assert not any("released back to the pool" in str(c) for c in causes)
    async with pg.transaction():
        await pg.execute("INSERT INTO entries (n) VALUES (3)")
    assert [r[0] for r in await pg.fetch_all("SELECT n FROM entries")] == [3]


async def test_a_connection_lost_during_commit_says_the_outcome_is_unknown(pg, admin):
    with pytest.raises(ServiceUnavailable, match="may or may not have committed"):
        async with pg.transaction():
            await pg.execute("INSERT INTO entries (n) VALUES (1)")
            await terminate(admin, await pg.fetch_value("SELECT pg_backend_pid()"))
            await asyncio.sleep(0.2)  # asyncpg sees the connection close before the COMMIT


async def test_an_error_in_a_transaction_is_raised_as_it_was(pg):
    await pg.execute("INSERT INTO entries (n) VALUES (1)")
    with pytest.raises(asyncpg.UniqueViolationError):
        async with pg.transaction():
            await pg.execute("INSERT INTO entries (n) VALUES (2)")
            await pg.execute("INSERT INTO entries (n) VALUES (1)")
    with pytest.raises(LookupError, match="the body's own"):
        async with pg.transaction():
            await pg.execute("INSERT INTO entries (n) VALUES (3)")
            raise LookupError("the body's own")
    assert [r[0] for r in await pg.fetch_all("SELECT n FROM entries")] == [1]


async def test_an_unreachable_server_is_unavailable():
    database = PostgresDatabase("payments", "postgresql://postgres@127.0.0.1:1/test")
    database._pool = await asyncpg.create_pool(  # a pool that connects lazily, to nowhere
        "postgresql://postgres@127.0.0.1:1/test", min_size=0, max_size=1
    )
    database._lock = asyncio.Lock()
    try:
        with pytest.raises(ServiceUnavailable, match="cannot be reached"):
            async with database.transaction():
                pass
        with pytest.raises(ServiceUnavailable, match="cannot be reached"):
            await database.fetch_value("SELECT 1")
    finally:
        await database.close()
