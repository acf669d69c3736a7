"""Database-per-service, enforced by PostgreSQL: with deploy/postgres/roles.sql (what compose and
the Kubernetes dev overlay run in Colony's database), each service logs in as a role that owns
its own schema and has no rights anywhere else. Each service still starts and migrates as that
role; reading another service's tables is refused by the server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from colony.composition import SERVICE_NAMES, service_definitions
from colony.platform.storage.migrations import PLATFORM_MIGRATIONS, migrate
from colony.platform.storage.postgres import PostgresDatabase
from postgres_support import ROLES_SQL, ServiceRoles, database_url, service_roles_database


@pytest.fixture(scope="module")
def roles() -> Iterator[ServiceRoles]:
    database = service_roles_database("roles")
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(scope="module")
async def migrated(roles: ServiceRoles) -> AsyncIterator[ServiceRoles]:
    """Every service opened and migrated as its own role, as the runtime does at start."""
    for definition in service_definitions():
        db = PostgresDatabase(definition.name, roles.dsn(definition.name))
        await db.open()
        try:
            await migrate(db, "platform", PLATFORM_MIGRATIONS)
            for component, folder in definition.components:
                await migrate(db, component, folder)
            if definition.migrations is not None:
                await migrate(db, definition.name, definition.migrations)
        finally:
            await db.close()
    yield roles


async def _connect(roles: ServiceRoles, service: str) -> asyncpg.Connection:
    return await asyncpg.connect(roles.dsn(service).split("?", 1)[0], timeout=5)


async def test_each_service_starts_and_migrates_as_its_own_role(migrated: ServiceRoles) -> None:
    for service in SERVICE_NAMES:
        conn = await _connect(migrated, service)
        try:
            owners = await conn.fetch(
                "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = $1", service
            )
            # Its tables are there, in its schema, made by (and so owned by) its role.
            assert [row["tableowner"] for row in owners] == [migrated.role(service)], service
            assert await conn.fetchval(f"SELECT count(*) FROM {service}.outbox") >= 0
        finally:
            await conn.close()


async def test_a_service_uses_its_own_tables(migrated: ServiceRoles) -> None:
    conn = await _connect(migrated, "orders")
    try:
        async with conn.transaction():
            await conn.execute("CREATE TABLE orders.scratch (n integer)")
            await conn.execute("INSERT INTO orders.scratch VALUES (1), (2)")
            assert await conn.fetchval("SELECT sum(n) FROM orders.scratch") == 3
            await conn.execute("DROP TABLE orders.scratch")
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("service", "other"), [("catalog", "orders"), ("orders", "payments"), ("cart", "identity")]
)
async def test_a_service_cannot_read_another_services_tables(
    migrated: ServiceRoles, service: str, other: str
) -> None:
    conn = await _connect(migrated, service)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.fetch(f"SELECT * FROM {other}.outbox")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(f"CREATE TABLE {other}.planted (n integer)")
    finally:
        await conn.close()


async def test_a_service_can_make_no_schema_and_nothing_in_public(migrated: ServiceRoles) -> None:
    conn = await _connect(migrated, "notifications")
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute("CREATE SCHEMA notifications_extra")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute("CREATE TABLE public.shared (n integer)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute("CREATE TEMPORARY TABLE scratch (n integer)")
    finally:
        await conn.close()


async def test_the_script_can_run_again(migrated: ServiceRoles) -> None:
    """A second run (an operator applying it by hand to an existing database) changes
    nothing: the roles and schemas are there, and each schema keeps its owner."""
    admin = await asyncpg.connect(database_url(migrated.database), timeout=5)
    try:
        await admin.execute(ROLES_SQL.read_text())
        owners = dict(
            await admin.fetch(
                "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace"
                " WHERE nspname = ANY($1::text[])",
                list(SERVICE_NAMES),
            )
        )
    finally:
        await admin.close()
    assert owners == {service: migrated.role(service) for service in SERVICE_NAMES}
