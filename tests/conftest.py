"""Fixtures: the marketplace in each topology, and an HTTP client for its gateway."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina

from colony.composition import SERVICE_NAMES
from colony.mail_sink.server import MailSink, running_mail_sink
from colony.marketplace import Marketplace, running_marketplace
from colony.platform.config import Settings
from colony.platform.logging import configure_logging
from colony.platform.runtime import Topology
from colony.platform.web.server import free_port, wait_for_port
from postgres_support import fresh_schema_dsns, require_postgres

configure_logging("warning", json=True)
stamina.set_testing(True, attempts=3)

BINDINGS = ["inprocess", "http"]
_counter = itertools.count()


PROVIDER_PORT = free_port()
SMTP_PORT = free_port()
COURIER_STEP_SECONDS = 0.7
FAST_BREAKER = {"breaker.open_seconds": 0.1, "breaker.max_open_seconds": 0.4}


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    """Test settings. With ``COLONY_TEST_DATABASE=postgresql`` every service gets a fresh
    PostgreSQL schema of its own instead of a SQLite file in ``data_dir``."""
    if os.environ.get("COLONY_TEST_DATABASE") == "postgresql" and "dsns" not in overrides:
        require_postgres()
        prefix = re.sub(r"[^a-z0-9]", "", data_dir.name.lower())[:12]
        overrides["dsns"] = fresh_schema_dsns(prefix, SERVICE_NAMES)
    values: dict[str, Any] = {
        "password_hash_cost": "fast",
        "search_cache_seconds": 0.0,
        "payment_provider_url": f"http://127.0.0.1:{PROVIDER_PORT}",
        "payment_timeout_seconds": 0.5,
        "saga_step_timeout_seconds": 2.0,
        "saga_step_patience_seconds": 1.0,
        # A breaker that probes within the steps' patience, so an order placed as an outage
        # heals completes rather than depending on when the last probe failed.
        "resilience": {"*": FAST_BREAKER},
        "courier_step_seconds": COURIER_STEP_SECONDS,
        "smtp_port": SMTP_PORT,
        **overrides,
    }
    return Settings(data_dir=data_dir, **values)


@pytest.fixture(scope="session")
def payment_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The provider simulator in its own process, as in every topology; its URL."""
    data_dir = tmp_path_factory.mktemp("provider")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "colony.payment_provider",
            "--port",
            str(PROVIDER_PORT),
            "--data-dir",
            str(data_dir),
        ],
    )
    try:
        asyncio.run(wait_for_port("127.0.0.1", PROVIDER_PORT, within=20.0))
        yield f"http://127.0.0.1:{PROVIDER_PORT}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session")
async def mail_sink() -> AsyncIterator[MailSink]:
    async with running_mail_sink(SMTP_PORT, free_port()) as sink:
        yield sink


def topology_for(binding: str) -> Topology:
    if binding == "inprocess":
        return Topology.one_process()
    return Topology.local_over_http({name: free_port() for name in SERVICE_NAMES})


@pytest.fixture(scope="session", params=BINDINGS)
async def marketplace(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    payment_provider: str,
    mail_sink: MailSink,
) -> AsyncIterator[Marketplace]:
    """The whole marketplace, once per binding: in-process, and every service over HTTP."""
    data_dir = tmp_path_factory.mktemp(f"market-{request.param}")
    async with running_marketplace(
        settings_for(data_dir), topology_for(request.param), serve=False
    ) as market:
        yield market


@pytest.fixture
async def client(marketplace: Marketplace) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=marketplace.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as c:
        yield c


def unique_email(role: str) -> str:
    return f"{role}-{os.getpid()}-{next(_counter)}@example.com"


class Session:
    """A registered, logged-in account and its bearer header."""

    def __init__(self, account: dict[str, Any], token: str, password: str) -> None:
        self.account = account
        self.token = token
        self.password = password

    @property
    def id(self) -> str:
        return str(self.account["id"])

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


async def sign_up(client: httpx.AsyncClient, role: str = "buyer") -> Session:
    email, password = unique_email(role), "correct horse battery"
    response = await client.post(
        "/api/v1/accounts",
        json={"email": email, "password": password, "name": role.title(), "role": role},
    )
    assert response.status_code == 201, response.text
    login = await client.post("/api/v1/tokens", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return Session(response.json(), login.json()["access_token"], password)


async def list_product(
    client: httpx.AsyncClient,
    seller: Session,
    stock: int = 0,
    **fields: Any,
) -> dict[str, Any]:
    draft = {"title": "Walnut desk lamp", "category": "home-kitchen", "price_minor": 2500, **fields}
    response = await client.post("/api/v1/listings", json=draft, headers=seller.headers)
    assert response.status_code == 201, response.text
    listing = response.json()
    if stock:
        receipt = await client.post(
            f"/api/v1/listings/{listing['id']}/stock/receipts",
            json={"quantity": stock},
            headers=seller.headers,
        )
        assert receipt.status_code == 201, receipt.text
    return listing
