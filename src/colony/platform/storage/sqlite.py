"""SQLite, in WAL mode, driven synchronously from the event loop.

Why not aiosqlite: its thread hop caps it near 4.4k transactions/s on this class of machine,
while a commit in WAL with ``synchronous=NORMAL`` takes ~10 µs. Statements here are short
(indexed lookups, one-row writes, a bounded FTS query), so running them inline costs less than
handing them to a thread. Writers take an asyncio lock, so one unit of work at a time owns the
write connection even when it awaits inside; readers use a second connection and see only
committed data.

The one thing that does go to a thread is the WAL checkpoint. Left automatic, every thousandth
page made some commit on the event loop copy the log back into the database and fsync it:
a third of a small commit's cost, measured. A checkpoint every half second from a thread of
its own (SQLite releases the GIL while it works) takes that off the loop and onto the other
core, and copies a page that changed many times in between only once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from colony.platform.storage.database import Params, Row

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA cache_size=-32000",
    # Back to this size after a checkpoint that let the log grow past it.
    "PRAGMA journal_size_limit=67108864",
)
_CHECKPOINT_SECONDS = 0.5


class _Transaction:
    __slots__ = ("callbacks", "open")

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []
        # A task started inside the transaction copies the context variable; once the
        # transaction is over this flag keeps that task from writing outside any lock.
        self.open = True


class SqliteDatabase:
    dialect = "sqlite"

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock: asyncio.Lock | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._checkpoint_lock = threading.Lock()
        self._tx: ContextVar[_Transaction | None] = ContextVar(f"sqlite-tx-{name}", default=None)

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

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        if self._in_tx():
            yield
            return
        assert self._lock is not None and self._writer is not None, "database not open"
        tx = _Transaction()
        async with self._lock:
            self._writer.execute("BEGIN IMMEDIATE")
            token = self._tx.set(tx)
            try:
                yield
            except BaseException:
                tx.open = False
                self._writer.execute("ROLLBACK")
                raise
            else:
                tx.open = False
                self._writer.execute("COMMIT")
            finally:
                self._tx.reset(token)
        # Outside the transaction's context, so a task a callback starts does not inherit it.
        for callback in tx.callbacks:
            callback()

    def _conn(self) -> sqlite3.Connection:
        conn = self._writer if self._in_tx() else self._reader
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
            try:
                # The ";" ends a last statement written without one.
                self._writer.executescript(f"BEGIN IMMEDIATE;\n{script}\n;COMMIT;")
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise
