"""The marketplace on PostgreSQL, a schema per service, whatever database the rest of the suite
uses: a seller lists a product, a buyer finds it, buys it, and the order completes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from checkout_helpers import add_to_cart, place, stock_of, wait_for
from colony.composition import SERVICE_NAMES
from colony.marketplace import Marketplace, running_marketplace
from colony.verify import verify
from conftest import list_product, settings_for, sign_up, topology_for
from postgres_support import fresh_schema_dsns, require_postgres


@pytest.fixture
async def pg_market(tmp_path, payment_provider, mail_sink) -> AsyncIterator[Marketplace]:
    require_postgres()
    settings = settings_for(tmp_path, dsns=fresh_schema_dsns("smoke", SERVICE_NAMES))
    async with running_marketplace(settings, topology_for("inprocess"), serve=False) as market:
        yield market


async def test_a_checkout_completes_on_postgresql(pg_market: Marketplace) -> None:
    assert {db.dialect for db in pg_market.runtime.databases.values()} == {"postgresql"}
    transport = httpx.ASGITransport(app=pg_market.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as client:
        seller = await sign_up(client, "seller")
        word = f"pgsmoke{uuid.uuid4().hex[:8]}"
        listing = await list_product(client, seller, stock=3, title=f"{word} teapot")
        found = (await client.get("/api/v1/listings", params={"q": word[:-2]})).json()
        assert [item["id"] for item in found["items"]] == [listing["id"]]

        buyer = await sign_up(client, "buyer")
        await add_to_cart(client, buyer, listing, 2)
        order = await wait_for(client, buyer, await place(client, buyer))

        assert order["status"] == "completed", order
        assert order["total_minor"] == 2 * listing["price_minor"]
        stock = await stock_of(client, seller, listing)
        assert (stock["available"], stock["sold"]) == (1, 2)
        cart = (await client.get("/api/v1/cart", headers=buyer.headers)).json()
        assert cart["lines"] == []
    checks = await verify(pg_market.runtime)
    assert all(check.ok for check in checks), [c for c in checks if not c.ok]
