"""OWASP API10:2023, unsafe consumption of APIs: the payment provider's answers are never
believed blindly.

The provider is a third party. A success from it that is not JSON, names another amount or
state, is far too large, or never finishes arriving, says nothing reliable about what it did:
the checkout must treat it as an unknown outcome and ask again, so that an order that does not
go ahead leaves no hold or charge on the buyer's card, and the books agree with the provider.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest

from checkout_helpers import add_to_cart, place, stock_of, wait_for
from colony.payment_provider.api import BAD_ANSWERS
from colony.services.payments.service import authorize_key
from colony.verify import verify
from conftest import Session, list_product, sign_up


async def behave(provider: str, **behaviour: Any) -> None:
    async with httpx.AsyncClient(base_url=provider) as admin:
        response = await admin.put("/admin/behaviour", json=behaviour)
        assert response.status_code == 200, response.text


async def intent_for(provider: str, order_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=provider) as api:
        response = await api.get(
            "/v1/payment_intents", params={"idempotency_key": authorize_key(order_id)}
        )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def turned_round(
    client: httpx.AsyncClient, buyer: Session, order_id: str, within: float = 30.0
) -> None:
    """Until the checkout has given up on its payment (it may already have ended)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        order = (await client.get(f"/api/v1/orders/{order_id}", headers=buyer.headers)).json()
        if order["stage"] in ("compensating", "cancelled") or order["status"] != "pending":
            return
        assert asyncio.get_running_loop().time() < deadline, f"order never turned: {order}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("bad", BAD_ANSWERS)
async def test_a_checkout_answered_badly_is_cancelled_with_nothing_left_on_the_card(
    client, marketplace, payment_provider, bad
):
    seller, buyer = await sign_up(client, "seller"), await sign_up(client, "buyer")
    lamp = await list_product(client, seller, stock=3, price_minor=2500)
    await add_to_cart(client, buyer, lamp, 2)
    await behave(payment_provider, **{f"{bad}_rate": 1.0})
    try:
        order_id = await place(client, buyer)
        await turned_round(client, buyer, order_id)
    finally:
        await behave(payment_provider)

    order = await wait_for(client, buyer, order_id, within=30.0)
    # Every answer the provider gave was spoiled, so no payment could be confirmed: the
    # buyer reads a cancelled order and a reason, and is charged nothing.
    assert order["status"] == "cancelled", order
    assert order["cancel_reason"]
    payment = await client.get(f"/api/v1/orders/{order_id}/payment", headers=buyer.headers)
    assert payment.status_code in (200, 404), payment.text
    if payment.status_code == 200:
        assert payment.json()["captured_minor"] == payment.json()["refunded_minor"]
    # The provider did act on the authorization before its answer was spoiled; the
    # checkout's compensation asked it again and released the hold.
    intent = await intent_for(payment_provider, order_id)
    assert (intent["status"], intent["captured_amount"]) == ("voided", 0), intent
    stock = await stock_of(client, seller, lamp)
    assert (stock["available"], stock["reserved"]) == (3, 0)
    await marketplace.runtime.drain()
    checks = await verify(marketplace.runtime)
    assert [(c.name, c.violations) for c in checks if not c.ok] == []


def seed_sparing_only_the_first(rate: float, spoiled: int = 60) -> int:
    """A seed under which, at a bad-answer rate of ``rate``, the first request's answer (an
    authorization's) is true and the ``spoiled`` after it are not. It mirrors the simulator's
    draws: error, timeout and bad answer for each request, and the decline for an
    authorization; the test checks the counters, so a change in that order fails loudly
    rather than spoiling the wrong request."""
    for seed in range(100_000):
        rng = random.Random(seed)
        rng.random(), rng.random()
        first = rng.random() < rate
        rng.random()
        spoiled_after = []
        for _ in range(spoiled):
            rng.random(), rng.random()
            spoiled_after.append(rng.random() < rate)
        if not first and all(spoiled_after):
            return seed
    raise AssertionError("no seed")


async def provider_stats(provider: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=provider) as admin:
        return (await admin.get("/admin/stats")).json()  # type: ignore[no-any-return]


async def test_a_capture_answered_badly_is_refunded_when_the_order_does_not_go_ahead(
    client, marketplace, payment_provider
):
    """Money taken, and the answer not believed: the capture is never booked, the checkout
    gives up on it, and its compensation asks the provider, finds the charge and refunds it."""
    seller, buyer = await sign_up(client, "seller"), await sign_up(client, "buyer")
    lamp = await list_product(client, seller, stock=1, price_minor=4000)
    await add_to_cart(client, buyer, lamp)
    before = await provider_stats(payment_provider)
    # The authorization's answer is true; the capture's, and every one after, is garbage.
    await behave(payment_provider, garbage_rate=0.95, seed=seed_sparing_only_the_first(0.95))
    try:
        order_id = await place(client, buyer)
        await turned_round(client, buyer, order_id)
    finally:
        await behave(payment_provider)
    order = await wait_for(client, buyer, order_id, within=30.0)
    after = await provider_stats(payment_provider)
    assert after["authorizations"] - before["authorizations"] == 1
    assert after["captures"] - before["captures"] == 1
    assert after["bad_answers"] - before["bad_answers"] >= 2  # the capture, and its repeat
    assert order["status"] == "cancelled", order
    intent = await intent_for(payment_provider, order_id)
    assert (intent["status"], intent["captured_amount"], intent["refunded_amount"]) == (
        "refunded",
        4000,
        4000,
    )
    payment = await client.get(f"/api/v1/orders/{order_id}/payment", headers=buyer.headers)
    assert payment.status_code == 200, payment.text
    assert (payment.json()["status"], payment.json()["refunded_minor"]) == ("refunded", 4000)
    await marketplace.runtime.drain()
    checks = await verify(marketplace.runtime)
    assert [(c.name, c.violations) for c in checks if not c.ok] == []
