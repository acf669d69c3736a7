"""Browse, cart and checkout with its failure cases, over HTTP only, in every topology; then
``colony verify`` against what the suite left behind."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from checkout_helpers import ADDRESS, add_to_cart, checkout, place, stock_of, wait_for
from colony.composition import SERVICE_NAMES
from colony.payment_provider import CARD_DECLINED
from conftest import list_product, sign_up
from e2e.deployment import Deployment
from waiting import eventually

WITHIN = 60.0


async def provider_behaviour(deployment: Deployment, **behaviour: object) -> None:
    async with httpx.AsyncClient(base_url=deployment.provider_url) as provider:
        response = await provider.put("/admin/behaviour", json=behaviour)
        assert response.status_code == 200, response.text


async def test_browse_search_and_product_page(api):
    seller = await sign_up(api, "seller")
    word = f"zq{uuid.uuid4().hex[:8]}"
    kettle = await list_product(api, seller, title=f"{word} kettle", price_minor=1000)
    await list_product(api, seller, title=f"{word} novel", category="books", price_minor=1500)
    found = (await api.get("/api/v1/listings", params={"q": word})).json()
    assert found["total"] == 2
    kitchen = (
        await api.get("/api/v1/listings", params={"q": word, "category": "home-kitchen"})
    ).json()
    assert [item["id"] for item in kitchen["items"]] == [kettle["id"]]
    page = await api.get(f"/listings/{kettle['id']}")
    assert page.status_code == 200 and f"{word} kettle" in page.text
    missing = await api.get("/api/v1/listings/not-a-listing")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_cart_add_change_remove_and_bad_input(api):
    seller = await sign_up(api, "seller")
    lamp = await list_product(api, seller, stock=5)
    buyer = await sign_up(api, "buyer")
    await add_to_cart(api, buyer, lamp, 2)
    cart = (await api.get("/api/v1/cart", headers=buyer.headers)).json()
    assert [(line["listing_id"], line["quantity"]) for line in cart["lines"]] == [(lamp["id"], 2)]
    bad = await api.post(
        "/api/v1/cart/items", json={"listing_id": lamp["id"], "quantity": 0}, headers=buyer.headers
    )
    assert bad.status_code == 422
    removed = await api.delete(f"/api/v1/cart/items/{lamp['id']}", headers=buyer.headers)
    assert removed.status_code in (200, 204), removed.text
    assert (await api.get("/api/v1/cart", headers=buyer.headers)).json()["lines"] == []


async def test_checkout_from_several_sellers_completes(api):
    first, second = await sign_up(api, "seller"), await sign_up(api, "seller")
    lamp = await list_product(api, first, stock=5, price_minor=2500)
    rug = await list_product(api, second, stock=5, title="Wool rug", price_minor=12000)
    buyer = await sign_up(api, "buyer")
    await add_to_cart(api, buyer, lamp, 2)
    await add_to_cart(api, buyer, rug)
    order = await wait_for(api, buyer, await place(api, buyer), within=WITHIN)
    assert order["status"] == "completed", order
    assert order["total_minor"] == 2 * 2500 + 12000
    shipments = (
        await api.get(f"/api/v1/orders/{order['id']}/shipments", headers=buyer.headers)
    ).json()
    assert sorted(s["seller_id"] for s in shipments) == sorted([first.id, second.id])
    payment = (await api.get(f"/api/v1/orders/{order['id']}/payment", headers=buyer.headers)).json()
    assert (payment["status"], payment["captured_minor"]) == ("captured", order["total_minor"])
    assert (await stock_of(api, first, lamp))["sold"] == 2
    assert (await api.get("/api/v1/cart", headers=buyer.headers)).json()["lines"] == []

    async def in_history() -> bool:
        history = (await api.get("/api/v1/orders", headers=buyer.headers)).json()
        return [o["id"] for o in history["items"]] == [order["id"]]

    await eventually(in_history, within=WITHIN, every=0.1)

    async def in_seller_queue() -> bool:
        queue = (await api.get("/api/v1/seller/orders", headers=second.headers)).json()
        return [o["order_id"] for o in queue["items"]] == [order["id"]]

    await eventually(in_seller_queue, within=WITHIN, every=0.1)


async def test_out_of_stock_cancels_and_holds_nothing(api):
    seller = await sign_up(api, "seller")
    lamp = await list_product(api, seller, stock=1)
    buyer = await sign_up(api, "buyer")
    await add_to_cart(api, buyer, lamp, 3)
    order = await wait_for(api, buyer, await place(api, buyer), within=WITHIN)
    assert order["status"] == "cancelled" and "stock" in order["cancel_reason"].lower()
    level = await stock_of(api, seller, lamp)
    assert (level["available"], level["reserved"], level["sold"]) == (1, 0, 0)


async def test_a_declined_card_cancels_and_releases_the_stock(api):
    seller = await sign_up(api, "seller")
    lamp = await list_product(api, seller, stock=2)
    buyer = await sign_up(api, "buyer")
    await add_to_cart(api, buyer, lamp)
    order = await wait_for(api, buyer, await place(api, buyer, card=CARD_DECLINED), within=WITHIN)
    assert order["status"] == "cancelled" and "declined" in order["cancel_reason"].lower()
    assert (await stock_of(api, seller, lamp))["available"] == 2


async def test_an_undeliverable_address_voids_the_payment(api):
    seller = await sign_up(api, "seller")
    lamp = await list_product(api, seller, stock=2)
    buyer = await sign_up(api, "buyer")
    await add_to_cart(api, buyer, lamp)
    nowhere = {**ADDRESS, "postcode": "00000"}
    order = await wait_for(api, buyer, await place(api, buyer, address=nowhere), within=WITHIN)
    assert order["status"] == "cancelled"
    payment = (await api.get(f"/api/v1/orders/{order['id']}/payment", headers=buyer.headers)).json()
    assert payment["status"] == "voided"


async def test_provider_outage_cancels_then_recovery_completes(api, deployment):
    seller = await sign_up(api, "seller")
    lamp = await list_product(api, seller, stock=5)
    buyer = await sign_up(api, "buyer")
    await add_to_cart(api, buyer, lamp)
    await provider_behaviour(deployment, outage=True)
    try:
        order = await wait_for(api, buyer, await place(api, buyer), within=WITHIN)
    finally:
        await provider_behaviour(deployment)
    assert order["status"] == "cancelled"
    assert (await stock_of(api, seller, lamp))["available"] == 5
    await add_to_cart(api, buyer, lamp)
    order = await wait_for(api, buyer, await place(api, buyer), within=WITHIN)
    assert order["status"] == "completed"


async def test_the_buyer_cancels_and_is_refunded(api):
    seller = await sign_up(api, "seller")
    lamp = await list_product(api, seller, stock=3)
    buyer = await sign_up(api, "buyer")
    await add_to_cart(api, buyer, lamp, 2)
    order = await wait_for(api, buyer, await place(api, buyer), within=WITHIN)
    assert order["status"] == "completed"
    response = await api.post(
        f"/api/v1/orders/{order['id']}/cancellation",
        json={"reason": "changed my mind"},
        headers=buyer.headers,
    )
    assert response.status_code == 200, response.text
    await wait_for(api, buyer, order["id"], ("cancelled",), within=WITHIN)
    payment = (await api.get(f"/api/v1/orders/{order['id']}/payment", headers=buyer.headers)).json()
    assert payment["status"] == "refunded"
    assert (await stock_of(api, seller, lamp))["available"] == 3


async def test_concurrent_checkouts_of_the_last_unit_one_wins(api):
    seller = await sign_up(api, "seller")
    lamp = await list_product(api, seller, stock=1)
    buyers = [await sign_up(api, "buyer") for _ in range(4)]
    for buyer in buyers:
        await add_to_cart(api, buyer, lamp)
    ids = await asyncio.gather(*(place(api, buyer) for buyer in buyers))
    orders = [await wait_for(api, b, i, within=WITHIN) for b, i in zip(buyers, ids, strict=True)]
    assert sorted(order["status"] for order in orders) == ["cancelled"] * 3 + ["completed"]
    level = await stock_of(api, seller, lamp)
    assert (level["available"], level["reserved"], level["sold"]) == (0, 0, 1)


async def test_one_idempotency_key_sent_twice_at_once_makes_one_order(api):
    seller = await sign_up(api, "seller")
    lamp = await list_product(api, seller, stock=5)
    buyer = await sign_up(api, "buyer")
    await add_to_cart(api, buyer, lamp)
    key = str(uuid.uuid4())
    responses = await asyncio.gather(*(checkout(api, buyer, key=key) for _ in range(5)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["order_id"] for r in responses}) == 1
    await wait_for(api, buyer, responses[0].json()["order_id"], within=WITHIN)
    assert (await stock_of(api, seller, lamp))["sold"] == 1


def test_every_invariant_holds_afterwards(deployment):
    result = deployment.verify()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VIOLATED" not in result.stdout
    # Every service answered for its own outbox, wherever it runs (no database opened here).
    for name in SERVICE_NAMES:
        assert f"{name} pending" in result.stdout, result.stdout


def test_dead_letters_are_asked_of_each_service(deployment):
    result = deployment.command("dlq", "list")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No dead letters." in result.stdout + result.stderr
