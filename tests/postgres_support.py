"""The PostgreSQL server the PostgreSQL tests use: ``COLONY_TEST_POSTGRES_URL``, by default the
one on this machine. Absent, those tests skip, unless ``COLONY_REQUIRE_SERVICES=1`` makes that a
failure. Each test gets fresh schemas (one per service) in that database, named after the
test run, so runs never see each other's rows; or, where the services' own roles matter, a
fresh database set up as the deployments set up theirs (:func:`service_roles_database`)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

# Every schema a run makes is named colony_test_<start time>_<run id>_...: a later run drops
# the leftovers of runs that started long enough ago to be over.
SCHEMA_PREFIX = "colony_test_"
STALE_AFTER_SECONDS = 6 * 3600
_RUN = f"{int(time.time()):x}_{uuid.uuid4().hex[:6]}"
# The script compose.yaml and the Kubernetes dev overlay run in Colony's database.
ROLES_SQL = Path(__file__).resolve().parents[1] / "deploy" / "postgres" / "roles.sql"
_count = 0
_count_lock = threading.Lock()
_made_databases: list[int] = []
T = TypeVar("T")


def postgres_url() -> str:
    return os.environ.get("COLONY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _run_sync(coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop (async
    fixtures call into here): on a thread of its own, with a loop of its own."""
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coroutine()))
        except BaseException as exc:  # handed back to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


@functools.cache
def postgres_available() -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(postgres_url(), timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    return _run_sync(probe)


def require_postgres() -> str:
    if not postgres_available():
        if os.environ.get("COLONY_REQUIRE_SERVICES") == "1":
            pytest.fail(
                f"PostgreSQL is required (COLONY_REQUIRE_SERVICES=1) but {postgres_url()} is down"
            )
        pytest.skip(f"no PostgreSQL server at {postgres_url()}")
    return postgres_url()


def schema_dsn(schema: str) -> str:
    """The test database's DSN with ``schema`` as the search path. Pools stay small: a run
    keeps two whole marketplaces open at once, and the server's max_connections is shared."""
    parts = urlsplit(postgres_url())
    query = dict(parse_qsl(parts.query)) | {"search_path": schema, "pool_max_size": "3"}
    return urlunsplit(parts._replace(query=urlencode(query)))


def fresh_schema_dsns(prefix: str, services: Iterable[str]) -> dict[str, str]:
    """A DSN per service, each with a schema of its own that no one has used before (the
    adapter creates it on open). A run drops its schemas when it exits, and on its first call
    whatever runs long over left behind."""
    global _count
    with _count_lock:
        _count += 1
        number = _count
    if number == 1:
        _drop_schemas(_stale)
        atexit.register(_drop_schemas, lambda name: name.startswith(f"{SCHEMA_PREFIX}{_RUN}_"))
    stem = f"{SCHEMA_PREFIX}{_RUN}_{prefix}{number}"
    return {service: schema_dsn(f"{stem}_{service}"[:63]) for service in services}


def _stale(schema: str) -> bool:
    started = schema.removeprefix(SCHEMA_PREFIX).split("_", 1)[0]
    try:
        return time.time() - int(started, 16) > STALE_AFTER_SECONDS
    except ValueError:
        return False


def _drop_schemas(which: Callable[[str], bool]) -> None:
    """Drop this run's schemas (at exit) or those of runs long over (at the start); a run
    going on beside this one keeps its own."""

    async def drop() -> None:
        conn = await asyncpg.connect(postgres_url(), timeout=5)
        try:
            rows = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", SCHEMA_PREFIX
            )
            for (name,) in rows:
                if which(name):
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    if postgres_available():
        with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
            _run_sync(drop)


@dataclass(frozen=True)
class ServiceRoles:
    """A database of its own, set up by ``deploy/postgres/roles.sql`` as the deployments set
    up theirs: a role per service (``<database>_<service>``, password the same) owning the
    schema named after its service, and no rights on anything else."""

    database: str

    def role(self, service: str) -> str:
        return f"{self.database}_{service}"

    def dsn(self, service: str) -> str:
        """``service``'s DSN, logging in as its own role. Pools stay small, as in
        :func:`schema_dsn`."""
        parts = urlsplit(postgres_url())
        role = self.role(service)
        host = parts.hostname or "127.0.0.1"
        netloc = f"{role}:{role}@{host}" + (f":{parts.port}" if parts.port else "")
        query = dict(parse_qsl(parts.query)) | {"search_path": service, "pool_max_size": "3"}
        return urlunsplit(
            parts._replace(netloc=netloc, path=f"/{self.database}", query=urlencode(query))
        )

    def drop(self) -> None:
        """Drop the database and its roles (roles belong to the whole server, not the database,
        so they would outlive it)."""
        _run_sync(lambda: _drop_database(self.database))


def service_roles_database(prefix: str) -> ServiceRoles:
    """A fresh database with a role per service, made by the deployments' own script. Dropped
    by :meth:`ServiceRoles.drop`, else when the run exits; a later run drops what runs long
    over left behind."""
    global _count
    require_postgres()
    with _count_lock:
        _count += 1
        number = _count
        first = not _made_databases
        _made_databases.append(number)
    if first:
        _drop_databases(_stale)
        atexit.register(_drop_databases, lambda name: name.startswith(f"{SCHEMA_PREFIX}{_RUN}_"))
    name = f"{SCHEMA_PREFIX}{_RUN}_{prefix}{number}"

    async def create() -> None:
        conn = await asyncpg.connect(postgres_url(), timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(database_url(name), timeout=5)
        try:
            await conn.execute(ROLES_SQL.read_text())
        finally:
            await conn.close()

    _run_sync(create)
    return ServiceRoles(name)


def database_url(database: str) -> str:
    return urlunsplit(urlsplit(postgres_url())._replace(path=f"/{database}"))


async def _drop_database(database: str) -> None:
    conn = await asyncpg.connect(postgres_url(), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        roles = await conn.fetch(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)", f"{database}_"
        )
        for (role,) in roles:
            await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await conn.close()


def _drop_databases(which: Callable[[str], bool]) -> None:
    """Drop this run's databases and their roles (at exit), or those of runs long over."""

    async def drop() -> None:
        conn = await asyncpg.connect(postgres_url(), timeout=5)
        try:
            rows = await conn.fetch(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", SCHEMA_PREFIX
            )
        finally:
            await conn.close()
        for (name,) in rows:
            if which(name):
                await _drop_database(name)

    if postgres_available():
        with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
            _run_sync(drop)
