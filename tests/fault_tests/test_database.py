"""Database outages for one service, against stand-in service processes: a SQLite file
locked by the injector for the duration, a PostgreSQL service's connections terminated for
the duration (and nobody else's)."""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.request
import uuid

import asyncpg
import pytest
from fault_support import fake_services

from colony.faults import fault_from_spec
from colony.faults.database import DatabaseOutage
from postgres_support import postgres_url, require_postgres


def _write(path, timeout: float = 0.2) -> None:
    with sqlite3.connect(path, timeout=timeout) as db:
        db.execute("INSERT INTO payments_test (note) VALUES ('x')")


async def test_a_locked_sqlite_file_refuses_writes_until_healed(tmp_path):
    path = tmp_path / "payments.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE payments_test (note TEXT)")
    with fake_services(tmp_path, {"payments": None}) as topology:
        fault = fault_from_spec("database:payments", topology)
        assert isinstance(fault, DatabaseOutage)
        await fault.inject()
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                _write(path)
            with sqlite3.connect(path) as reader:  # WAL: readers still read
                assert reader.execute("SELECT count(*) FROM payments_test").fetchone() == (0,)
        finally:
            await fault.heal()
        _write(path)


async def test_a_missing_sqlite_file_is_not_locked_into_existence(tmp_path):
    with fake_services(tmp_path, {"payments": None}) as topology:
        fault = fault_from_spec("database:payments", topology)
        with pytest.raises(Exception, match="does not exist"):
            await fault.inject()
    assert not (tmp_path / "payments.db").exists()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health/ready", timeout=3) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def test_postgresql_connections_of_the_service_are_terminated_until_healed(tmp_path):
    require_postgres()
    dsn = postgres_url()
    name = f"colony-faults-test-{uuid.uuid4().hex[:6]}"
    # A bystander with the same application_name as the service's: never touched.
    bystander = await asyncpg.connect(dsn, server_settings={"application_name": name})
    env = {"COLONY_PAYMENTS_DSN": dsn, "PGAPPNAME": name}
    try:
        with fake_services(tmp_path, {"payments": dsn}, env) as topology:
            url = topology.process("payments-1").url
            assert await asyncio.to_thread(_ready, url)
            fault = fault_from_spec("database:payments", topology)
            assert isinstance(fault, DatabaseOutage)
            await fault.inject()
            try:
                await asyncio.sleep(0.3)
                assert fault.terminated >= 1
                assert not await asyncio.to_thread(_ready, url)  # cut again on reconnecting
                assert await bystander.fetchval("SELECT 1") == 1
            finally:
                await fault.heal()  # waits until the service is ready again
            assert await asyncio.to_thread(_ready, url)
    finally:
        await bystander.close()
