"""What the messaging tests share: a deposit event and a database with the platform's tables
and a balances table for a consumer's effect."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from colony.platform.messaging import Event
from colony.platform.storage.migrations import PLATFORM_MIGRATIONS, migrate
from colony.platform.storage.sqlite import SqliteDatabase


class Deposited(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "test.deposited"
    account: str
    amount: int


async def open_db(path: Path, name: str) -> SqliteDatabase:
    db = SqliteDatabase(name, str(path / f"{name}.db"))
    await db.open()
    await migrate(db, "platform", PLATFORM_MIGRATIONS)
    await db.run_script(
        "CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, amount INTEGER NOT NULL);"
    )
    return db
