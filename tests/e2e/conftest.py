"""The end-to-end suite runs once per topology: one process on SQLite; many processes on
SQLite with a local NATS; many processes on PostgreSQL with NATS (which needs the servers)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from colony.composition import SERVICE_NAMES
from e2e.deployment import Deployment, TopologyChoice
from nats_support import require_nats

TOPOLOGIES = [
    TopologyChoice("one-process"),
    TopologyChoice("processes-sqlite-nats", distributed=True, replicas="orders=2,inventory=2"),
    TopologyChoice(
        "processes-postgresql-nats",
        distributed=True,
        replicas="orders=2,inventory=2",
        needs_servers=True,
    ),
]


def _server_environment() -> dict[str, str]:
    from postgres_support import fresh_schema_dsns, require_postgres

    require_postgres()
    env = {"COLONY_NATS_URL": require_nats()}
    dsns = fresh_schema_dsns(f"e2e_{uuid.uuid4().hex[:6]}", SERVICE_NAMES)
    env.update({f"COLONY_{name.upper()}_DSN": dsn for name, dsn in dsns.items()})
    return env


@pytest.fixture(scope="session", params=TOPOLOGIES, ids=lambda t: t.name)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    choice: TopologyChoice = request.param
    extra = _server_environment() if choice.needs_servers else {}
    running = Deployment(choice, tmp_path_factory.mktemp(choice.name) / "data", extra)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def api(deployment: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployment.url, timeout=30) as client:
        yield client
