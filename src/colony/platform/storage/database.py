"""The database interface every service uses, whatever engine stands behind it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

Params = Mapping[str, Any] | Sequence[Any]
Row = Any  # a mapping-and-sequence row (sqlite3.Row, asyncpg.Record); by name or position


class Database(Protocol):
    """A service's own database.

    ``transaction()`` is the unit of work: everything inside commits or rolls back together,
    and a nested ``transaction()`` joins the one already open. Reads outside a transaction see
    committed data only, each statement its own moment; reads inside ``snapshot()`` all see
    the database as it was at the one moment it yields (a read-only transaction; writing
    inside it is an error), which is how an audit compares tables without a commit landing
    between two of its reads. ``dialect`` ("sqlite" or "postgresql") is for the few statements that
    must differ between engines, such as full-text search.
    """

    name: str
    dialect: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def transaction(self) -> AbstractAsyncContextManager[None]: ...
    def snapshot(self) -> AbstractAsyncContextManager[datetime]: ...
    def in_transaction(self) -> bool: ...
    def after_commit(self, callback: Callable[[], None]) -> None: ...
    async def execute(self, sql: str, params: Params = ()) -> int: ...
    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None: ...
    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None: ...
    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]: ...
    async def fetch_value(self, sql: str, params: Params = ()) -> Any: ...
    async def run_script(self, script: str) -> None: ...


def open_database(name: str, dsn: str, sole_writer: bool = False) -> Database:
    """The adapter for a DSN: ``sqlite:///path`` or ``postgresql://user@host/db?search_path=s``.

    ``sole_writer``: no other process writes to this database while this one runs (a service
    without replicas), which lets SQLite commit units of work in groups."""
    if dsn.startswith("sqlite:///"):
        from colony.platform.storage.sqlite import SqliteDatabase

        return SqliteDatabase(name, dsn.removeprefix("sqlite:///"), group_commit=sole_writer)
    if dsn.startswith(("postgresql://", "postgres://")):
        # Imported here: asyncpg is an optional extra, and the one-process topology never needs it.
        from colony.platform.storage.postgres import PostgresDatabase

        return PostgresDatabase(name, dsn)
    raise ValueError(f"unsupported database DSN for {name}: {dsn!r}")
