"""Storage: transactions as units of work, and versioned migrations applied once, on SQLite
and on PostgreSQL alike."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from colony.platform.storage import Database, open_database
from colony.platform.storage.migrations import discover, migrate, translate
from colony.platform.storage.postgres import affected_rows, arguments, parse_dsn
from colony.platform.storage.postgres import translate as translate_sql
from colony.platform.storage.sqlite import SqliteDatabase
from postgres_support import fresh_schema_dsns, require_postgres
from waiting import eventually

# "sqlite-grouped": SQLite as a service without replicas has it, committing units in groups.
DIALECTS = ["sqlite", "sqlite-grouped", "postgresql"]


async def opened(dialect: str, tmp_path: Path, name: str = "test") -> Database:
    if dialect.startswith("sqlite"):
        dsn = f"sqlite:///{tmp_path / (name + '.db')}"
    else:
        require_postgres()
        dsn = fresh_schema_dsns("storage", [name])[name]
    database = open_database(name, dsn, sole_writer=dialect == "sqlite-grouped")
    await database.open()
    return database


@pytest.fixture(params=DIALECTS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    database = await opened(request.param, tmp_path)
    yield database
    await database.close()


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[Database]:
    database = await opened("postgresql", tmp_path)
    yield database
    await database.close()


async def table_exists(db: Database, name: str) -> bool:
    if db.dialect == "sqlite":
        return await db.fetch_one("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)) is not None
    return await db.fetch_value("SELECT to_regclass(?) IS NOT NULL", (name,)) is True


def elsewhere(coroutine: Any) -> asyncio.Task[Any]:
    """Run ``coroutine`` as another request would: in a context of its own, outside any
    transaction the caller has open."""
    return asyncio.create_task(coroutine, context=contextvars.Context())


async def test_migrations_apply_in_order_once(db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_create.sql").write_text("CREATE TABLE things (id INTEGER PRIMARY KEY);")
    (folder / "0002_column.sql").write_text("ALTER TABLE things ADD COLUMN name TEXT;")
    assert [m.version for m in await migrate(db, "things", folder)] == [1, 2]
    assert await migrate(db, "things", folder) == []
    await db.execute("INSERT INTO things (name) VALUES ('x')")
    assert await db.fetch_value("SELECT id FROM things") == 1  # numbered like a rowid


async def test_a_failing_migration_leaves_no_trace(db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_create.sql").write_text(
        "CREATE TABLE half (id INTEGER);\nINSERT INTO missing_table VALUES (1);"
    )
    with pytest.raises(Exception, match="missing_table"):
        await migrate(db, "half", folder)
    assert not await table_exists(db, "half")
    assert await db.fetch_value("SELECT count(*) FROM schema_migrations") == 0


async def test_badly_named_migrations_are_refused(db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "create.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match=r"0001_name\.sql"):
        await migrate(db, "bad", folder)


async def test_a_dialects_own_file_replaces_the_shared_one(db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_create.sql").write_text("CREATE TABLE shared (id INTEGER);")
    (folder / f"0001_create.{db.dialect}.sql").write_text("CREATE TABLE own (id INTEGER);")
    await migrate(db, "own", folder)
    assert await table_exists(db, "own") and not await table_exists(db, "shared")


async def test_replicas_migrating_at_once_apply_each_version_once(tmp_path):
    require_postgres()
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_create.sql").write_text("CREATE TABLE once (id INTEGER PRIMARY KEY);")
    (folder / "0002_row.sql").write_text("INSERT INTO once (id) VALUES (1);")
    dsn = fresh_schema_dsns("storage", ["replicated"])["replicated"]
    replicas = [open_database("replicated", dsn) for _ in range(3)]
    await asyncio.gather(*(replica.open() for replica in replicas))
    try:
        applied = await asyncio.gather(
            *(elsewhere(migrate(replica, "once", folder)) for replica in replicas)
        )
        assert sum(len(versions) for versions in applied) == 2
        assert await replicas[0].fetch_value("SELECT count(*) FROM once") == 1
    finally:
        await asyncio.gather(*(replica.close() for replica in replicas))


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
        assert await elsewhere(db.fetch_value("SELECT count(*) FROM t")) == 0
    assert await elsewhere(db.fetch_value("SELECT count(*) FROM t")) == 1


async def test_after_commit_runs_only_on_commit(db):
    calls: list[str] = []
    async with db.transaction():
        db.after_commit(lambda: calls.append("committed"))
    with pytest.raises(RuntimeError):
        async with db.transaction():
            db.after_commit(lambda: calls.append("rolled back"))
            raise RuntimeError
    assert calls == ["committed"]


async def test_work_started_in_a_transaction_does_not_run_in_it_after_it_ends(db):
    await db.execute("CREATE TABLE t (v INTEGER)")
    started: list[asyncio.Task[bool]] = []

    async def later() -> bool:
        await asyncio.sleep(0.01)
        async with db.transaction():  # its own transaction, under the writers' lock
            await db.execute("INSERT INTO t VALUES (2)")
        return db.in_transaction()

    async with db.transaction():
        await db.execute("INSERT INTO t VALUES (1)")
        started.append(asyncio.create_task(later()))
        db.after_commit(lambda: started.append(asyncio.create_task(later())))
    assert await asyncio.gather(*started) == [False, False]
    assert await db.fetch_value("SELECT count(*) FROM t") == 3


async def test_writers_take_turns_so_check_then_insert_holds(db):
    """Two units of work that each insert only if nobody has: exactly one does, because a
    second writer cannot start before the first commits (SQLite's single writer, and
    PostgreSQL's advisory lock)."""
    await db.execute("CREATE TABLE claims (who TEXT NOT NULL)")

    async def claim(who: str) -> None:
        async with db.transaction():
            if await db.fetch_value("SELECT count(*) FROM claims") == 0:
                await asyncio.sleep(0.02)  # another request's turn, were it allowed in
                await db.execute("INSERT INTO claims (who) VALUES (?)", (who,))

    await asyncio.gather(*(elsewhere(claim(f"writer-{n}")) for n in range(4)))
    assert await db.fetch_value("SELECT count(*) FROM claims") == 1


async def test_a_snapshot_sees_one_moment_while_others_see_each_commit(db):
    """Two reads of a snapshot agree though a transfer commits between them; a read outside
    it, and the next snapshot, see the transfer."""
    await db.execute("CREATE TABLE accounts (name TEXT PRIMARY KEY, balance INTEGER)")
    await db.execute_many(
        "INSERT INTO accounts (name, balance) VALUES (?, ?)", [("a", 100), ("b", 0)]
    )

    async def transfer() -> None:
        async with db.transaction():
            await db.execute("UPDATE accounts SET balance = balance - 30 WHERE name = 'a'")
            await db.execute("UPDATE accounts SET balance = balance + 30 WHERE name = 'b'")

    async with db.snapshot() as moment:
        read_b = "SELECT balance FROM accounts WHERE name = 'b'"
        a = await db.fetch_value("SELECT balance FROM accounts WHERE name = 'a'")
        await elsewhere(transfer())
        assert await elsewhere(db.fetch_value(read_b)) == 30
        b = await db.fetch_value(read_b)
        assert (a, b) == (100, 0)
        with pytest.raises(RuntimeError, match="read-only"):
            await db.execute("UPDATE accounts SET balance = 0")
    assert moment.tzinfo is not None
    async with db.snapshot() as later:
        assert await db.fetch_value("SELECT balance FROM accounts WHERE name = 'b'") == 30
    assert later > moment
    assert await db.fetch_value("SELECT sum(balance) FROM accounts") == 100


async def test_parameters_rows_and_counts(db):
    schema = (
        "CREATE TABLE kv (k TEXT PRIMARY KEY, n INTEGER NOT NULL, b BLOB, x REAL);"
        "CREATE INDEX kv_n ON kv (n);"
    )
    await db.run_script(translate(schema, db.dialect))
    await db.execute_many(
        "INSERT INTO kv (k, n, b, x) VALUES (?, ?, ?, ?)",
        [("a", 1, b"\x00\xff", 1.5), ("b", 2, None, 2.0), ("c", 3, b"", 1e9 + 0.25)],
    )
    assert await db.execute("UPDATE kv SET n = n + 1 WHERE n >= :low", {"low": 2}) == 2
    assert await db.execute("DELETE FROM kv WHERE k = 'nope'") == 0
    row = await db.fetch_one("SELECT k, n, b, x FROM kv WHERE k = :k OR k = :k", {"k": "a"})
    assert row is not None
    assert (row[0], row["n"], row["b"], row[3]) == ("a", 1, b"\x00\xff", 1.5)
    assert [tuple(r) for r in await db.fetch_all("SELECT k, n FROM kv ORDER BY k")] == [
        ("a", 1),
        ("b", 3),
        ("c", 4),
    ]
    assert await db.fetch_value("SELECT x FROM kv WHERE k = 'c'") == 1e9 + 0.25  # 8 bytes
    assert await db.fetch_value("SELECT 'a?b' || ':c' FROM kv WHERE k = ?", ("a",)) == "a?b:c"
    assert await db.fetch_one("SELECT k FROM kv WHERE k = ?", ("zzz",)) is None


async def test_postgresql_creates_its_schema_and_names_itself(pg):
    assert pg.dialect == "postgresql"
    assert await pg.fetch_value("SELECT current_schema()") == pg.schema  # type: ignore[attr-defined]
    assert await pg.fetch_value("SELECT current_setting('application_name')") == "colony-test"


def test_placeholders_become_numbered_parameters():
    assert translate_sql("SELECT ? , ?").text == "SELECT $1 , $2"
    named = translate_sql("SELECT :a, :b, :a, x::text, ':c', \"?\" -- :d ?\n/* ? */")
    assert named.text == "SELECT $1, $2, $1, x::text, ':c', \"?\" -- :d ?\n/* ? */"
    assert named.names == ("a", "b")
    assert translate_sql("SELECT 1").names is None
    assert arguments(translate_sql("SELECT 1"), {}) == ()  # as sqlite3 takes it
    assert arguments(named, {"b": 2, "a": 1, "unused": 3}) == [1, 2]
    with pytest.raises(ValueError, match="mixed"):
        translate_sql("SELECT ?, :a")


def test_status_tags_become_row_counts():
    assert [affected_rows(s) for s in ("INSERT 0 3", "UPDATE 2", "DELETE 0")] == [3, 2, 0]
    assert affected_rows("CREATE TABLE") == -1


def test_dsn_parameters_of_our_own_are_taken_out():
    parsed = parse_dsn("postgresql://u@h:5432/db?search_path=shop&pool_max_size=3&jit=on")
    assert parsed.schema == "shop" and parsed.pool_max_size == 3
    assert "pool_max_size" not in parsed.dsn and "search_path=shop" in parsed.dsn
    assert parsed.server_settings == {"application_name": "colony"}


def test_sqlite_migrations_are_rewritten_for_postgresql():
    sql = (
        "CREATE TABLE t (\n"
        "    seq INTEGER PRIMARY KEY AUTOINCREMENT, -- the rowid, in sqlite\n"
        "    data BLOB NOT NULL, due REAL, n INTEGER DEFAULT 0, note TEXT DEFAULT 'INTEGER'\n"
        ") WITHOUT ROWID;"
    )
    assert translate(sql, "postgresql") == (
        "CREATE TABLE t (\n"
        "    seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, -- the rowid, in sqlite\n"
        "    data BYTEA NOT NULL, due DOUBLE PRECISION, n BIGINT DEFAULT 0,"
        " note TEXT DEFAULT 'INTEGER'\n"
        ");"
    )
    assert translate(sql, "sqlite") == sql
    with pytest.raises(ValueError, match=r"NNNN_name\.postgresql\.sql"):
        translate("CREATE VIRTUAL TABLE f USING fts5 (x);", "postgresql")


def test_every_shipped_migration_has_a_postgresql_form():
    root = Path(__file__).parents[2] / "src" / "colony"
    folders = [p for p in root.rglob("migrations") if p.is_dir()]
    assert folders
    for folder in folders:
        assert discover(folder.parent.name, folder, "postgresql")


@pytest.fixture
async def grouped(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = await opened("sqlite-grouped", tmp_path)
    assert isinstance(database, SqliteDatabase) and database.group_commit
    yield database
    await database.close()


def count_commits(database: SqliteDatabase) -> list[str]:
    commits: list[str] = []
    assert database._writer is not None
    database._writer.set_trace_callback(
        lambda sql: commits.append(sql) if sql == "COMMIT" else None
    )
    return commits


async def test_units_of_one_turn_commit_together(grouped):
    await grouped.execute("CREATE TABLE t (v INTEGER)")
    commits = count_commits(grouped)

    async def unit(v: int) -> int:
        async with grouped.transaction():
            await grouped.execute("INSERT INTO t VALUES (?)", (v,))
        # Returned only once committed: another connection sees it.
        return await elsewhere(grouped.fetch_value("SELECT count(*) FROM t WHERE v = ?", (v,)))

    assert await asyncio.gather(*(elsewhere(unit(v)) for v in range(20))) == [1] * 20
    assert 1 <= len(commits) < 5


async def test_a_failing_unit_rolls_back_alone_in_its_group(grouped):
    await grouped.execute("CREATE TABLE t (v INTEGER)")
    commits = count_commits(grouped)
    calls: list[int] = []

    async def unit(v: int) -> None:
        async with grouped.transaction():
            await grouped.execute("INSERT INTO t VALUES (?)", (v,))
            grouped.after_commit(lambda: calls.append(v))
            if v == 2:
                raise RuntimeError("no")

    results = await asyncio.gather(
        *(elsewhere(unit(v)) for v in range(1, 5)), return_exceptions=True
    )
    assert [isinstance(r, RuntimeError) for r in results] == [False, True, False, False]
    assert [r[0] for r in await grouped.fetch_all("SELECT v FROM t ORDER BY v")] == [1, 3, 4]
    assert sorted(calls) == [1, 3, 4]
    assert len(commits) == 1


async def test_a_unit_inside_at_the_end_of_the_turn_commits_its_group(grouped):
    """The turn ends while a unit awaits inside it: the units before it are committed when
    it leaves, not left waiting for another turn."""
    await grouped.execute("CREATE TABLE t (v INTEGER)")

    async def quick() -> None:
        async with grouped.transaction():
            await grouped.execute("INSERT INTO t VALUES (1)")

    async def slow() -> None:
        async with grouped.transaction():
            await grouped.execute("INSERT INTO t VALUES (2)")
            await asyncio.sleep(0.05)

    async def quick_then_slow() -> None:
        first = elsewhere(quick())
        await asyncio.sleep(0)
        await asyncio.gather(first, elsewhere(slow()))

    async with asyncio.timeout(2):
        await quick_then_slow()
    assert await grouped.fetch_value("SELECT count(*) FROM t") == 2


async def test_sqlite_checkpoints_its_log_in_the_background(tmp_path):
    database = SqliteDatabase("test", str(tmp_path / "log.db"))
    await database.open()
    try:
        await database.execute("CREATE TABLE blobs (b BLOB)")
        await database.execute_many("INSERT INTO blobs VALUES (?)", [(b"x" * 1024,)] * 2000)
        main_file = tmp_path / "log.db"
        # Committed, but only to the write-ahead log: the commit itself copied nothing back ...
        assert main_file.stat().st_size < 256 * 1024

        async def copied_back() -> bool:
            return main_file.stat().st_size > 2 * 1024 * 1024

        # ... which the checkpointer does shortly after, off the event loop.
        await eventually(copied_back, within=5.0)
        assert await database.fetch_value("SELECT count(*) FROM blobs") == 2000
    finally:
        await database.close()
