"""Storage: transactions as units of work, and versioned migrations applied once."""

from __future__ import annotations

import pytest

from colony.platform.storage.migrations import migrate
from colony.platform.storage.sqlite import SqliteDatabase


@pytest.fixture
async def db(tmp_path):
    database = SqliteDatabase("test", str(tmp_path / "test.db"))
    await database.open()
    yield database
    await database.close()


async def test_migrations_apply_in_order_once(db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_create.sql").write_text("CREATE TABLE things (id INTEGER PRIMARY KEY);")
    (folder / "0002_column.sql").write_text("ALTER TABLE things ADD COLUMN name TEXT;")
    assert [m.version for m in await migrate(db, "things", folder)] == [1, 2]
    assert await migrate(db, "things", folder) == []
    await db.execute("INSERT INTO things (name) VALUES ('x')")


async def test_a_failing_migration_leaves_no_trace(db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_create.sql").write_text(
        "CREATE TABLE half (id INTEGER);\nINSERT INTO missing_table VALUES (1);"
    )
    with pytest.raises(Exception, match="missing_table"):
        await migrate(db, "half", folder)
    assert await db.fetch_one("SELECT name FROM sqlite_master WHERE name = 'half'") is None
    assert await db.fetch_value("SELECT count(*) FROM schema_migrations") == 0


async def test_badly_named_migrations_are_refused(db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "create.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match=r"0001_name\.sql"):
        await migrate(db, "bad", folder)


async def test_a_transaction_rolls_back_as_a_whole(db):
    await db.execute("CREATE TABLE t (v INTEGER)")
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.execute("INSERT INTO t VALUES (1)")
            async with db.transaction():  # nested: joins the outer one
                await db.execute("INSERT INTO t VALUES (2)")
            raise RuntimeError
    assert await db.fetch_value("SELECT count(*) FROM t") == 0


async def test_reads_outside_a_transaction_see_only_committed_rows(db):
    await db.execute("CREATE TABLE t (v INTEGER)")
    async with db.transaction():
        await db.execute("INSERT INTO t VALUES (1)")
        assert await db.fetch_value("SELECT count(*) FROM t") == 1  # own writes
        outside = db._reader.execute("SELECT count(*) FROM t").fetchone()[0]
        assert outside == 0


async def test_after_commit_runs_only_on_commit(db):
    calls: list[str] = []
    async with db.transaction():
        db.after_commit(lambda: calls.append("committed"))
    with pytest.raises(RuntimeError):
        async with db.transaction():
            db.after_commit(lambda: calls.append("rolled back"))
            raise RuntimeError
    assert calls == ["committed"]
