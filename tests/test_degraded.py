"""Available first: browsing and the cart keep answering while a service behind them is down."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from colony.marketplace import Marketplace, running_marketplace
from conftest import list_product, settings_for, sign_up, topology_for
from frozen import frozen_port


@pytest.fixture
async def split_market(tmp_path) -> AsyncIterator[Marketplace]:
    """Every service behind its own HTTP server, so one can be stopped."""
    async with running_marketplace(
        settings_for(tmp_path), topology_for("http"), serve=False
    ) as market:
        yield market


@pytest.fixture
async def split_client(split_market) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=split_market.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as c:
        yield c


async def test_product_page_without_inventory(split_market, split_client):
    seller = await sign_up(split_client, "seller")
    listing = await list_product(split_client, seller, stock=4)
    await split_market.runtime.servers["inventory"].stop()
    detail = await split_client.get(f"/api/v1/listings/{listing['id']}")
    assert detail.status_code == 200
    assert detail.json()["available"] is None
    ready = await split_client.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["services"]["inventory"] is False


async def test_cart_without_catalog_shows_prices_as_added(split_market, split_client):
    seller = await sign_up(split_client, "seller")
    buyer = await sign_up(split_client, "buyer")
    listing = await list_product(split_client, seller, stock=4, price_minor=1234)
    await split_client.post(
        "/api/v1/cart/items", json={"listing_id": listing["id"]}, headers=buyer.headers
    )
    await split_market.runtime.servers["catalog"].stop()
    cart = await split_client.get("/api/v1/cart", headers=buyer.headers)
    assert cart.status_code == 200
    assert cart.json()["prices_current"] is False
    assert cart.json()["totals"] == {"EUR": 1234}
    unavailable = await split_client.get("/api/v1/listings", params={"q": "lamp"})
    assert unavailable.status_code == 503
    assert unavailable.headers["content-type"] == "application/problem+json"


async def freeze(market: Marketplace, name: str) -> int:
    """Stop the service's server and leave its port taking connections that go unanswered."""
    await market.runtime.servers[name].stop()
    return urlsplit(market.runtime.topology.placement(name).addresses[0]).port or 80


async def test_a_frozen_optional_service_leaves_the_gateway_ready_and_degraded(
    split_market, split_client
):
    with frozen_port(await freeze(split_market, "notifications")):
        started = time.monotonic()
        ready = await split_client.get("/health/ready")
        elapsed = time.monotonic() - started
    # Inside the 2 s timeout of the Kubernetes probes, with room to spare.
    assert elapsed < 1.5
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["services"]["notifications"] is False and body["services"]["catalog"] is True
    assert body["degraded"] == ["notifications"] and body["unavailable"] == []


async def test_a_frozen_critical_service_makes_the_gateway_unready_within_the_bound(
    split_market, split_client
):
    with frozen_port(await freeze(split_market, "inventory")):
        started = time.monotonic()
        ready = await split_client.get("/health/ready")
        elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert ready.status_code == 503
    assert ready.json()["unavailable"] == ["inventory"] and ready.json()["degraded"] == []
