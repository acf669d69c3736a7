"""PostgreSQL through asyncpg, with the same semantics as the SQLite adapter.

The services were written against SQLite's single writer: a unit of work that reads, decides
and writes (check-then-insert) never interleaves with another writer of the same database.
PostgreSQL's default READ COMMITTED isolation does not give that, so every transaction here
starts by taking a transaction-scoped advisory lock keyed on the service's schema (on its name
when the DSN sets no search_path): writers of one service's database take turns, across every
process and replica, exactly as on SQLite, while readers outside a transaction never wait. It
also keeps identity columns in commit order, which readers of ``outbox.seq`` and
``event_store.position`` rely on to never skip a row committed late. Each process queues its own
writers on an asyncio lock first, so twenty waiting writers hold one pooled connection, not
twenty. (SERIALIZABLE would instead need retries the services were not written for, and
would not keep identity columns in commit order.)

SQL stays in the sqlite3 dialect of parameters (``?`` and ``:name``); it is rewritten to
asyncpg's ``$n`` once per statement text.

A lost connection (a failover, ``pg_terminate_backend``, a restart) is transient, never a 500:

- a transaction whose connection is found dead before anything ran in it (a pooled connection
  the server closed while it sat idle) starts again on a fresh one, and so does a read outside
  a transaction: nothing was done, so nothing can be done twice;
- one that loses it later raises ``ServiceUnavailable``: the server rolled it back, and the
  unit of work is the caller's to repeat (its body may have done more than write here);
- one that loses it during COMMIT raises ``ServiceUnavailable`` saying the outcome is unknown:
  it may have committed, so only a caller whose write is idempotent may repeat it (every one
  in Colony is);
- the error that ended a transaction is the one raised, never a later one from cleaning up
  a connection asyncpg has already taken back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from opentelemetry.trace import SpanKind

from colony.platform.errors import ServiceUnavailable
from colony.platform.logging import get_logger
from colony.platform.observability import tracing
from colony.platform.storage.database import Params, Row

POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 8
# Services prepare a few dozen distinct statements each; a roomy cache keeps them all prepared.
_STATEMENT_CACHE_SIZE = 512
# Tries at a fresh connection when one is lost before anything ran on it, and the pauses
# between them: enough for the pool to replace the connections of a terminated session, short
# enough (0.25 s in all) that a real outage becomes a 503 the caller's retries handle.
_RECONNECT_PAUSES = (0.05, 0.2)
# Errors that mean the connection is gone, whatever the statement was.
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08, and "closed in the middle of operation"
    asyncpg.exceptions.AdminShutdownError,  # 57P01: pg_terminate_backend, a fast shutdown
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up, shutting down
    OSError,  # refused, reset, timed out: the server or the way to it
)
_log = get_logger("postgres")

# Strings, quoted identifiers and comments are matched (and kept) first, so a ``?`` or ``:x``
# inside them is never taken for a parameter; ``::`` is a cast, not a named parameter.
_TOKENS = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|::|\?|:([A-Za-z_][A-Za-z0-9_]*)""",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement rewritten for asyncpg: its text, and the names of its parameters in
    ``$n`` order when it used ``:name`` (None when it used ``?``)."""

    text: str
    names: tuple[str, ...] | None
    count: int


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> Statement:
    """Rewrite ``?`` and ``:name`` placeholders to ``$n``; the same name reuses its number."""
    positional = 0
    names: dict[str, int] = {}

    def replace(match: re.Match[str]) -> str:
        nonlocal positional
        token = match[0]
        if token == "?":
            positional += 1
            return f"${positional}"
        if match[1] is not None:
            return f"${names.setdefault(match[1], len(names) + 1)}"
        return token

    text = _TOKENS.sub(replace, sql)
    if positional and names:
        raise ValueError(f"mixed ? and :name parameters in {sql!r}")
    return Statement(text, tuple(names) if names else None, positional or len(names))


def arguments(statement: Statement, params: Params) -> Sequence[Any]:
    if statement.names is None:
        if isinstance(params, Mapping):
            if statement.count == 0:
                return ()  # no parameters at all: any mapping will do, as in sqlite3
            raise TypeError("a statement with ? parameters takes a sequence")
        return params
    if not isinstance(params, Mapping):
        raise TypeError("a statement with :name parameters takes a mapping")
    return [params[name] for name in statement.names]


def affected_rows(status: str) -> int:
    """Rows a command changed, from its status tag ("INSERT 0 3", "UPDATE 2"); -1 for a
    statement that changes none, as sqlite3's ``rowcount`` says."""
    command, _, rest = status.partition(" ")
    if command in ("INSERT", "UPDATE", "DELETE", "MERGE") and rest:
        return int(rest.rsplit(" ", 1)[-1])
    return -1


@dataclass(frozen=True, slots=True)
class PostgresDsn:
    dsn: str  # what asyncpg connects with: our own query parameters taken out
    schema: str | None
    pool_min_size: int
    pool_max_size: int
    server_settings: dict[str, str]


def parse_dsn(dsn: str, application_name: str = "colony") -> PostgresDsn:
    """Split ``postgresql://user@host:port/db?search_path=s&pool_max_size=8`` into what
    asyncpg takes (it passes unknown query parameters such as search_path on to the server as
    settings) and what is ours (pool sizes)."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    pool_min = int(query.pop("pool_min_size", POOL_MIN_SIZE))
    pool_max = int(query.pop("pool_max_size", POOL_MAX_SIZE))
    first = query.get("search_path", "").split(",")[0].strip().strip('"')
    schema = first if first and not first.startswith("$") else None
    defaults = {
        "application_name": application_name[:63],  # names the service in pg_stat_activity
        # OLTP statements: a misjudged cost estimate must not buy a JIT compile of tens of ms.
        "jit": "off",
    }
    # asyncpg lets these override the DSN's own, so only what the DSN leaves unset.
    server_settings = {key: value for key, value in defaults.items() if key not in query}
    rebuilt = urlunsplit(parts._replace(query=urlencode(query)))
    return PostgresDsn(rebuilt, schema, pool_min, max(pool_max, pool_min), server_settings)


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(slots=True)
class _Transaction:
    conn: asyncpg.Connection
    # Statements of one transaction share its connection, which runs one at a time; this
    # keeps a gather() inside a transaction from tripping over itself.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    # A task started inside the transaction copies the context variable; once the transaction
    # is over, this flag keeps it from using a connection that went back to the pool.
    open: bool = True


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset hook. asyncpg already rolls back a connection left in a transaction; its
    default reset adds a round trip (RESET ALL, UNLISTEN, ...) per release for session state
    this adapter never changes."""


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(
        self,
        name: str,
        dsn: str,
        *,
        pool_min_size: int | None = None,
        pool_max_size: int | None = None,
    ) -> None:
        self.name = name
        self._span_attributes = {"db.system.name": "postgresql", "db.namespace": name}
        self._dsn = parse_dsn(dsn, f"colony-{name}")
        self.schema = self._dsn.schema
        self._pool_min = pool_min_size or self._dsn.pool_min_size
        self._pool_max = max(pool_max_size or self._dsn.pool_max_size, self._pool_min)
        digest = hashlib.blake2b(f"colony:{self.schema or name}".encode(), digest_size=8)
        self.lock_key = int.from_bytes(digest.digest(), "big", signed=True)
        self._begin = f"BEGIN; SELECT pg_advisory_xact_lock({self.lock_key})"
        self._pool: asyncpg.Pool | None = None
        self._lock: asyncio.Lock | None = None
        self._tx: ContextVar[_Transaction | None] = ContextVar(f"pg-tx-{name}", default=None)
        self._snapshot: ContextVar[_Transaction | None] = ContextVar(
            f"pg-snapshot-{name}", default=None
        )

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn.dsn,
            min_size=self._pool_min,
            max_size=self._pool_max,
            statement_cache_size=_STATEMENT_CACHE_SIZE,
            server_settings=self._dsn.server_settings,
            reset=_keep_session,
        )
        self._lock = asyncio.Lock()
        if self.schema is not None and not await self.fetch_value(
            "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = ?)", (self.schema,)
        ):
            # Only when missing: PostgreSQL checks the right to create schemas before it looks
            # for one, and a service's role that owns its schema (made for it beforehand, see
            # deploy/postgres/roles.sql) has no such right. Under the writers' lock: replicas
            # starting together would otherwise race to create it, and IF NOT EXISTS does not
            # stop the loser's unique violation.
            await self.run_script(f"CREATE SCHEMA IF NOT EXISTS {_quote_identifier(self.schema)}")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _open_tx(self) -> _Transaction | None:
        tx = self._tx.get()
        return tx if tx is not None and tx.open else None

    def in_transaction(self) -> bool:
        return self._open_tx() is not None

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the open transaction commits (not if it rolls back)."""
        tx = self._open_tx()
        if tx is None:
            callback()
        else:
            tx.callbacks.append(callback)

    def _open_snapshot(self) -> _Transaction | None:
        snapshot = self._snapshot.get()
        return snapshot if snapshot is not None and snapshot.open else None

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[datetime]:
        """Reads inside see the database as it was at the moment yielded, whatever commits
        meanwhile. REPEATABLE READ takes its snapshot at the transaction's first statement,
        which here reads the server's clock: the moment yielded is the moment seen. READ ONLY,
        and without the writers' lock, so writers never wait for it. Inside a transaction it
        is that transaction's view (the writers' lock keeps the service's data still)."""
        if self._open_tx() is not None or self._open_snapshot() is not None:
            yield await self.fetch_value("SELECT clock_timestamp()")
            return
        conn = await self._connected_in_transaction(_BEGIN_SNAPSHOT)
        try:
            try:
                moment: datetime = await conn.fetchval("SELECT clock_timestamp()")
            except BaseException as exc:
                await _rollback(conn)
                self._raise_if_lost(exc, conn)
                raise
            snapshot = _Transaction(conn)
            token = self._snapshot.set(snapshot)
            try:
                yield moment
            except BaseException as exc:
                self._raise_if_lost(exc, conn)
                raise
            finally:
                snapshot.open = False
                self._snapshot.reset(token)
                await _rollback(conn)
        finally:
            await self._release(conn)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        if self._open_tx() is not None:
            yield
            return
        if self._open_snapshot() is not None:
            raise RuntimeError(f"{self.name}: a snapshot is read-only; write outside it")
        assert self._lock is not None and self._pool is not None, "database not open"
        # One span per transaction (not per statement), and only inside a sampled trace.
        with tracing.child(
            "db transaction",
            SpanKind.CLIENT,
            self._span_attributes,
        ):
            async with self._lock:
                # BEGIN and take the writers' lock in one round trip.
                conn = await self._connected_in_transaction(self._begin)
                try:
                    tx = _Transaction(conn)
                    token = self._tx.set(tx)
                    try:
                        yield
                    except BaseException as exc:
                        tx.open = False
                        await _rollback(conn)
                        self._raise_if_lost(exc, conn)
                        raise
                    else:
                        tx.open = False
                        await self._commit(conn)
                    finally:
                        self._tx.reset(token)
                finally:
                    await self._release(conn)
        # Outside the transaction's context, so whatever a callback starts does not inherit it.
        for callback in tx.callbacks:
            callback()

    async def _connected_in_transaction(self, begin: str) -> asyncpg.Connection:
        """A pooled connection on which ``begin`` ran: on a fresh one if the first turns out
        dead (nothing ran yet, so trying again repeats nothing)."""
        assert self._pool is not None, "database not open"
        for attempt, pause in enumerate((*_RECONNECT_PAUSES, None)):
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._pool.acquire()
                await conn.execute(begin)
                return conn
            except (*_CONNECTION_LOST, asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
                # An InterfaceError or InternalClientError on our own BEGIN is no mistake in
                # the statement: asyncpg's protocol found the connection closing under it.
                if conn is not None:
                    _discard(conn)
                    await self._release(conn)
                if pause is None:
                    raise ServiceUnavailable(
                        f"The {self.name} database cannot be reached: {exc}"
                    ) from exc
                _log.warning(
                    "database connection lost; trying a fresh one",
                    database=self.name,
                    attempt=attempt + 1,
                    error=repr(exc),
                )
                await asyncio.sleep(pause)
            except BaseException:
                if conn is not None:
                    await _rollback(conn)
                    await self._release(conn)
                raise
        raise AssertionError("unreachable")

    async def _commit(self, conn: asyncpg.Connection) -> None:
        try:
            await conn.execute("COMMIT")
        except BaseException as exc:
            if _connection_lost(exc, conn):
                raise ServiceUnavailable(
                    f"The {self.name} database connection was lost during COMMIT: the"
                    " transaction may or may not have committed."
                ) from exc
            raise

    def _raise_if_lost(self, exc: BaseException, conn: asyncpg.Connection) -> None:
        """``ServiceUnavailable`` if ``exc``, which ended a transaction before its COMMIT, says
        the connection was lost: the server rolled the transaction back."""
        if _connection_lost(exc, conn):
            # asyncpg's own words only when they name the loss: on a statement it had already
            # taken back, they speak of the pool, which would send a reader the wrong way.
            why = f": {exc}" if isinstance(exc, _CONNECTION_LOST) else ""
            raise ServiceUnavailable(
                f"The {self.name} database connection was lost; nothing was committed{why}"
            ) from exc

    async def _release(self, conn: asyncpg.Connection) -> None:
        """Back to the pool. A connection that cannot be reset is closed by the pool, and
        that is no reason to hide the outcome of the transaction that used it."""
        assert self._pool is not None
        try:
            await self._pool.release(conn)
        except Exception as exc:
            _log.warning("a connection could not go back to the pool", error=repr(exc))

    async def execute(self, sql: str, params: Params = ()) -> int:
        statement = translate(sql)
        args = arguments(statement, params)
        tx = self._open_tx()
        if tx is None:
            async with self.transaction():
                return await self.execute(sql, params)
        async with tx.lock:
            return affected_rows(await tx.conn.execute(statement.text, *args))

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        statement = translate(sql)
        args = [arguments(statement, row) for row in rows]
        if not args:
            return
        async with self.transaction():
            tx = self._open_tx()
            assert tx is not None
            async with tx.lock:
                await tx.conn.executemany(statement.text, args)

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        return await self._fetch("fetchrow", sql, params)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        rows: list[Row] = await self._fetch("fetch", sql, params)
        return rows

    async def fetch_value(self, sql: str, params: Params = ()) -> Any:
        return await self._fetch("fetchval", sql, params)

    async def _fetch(self, method: str, sql: str, params: Params) -> Any:
        statement = translate(sql)
        args = arguments(statement, params)
        tx = self._open_tx() or self._open_snapshot()
        if tx is not None:
            async with tx.lock:
                return await getattr(tx.conn, method)(statement.text, *args)
        assert self._pool is not None, "database not open"
        # Outside a transaction: a pooled connection in autocommit, committed data only. A
        # read is repeated on a fresh connection when its connection was lost, which asyncpg
        # may report as an interface or internal error of a protocol torn down under it
        # ("cannot switch to state 11; another operation is in progress"): a read repeats
        # nothing, so any of those is worth a fresh connection.
        for pause in (*_RECONNECT_PAUSES, None):
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._pool.acquire()
                result = await getattr(conn, method)(statement.text, *args)
            except (*_CONNECTION_LOST, asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
                if conn is None:
                    lost = True  # no connection to be had
                else:
                    lost = not isinstance(exc, asyncpg.InterfaceError) or _closed(conn)
                    _discard(conn)
                    await self._release(conn)
                if not lost:
                    raise
                if pause is None:
                    raise ServiceUnavailable(
                        f"The {self.name} database cannot be reached: {exc}"
                    ) from exc
                await asyncio.sleep(pause)
                continue
            except BaseException:
                if conn is not None:
                    await self._release(conn)
                raise
            await self._release(conn)
            return result
        raise AssertionError("unreachable")

    async def run_script(self, script: str) -> None:
        """Run several statements as one atomic script (used by migrations)."""
        async with self.transaction():
            tx = self._open_tx()
            assert tx is not None
            async with tx.lock:
                # No arguments: the simple-query protocol, which takes many statements.
                await tx.conn.execute(script)


_BEGIN_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


async def _rollback(conn: asyncpg.Connection) -> None:
    """Roll back if anything is open; a connection that cannot is left to the pool, which
    closes it, and the error that brought us here is the one worth raising. A connection the
    server closed has been taken back by asyncpg already, and asking it anything raises
    "released back to the pool": that too is suppressed."""
    with contextlib.suppress(Exception):
        if not conn.is_closed() and conn.is_in_transaction():
            await conn.execute("ROLLBACK")


def _closed(conn: asyncpg.Connection) -> bool:
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True  # asyncpg took it back to the pool when it saw the connection close


def _connection_lost(exc: BaseException, conn: asyncpg.Connection) -> bool:
    """Whether ``exc`` says the connection is gone: by its kind, or an interface error on a
    connection that has since closed ("connection is closed", "released back to the pool")."""
    if isinstance(exc, _CONNECTION_LOST):
        return True
    if isinstance(exc, (asyncpg.InterfaceError, asyncpg.InternalClientError)):
        return _closed(conn)
    return False


def _discard(conn: asyncpg.Connection) -> None:
    """Close a connection that failed our BEGIN, so the pool opens a fresh one in its place."""
    with contextlib.suppress(Exception):
        if not conn.is_closed():
            conn.terminate()
