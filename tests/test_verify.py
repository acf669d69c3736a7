"""``colony verify``: no false alarm while checkouts, payouts and refunds are under way, and a
real violation reported for what it is."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from checkout_helpers import add_to_cart, place, wait_for
from colony.composition import SERVICE_NAMES
from colony.marketplace import Marketplace, running_marketplace
from colony.platform.errors import ServiceUnavailable
from colony.platform.runtime import Runtime
from colony.platform.security import Actor
from colony.services.payments.api import PaymentsApi
from colony.services.payments.service import authorize_key
from colony.verify import Check, verify
from conftest import list_product, settings_for, sign_up, topology_for
from postgres_support import fresh_schema_dsns, require_postgres

COLONY = str(Path(sys.executable).parent / "colony")


def violated(checks: list[Check]) -> list[tuple[str, list[str]]]:
    return [(check.name, check.violations) for check in checks if not check.ok]


async def checkouts_while_verifying(
    client: httpx.AsyncClient, runtime: Runtime, orders: int = 10
) -> int:
    """Buyers check out one after another while verify runs back to back, until the orders
    have ended and their shipments have had time to be delivered (and paid out). Every run
    must be clean; how many ran."""
    seller = await sign_up(client, "seller")
    other = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=orders, price_minor=2500)
    rug = await list_product(client, other, stock=orders, title="Wool rug", price_minor=7000)
    buyers = [await sign_up(client, "buyer") for _ in range(orders)]
    for buyer in buyers:
        await add_to_cart(client, buyer, lamp)
        await add_to_cart(client, buyer, rug)

    async def buy(n: int) -> dict[str, Any]:
        await asyncio.sleep(0.15 * n)
        return await wait_for(client, buyers[n], await place(client, buyers[n]))

    shopping = asyncio.gather(*(buy(n) for n in range(orders)))
    runs = 0
    loop = asyncio.get_running_loop()
    delivered_by: float | None = None
    while delivered_by is None or loop.time() < delivered_by:
        checks = await verify(runtime, recheck_after_seconds=0.5)
        runs += 1
        assert violated(checks) == [], f"run {runs}"
        # In one process a verify may never wait for anything: let the checkouts move on.
        await asyncio.sleep(0.02)
        if delivered_by is None and shopping.done():
            # The courier moves a shipment on every 0.7 s; delivered ones are paid out.
            delivered_by = loop.time() + 4.0
    finished = await shopping
    assert {order["status"] for order in finished} == {"completed"}
    return runs


async def test_no_false_alarm_while_orders_are_placed_and_paid_out(client, marketplace):
    runs = await checkouts_while_verifying(client, marketplace.runtime)
    assert runs >= 5


@pytest.fixture
async def pg_market(tmp_path, payment_provider, mail_sink) -> AsyncIterator[Marketplace]:
    require_postgres()
    settings = settings_for(tmp_path, dsns=fresh_schema_dsns("verify", SERVICE_NAMES))
    async with running_marketplace(settings, topology_for("inprocess"), serve=False) as market:
        yield market


async def test_no_false_alarm_on_postgresql(pg_market):
    """Where the payments audit's reads really interleave with payouts (each a round trip)."""
    transport = httpx.ASGITransport(app=pg_market.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as client:
        await checkouts_while_verifying(client, pg_market.runtime)


def colony_verify(data_dir: Path, provider: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "COLONY_DATA_DIR": str(data_dir),
        "COLONY_PAYMENT_PROVIDER_URL": provider,
        "COLONY_LOG_LEVEL": "warning",
        "COLUMNS": "300",
    }
    return subprocess.run([COLONY, "verify"], env=env, capture_output=True, text=True, timeout=120)


async def test_a_corrupted_ledger_row_is_reported(tmp_path, payment_provider, mail_sink):
    settings = settings_for(tmp_path, dsns={})  # SQLite files the command opens after us
    async with running_marketplace(settings, topology_for("inprocess"), serve=False) as market:
        transport = httpx.ASGITransport(app=market.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as c:
            seller, buyer = await sign_up(c, "seller"), await sign_up(c, "buyer")
            await add_to_cart(c, buyer, await list_product(c, seller, stock=2), 2)
            order = await wait_for(c, buyer, await place(c, buyer))
            assert order["status"] == "completed"
        await market.runtime.drain()

    at_rest = await asyncio.to_thread(colony_verify, tmp_path, payment_provider)
    assert at_rest.returncode == 0, at_rest.stdout + at_rest.stderr
    assert "as of" in at_rest.stdout and "payments 20" in at_rest.stdout  # the moment read

    with sqlite3.connect(tmp_path / "payments.db") as db:
        changed = db.execute(
            "UPDATE ledger_entries SET amount_minor = amount_minor + 100"
            " WHERE id = (SELECT min(id) FROM ledger_entries WHERE order_id = ?)",
            (order["id"],),
        ).rowcount
    assert changed == 1
    corrupted = await asyncio.to_thread(colony_verify, tmp_path, payment_provider)
    assert corrupted.returncode == 1, corrupted.stdout + corrupted.stderr
    assert "VIOLATED" in corrupted.stdout
    assert "the ledger sums to 100, not 0" in corrupted.stdout
    assert f"escrow disagrees with payments: {order['id']}" in corrupted.stdout


async def test_money_left_at_the_provider_is_reported(tmp_path, payment_provider, mail_sink):
    """A hold, then a charge, at the provider for an order that ended without a payment (an
    authorization whose answer could not be believed, never released): both are reported,
    and nothing once the order's void has released it."""
    settings = settings_for(tmp_path, dsns={})
    async with running_marketplace(settings, topology_for("inprocess"), serve=False) as market:
        transport = httpx.ASGITransport(app=market.app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://colony.test") as c,
            httpx.AsyncClient(base_url=payment_provider) as provider,
        ):
            seller = await sign_up(c, "seller")
            first, second = await sign_up(c, "buyer"), await sign_up(c, "buyer")
            lamp = await list_product(c, seller, stock=1)
            await add_to_cart(c, first, lamp)
            await add_to_cart(c, second, lamp)
            assert (await wait_for(c, first, await place(c, first)))["status"] == "completed"
            order = await wait_for(c, second, await place(c, second))
            assert order["status"] == "cancelled"  # out of stock: no payment was made

            payments = market.runtime.client(PaymentsApi, "orders")
            system = Actor.system("orders")
            await provider.put("/admin/behaviour", json={"garbage_rate": 1.0})
            try:
                with pytest.raises(ServiceUnavailable):
                    await payments.authorize(
                        system,
                        order["id"],
                        second.id,
                        2500,
                        "EUR",
                        "4242424242424242",
                        {seller.id: 2500},
                    )
            finally:
                await provider.put("/admin/behaviour", json={})

            held = violated(await verify(market.runtime, recheck_after_seconds=0.1))
            assert held == [
                ("nothing dangling", [f"authorizations open on finished orders: {order['id']}"])
            ]
            intent = (
                await provider.get(
                    "/v1/payment_intents", params={"idempotency_key": authorize_key(order["id"])}
                )
            ).json()
            captured = await provider.post(
                f"/v1/payment_intents/{intent['id']}/capture",
                json={},
                headers={"idempotency-key": f"behind-{order['id']}"},
            )
            assert captured.status_code == 200, captured.text
            charged = violated(await verify(market.runtime, recheck_after_seconds=0.1))
            assert charged == [("no double charge", [f"the provider disagrees: {order['id']}"])]

            assert await payments.void(system, order["id"]) is None
            assert violated(await verify(market.runtime, recheck_after_seconds=0.1)) == []
