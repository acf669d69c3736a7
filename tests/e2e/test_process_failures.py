"""Service processes killed (SIGKILL) under load, in the multi-process topologies: another
replica finishes the dead one's sagas, the supervisor starts it again, every order still ends
completed or cancelled, and ``colony verify`` finds every invariant intact."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import httpx
import pytest

from checkout_helpers import ADDRESS, add_to_cart, wait_for
from colony.payment_provider import CARD_APPROVED
from conftest import Session, list_product, sign_up
from e2e.conftest import TOPOLOGIES
from e2e.test_marketplace import provider_behaviour
from waiting import eventually

BUYERS = 16


async def place_retrying(api: httpx.AsyncClient, buyer: Session) -> str:
    """As a client should: a 503 (the process died holding the request) is sent again with
    the same Idempotency-Key, which makes it one order whatever happened the first time."""
    key = str(uuid.uuid4())
    for _ in range(40):
        response = await api.post(
            "/api/v1/orders",
            json={"card_number": CARD_APPROVED, "address": ADDRESS},
            headers={**buyer.headers, "idempotency-key": key},
        )
        if response.status_code == 201:
            return str(response.json()["order_id"])
        assert response.status_code == 503, response.text
        await asyncio.sleep(0.25)
    raise AssertionError("the order was never accepted")


async def shoppers(api: httpx.AsyncClient) -> list[Session]:
    """Buyers, each with a 3-item cart."""
    seller = await sign_up(api, "seller")
    listings = [await list_product(api, seller, stock=100, title=f"Lamp {n}") for n in range(3)]
    buyers = [await sign_up(api, "buyer") for _ in range(BUYERS)]
    for buyer in buyers:
        for listing in listings:
            await add_to_cart(api, buyer, listing)
    return buyers


# In one process there is no service process to kill: tests/test_crash_recovery.py kills the
# whole of it.
pytestmark = pytest.mark.parametrize(
    "deployment",
    [choice for choice in TOPOLOGIES if choice.distributed],
    indirect=True,
    ids=lambda choice: choice.name,
)


async def test_another_replica_finishes_the_sagas_of_a_dead_one(api, deployment):
    buyers = await shoppers(api)
    await provider_behaviour(deployment, latency={"p50_ms": 150, "p99_ms": 300})
    try:
        # Both replicas take orders (the gateway alternates), then one dies with its sagas.
        ids = await asyncio.gather(*(place_retrying(api, buyer) for buyer in buyers))
        [victim] = deployment.service_pids("orders-1")
        os.kill(victim, signal.SIGKILL)
        in_flight = [
            order_id
            for buyer, order_id in zip(buyers, ids, strict=True)
            if (await api.get(f"/api/v1/orders/{order_id}", headers=buyer.headers)).json()["status"]
            not in ("completed", "cancelled")
        ]
        assert in_flight, "the kill came too late to interrupt a saga"
        orders = [
            await wait_for(api, buyer, order_id, within=60)
            for buyer, order_id in zip(buyers, ids, strict=True)
        ]
        # Finished while orders-1 was still down: by orders-2, once the leases ran out.
        assert deployment.service_pids("orders-1") == []
    finally:
        await provider_behaviour(deployment)
    assert {order["status"] for order in orders} <= {"completed", "cancelled"}

    async def restarted() -> bool:
        return bool(deployment.service_pids("orders-1"))

    await eventually(restarted, within=30, every=0.2)


async def test_a_killed_service_process_is_restarted_and_every_order_ends(api, deployment):
    buyers = await shoppers(api)
    # A slow provider keeps sagas in flight when the process dies.
    await provider_behaviour(deployment, latency={"p50_ms": 100, "p99_ms": 300})
    try:
        [victim] = deployment.service_pids("orders-1")
        placing = [asyncio.create_task(place_retrying(api, buyer)) for buyer in buyers]
        await asyncio.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        [payments] = deployment.service_pids("payments-1")
        os.kill(payments, signal.SIGKILL)
        ids = await asyncio.gather(*placing)

        async def restarted() -> bool:
            return deployment.service_pids("orders-1") not in ([], [victim])

        await eventually(restarted, within=30, every=0.2)
        orders = [
            await wait_for(api, buyer, order_id, within=120)
            for buyer, order_id in zip(buyers, ids, strict=True)
        ]
    finally:
        await provider_behaviour(deployment)
    assert len(set(ids)) == BUYERS
    assert {order["status"] for order in orders} <= {"completed", "cancelled"}
    result = deployment.verify()
    assert result.returncode == 0, result.stdout + result.stderr
