"""SQLite, in WAL mode, driven synchronously from the event loop.

Why not aiosqlite: its thread hop caps it near 4.4k transactions/s on this class of machine,
while a commit in WAL with ``synchronous=NORMAL`` takes ~10 µs. Statements here are short
(indexed lookups, one-row writes, a bounded FTS query), so running them inline costs less than
handing them to a thread. Writers take an asyncio lock, so one unit of work at a time owns the
write connection even when it awaits inside; readers use a second connection and see only
committed data.

Units of work commit in groups. A unit runs inside a savepoint of a transaction left open
until the event loop's next turn, and units that start before then join it; the first turn
with no unit inside commits them all, and each unit's ``transaction()`` returns only once that
commit is done. A commit writes every page it changed to the log, and units of one turn
share most of their pages (an index's last leaf, the outbox's tail), so one commit per turn
writes a fraction of what one per unit did. A unit that fails rolls back to its savepoint
alone.

The one thing that does go to a thread is the WAL checkpoint. Left automatic, every thousandth
page made some commit on the event loop copy the log back into the database and fsync it:
a third of a small commit's cost, measured. A checkpoint every half second from a thread of
its own (SQLite releases the GIL while it works) takes that off the loop and onto the other
core, and copies a page that changed many times in between only once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from opentelemetry.trace import SpanKind

from colony.platform.clock import utc_now
from colony.platform.logging import get_logger
from colony.platform.observability import tracing
from colony.platform.storage.database import Params, Row

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA cache_size=-32000",
    # A connection drops its page cache whenever another one has committed, as the writer
    # does all the time: the reader's next query then reads its pages again with system calls
    # (40 µs for a lookup by key, against 8 µs with the file mapped, in a micro-benchmark; the
    # checkout benchmark, whose reads are mostly inside transactions, showed no change).
    "PRAGMA mmap_size=1073741824",
    # Back to this size after a checkpoint that let the log grow past it.
    "PRAGMA journal_size_limit=67108864",
)
_CHECKPOINT_SECONDS = 0.5
_log = get_logger("sqlite")


class _Transaction:
    """One unit of work."""

    __slots__ = ("callbacks", "context", "open")

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []
        self.context: contextvars.Context | None = None
        # A task started inside the transaction copies the context variable; once the
        # transaction is over this flag keeps that task from writing outside any lock.
        self.open = True


class _Snapshot:
    """A read transaction on a connection of its own, so the other readers keep seeing the
    newest commits while it holds its moment still."""

    __slots__ = ("conn", "open")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.open = True


class _Group:
    """Units of work sharing one SQLite transaction, committed together."""

    __slots__ = ("closing", "committed", "units")

    def __init__(self, committed: asyncio.Future[None]) -> None:
        self.units: list[_Transaction] = []
        self.committed = committed
        self.closing = False
        """The unit inside commits the group as it leaves: set from the start for a group of
        one (no group commit), else when the turn ended with a unit inside."""


class SqliteDatabase:
    dialect = "sqlite"

    def __init__(self, name: str, path: str, group_commit: bool = False) -> None:
        self.name = name
        self.path = path
        self._span_attributes = {"db.system.name": "sqlite", "db.namespace": name}
        # Only where no other connection writes: a group holds the write lock across a turn
        # of the loop, and a writer elsewhere in this process would block the loop waiting.
        self.group_commit = group_commit
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock: asyncio.Lock | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._checkpoint_lock = threading.Lock()
        self._group: _Group | None = None
        self._tx: contextvars.ContextVar[_Transaction | None] = contextvars.ContextVar(
            f"sqlite-tx-{name}", default=None
        )
        self._snapshot: contextvars.ContextVar[_Snapshot | None] = contextvars.ContextVar(
            f"sqlite-snapshot-{name}", default=None
        )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        for pragma in _PRAGMAS:
            conn.execute(pragma)
        return conn

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect()
        self._reader = self._writer if self.path == ":memory:" else self._connect()
        self._lock = asyncio.Lock()
        if self.path != ":memory:":
            for conn in (self._writer, self._reader):
                conn.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = asyncio.create_task(
                self._checkpoint_forever(), name=f"sqlite-checkpoint-{self.name}"
            )

    async def close(self) -> None:
        if self._group is not None:
            self._commit(self._group)
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        for conn in {id(c): c for c in (self._reader, self._writer) if c}.values():
            conn.close()  # the last connection to close checkpoints what is left
        self._writer = self._reader = None

    async def _checkpoint_forever(self) -> None:
        conn = self._connect()

        def checkpoint() -> None:
            with self._checkpoint_lock, contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

        try:
            while True:
                await asyncio.sleep(_CHECKPOINT_SECONDS)
                await asyncio.to_thread(checkpoint)
        finally:
            # A cancelled wait leaves the thread running its checkpoint: close after it.
            with self._checkpoint_lock:
                conn.close()

    def _in_tx(self) -> bool:
        tx = self._tx.get()
        return tx is not None and tx.open

    def in_transaction(self) -> bool:
        return self._in_tx()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the open transaction commits (not if it rolls back)."""
        tx = self._tx.get()
        if tx is None or not tx.open:
            callback()
        else:
            tx.callbacks.append(callback)

    def _open_snapshot(self) -> _Snapshot | None:
        snapshot = self._snapshot.get()
        return snapshot if snapshot is not None and snapshot.open else None

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[datetime]:
        """Reads inside see the database as it was at the moment yielded, whatever commits
        meanwhile: a deferred ``BEGIN`` in WAL mode pins the log position at its first read.
        Inside a transaction it is that transaction's view (the writer lock keeps it still)."""
        if self._in_tx() or self._open_snapshot() is not None:
            yield utc_now()
            return
        assert self._lock is not None and self._writer is not None, "database not open"
        if self.path == ":memory:":
            # One connection only: hold the writers off instead, after committing their group.
            async with self._lock:
                if self._group is not None:
                    self._commit(self._group)
                snapshot = _Snapshot(self._writer)
                token = self._snapshot.set(snapshot)
                try:
                    yield utc_now()
                finally:
                    snapshot.open = False
                    self._snapshot.reset(token)
            return
        snapshot = _Snapshot(self._connect())
        snapshot.conn.execute("PRAGMA query_only=ON")
        token = self._snapshot.set(snapshot)
        try:
            snapshot.conn.execute("BEGIN")
            snapshot.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # pin it
            yield utc_now()
        finally:
            snapshot.open = False
            self._snapshot.reset(token)
            snapshot.conn.close()  # ends the read transaction

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        if self._in_tx():
            yield
            return
        if self._open_snapshot() is not None:
            raise RuntimeError(f"{self.name}: a snapshot is read-only; write outside it")
        assert self._lock is not None and self._writer is not None, "database not open"
        tx = _Transaction()
        # One span per transaction (not per statement), and only inside a sampled trace.
        with tracing.child(
            "db transaction",
            SpanKind.CLIENT,
            self._span_attributes,
        ):
            async with self._lock:
                group = self._join_group()
                self._writer.execute("SAVEPOINT unit")
                token = self._tx.set(tx)
                try:
                    yield
                except BaseException:
                    tx.open = False
                    self._undo(group)
                    if group.closing and self._group is group:
                        self._commit(group)
                    raise
                else:
                    tx.open = False
                    self._writer.execute("RELEASE unit")
                finally:
                    self._tx.reset(token)
            # Outside the transaction's context, so a task a callback starts does not inherit it.
            tx.context = contextvars.copy_context()
            group.units.append(tx)
            if group.closing:
                self._commit(group)
        await group.committed

    def _join_group(self) -> _Group:
        assert self._writer is not None
        if self._group is None:
            self._writer.execute("BEGIN IMMEDIATE")
            loop = asyncio.get_running_loop()
            self._group = _Group(loop.create_future())
            if self.group_commit:
                loop.call_soon(self._end_of_turn, self._group, context=contextvars.Context())
            else:
                self._group.closing = True  # a group of one
        return self._group

    def _end_of_turn(self, group: _Group) -> None:
        if self._group is not group:
            return
        if self._lock is not None and self._lock.locked():
            group.closing = True
        else:
            self._commit(group)

    def _commit(self, group: _Group) -> None:
        assert self._writer is not None
        self._group = None
        if not group.units:
            self._writer.execute("ROLLBACK")  # its only unit failed: nothing to keep
            group.committed.cancel()  # and no one waits on it
            return
        try:
            self._writer.execute("COMMIT")
        except BaseException as exc:
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
            self._fail(group, exc)
            return
        group.committed.set_result(None)
        for unit in group.units:
            assert unit.context is not None
            for callback in unit.callbacks:
                try:
                    unit.context.run(callback)
                except Exception:
                    _log.exception("an after-commit callback failed", database=self.name)

    def _undo(self, group: _Group) -> None:
        assert self._writer is not None
        if self._writer.in_transaction:
            self._writer.execute("ROLLBACK TO unit")
            self._writer.execute("RELEASE unit")
            return
        # SQLite rolled the whole transaction back (an I/O error, say): the units that had
        # joined it lost their work too.
        self._group = None
        self._fail(group, sqlite3.OperationalError("the transaction was rolled back"))

    @staticmethod
    def _fail(group: _Group, exc: BaseException) -> None:
        if group.units:
            group.committed.set_exception(exc)
        else:
            group.committed.cancel()  # no one waits on it

    def _conn(self) -> sqlite3.Connection:
        # Every statement asks this: the context variables are read once each.
        tx = self._tx.get()
        if tx is not None and tx.open:
            conn = self._writer
        else:
            snapshot = self._snapshot.get()
            conn = snapshot.conn if snapshot is not None and snapshot.open else self._reader
        assert conn is not None, "database not open"
        return conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        if not self._in_tx():
            async with self.transaction():
                return self._conn().execute(sql, params).rowcount
        return self._conn().execute(sql, params).rowcount

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        async with self.transaction():
            self._conn().executemany(sql, rows)

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        return self._conn().execute(sql, params).fetchone()

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn().execute(sql, params).fetchall()

    async def fetch_value(self, sql: str, params: Params = ()) -> Any:
        row = self._conn().execute(sql, params).fetchone()
        return None if row is None else row[0]

    async def run_script(self, script: str) -> None:
        """Run several statements as one atomic script (used by migrations)."""
        assert self._lock is not None and self._writer is not None, "database not open"
        async with self._lock:
            if self._group is not None:
                self._commit(self._group)
            try:
                # The ";" ends a last statement written without one.
                self._writer.executescript(f"BEGIN IMMEDIATE;\n{script}\n;COMMIT;")
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise
