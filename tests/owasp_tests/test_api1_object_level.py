"""OWASP API1 (broken object level authorization): one buyer or seller against another's
objects, through the gateway, in both bindings.

What the product answers, by kind of object:

- an order, and everything under it (detail, cancellation, refund, shipments, payment,
  ledger): 404 to anyone with no part in it, as for an order that does not exist, so that
  order ids cannot be probed;
- a notification: 404 likewise (an inbox is private);
- a listing and its stock: 403, since listings are public and their existence no secret;
- the cart, the seller's order queue and the webhook have no id in their path: each caller
  reaches their own alone.

Within a two-seller order each seller sees their own part of it only: their shipment, their
share and payout, the ledger entries of their own account; never the buyer's id or card, nor
the other seller's part.
"""

from __future__ import annotations

from typing import Any

import httpx

from checkout_helpers import add_to_cart, place, wait_for
from colony.services.identity.api import IdentityApi, Registration
from conftest import Session, list_product, sign_up, unique_email
from waiting import eventually

PASSWORD = "correct horse battery"


async def admin_session(client: httpx.AsyncClient, marketplace: Any) -> Session:
    # Admins are provisioned by operators, never registered.
    email = unique_email("admin")
    account = await marketplace.runtime.client(IdentityApi, caller="seed").provision(
        Registration(email=email, password=PASSWORD, name="Admin"), "admin"
    )
    login = await client.post("/api/v1/tokens", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return Session({"id": account.id}, login.json()["access_token"], PASSWORD)


async def two_seller_order(
    client: httpx.AsyncClient,
) -> tuple[dict[str, Any], Session, Session, Session]:
    """A completed order of a lamp from the first seller and a rug from the second."""
    first, second = await sign_up(client, "seller"), await sign_up(client, "seller")
    lamp = await list_product(client, first, stock=3, price_minor=2500)
    rug = await list_product(client, second, stock=3, title="Wool rug", price_minor=12000)
    buyer = await sign_up(client, "buyer")
    await add_to_cart(client, buyer, lamp)
    await add_to_cart(client, buyer, rug)
    order = await wait_for(client, buyer, await place(client, buyer))
    assert order["status"] == "completed", order
    return order, buyer, first, second


async def paid_out_to_both(
    client: httpx.AsyncClient, order_id: str, buyer: Session
) -> dict[str, Any]:
    """The buyer's view of the payment once both shipments are delivered and paid out."""

    async def check() -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/orders/{order_id}/payment", headers=buyer.headers)
        assert response.status_code == 200, response.text
        payment = response.json()
        return payment if len(payment["paid_out"]) == 2 else None

    return dict(await eventually(check, within=30.0, every=0.1))


async def test_a_seller_sees_their_own_part_of_the_payment_and_ledger(client, marketplace):
    order, buyer, first, second = await two_seller_order(client)
    whole = await paid_out_to_both(client, order["id"], buyer)
    assert whole["buyer_id"] == buyer.id
    assert whole["seller_shares"] == {first.id: 2500, second.id: 12000}
    assert whole["card_last4"] == "4242"

    for seller, other, share in ((first, second, 2500), (second, first, 12000)):
        response = await client.get(f"/api/v1/orders/{order['id']}/payment", headers=seller.headers)
        assert response.status_code == 200, response.text
        part = response.json()
        assert part["seller_shares"] == {seller.id: share}
        assert set(part["paid_out"]) == {seller.id}
        assert (part["amount_minor"], part["captured_minor"]) == (share, share)
        assert part["status"] == "captured"
        assert part["buyer_id"] is None
        assert part["card_last4"] is None
        assert part["provider_intent_id"] is None
        assert other.id not in response.text
        assert buyer.id not in response.text

        response = await client.get(f"/api/v1/orders/{order['id']}/ledger", headers=seller.headers)
        assert response.status_code == 200, response.text
        entries = response.json()
        assert entries, "a paid-out seller has entries of their own"
        assert {entry["account"] for entry in entries} == {f"seller:{seller.id}"}
        assert sum(entry["amount_minor"] for entry in entries) == part["paid_out"][seller.id]
        assert other.id not in response.text
        assert buyer.id not in response.text


async def test_the_buyer_and_an_admin_see_the_whole_payment_and_ledger(client, marketplace):
    order, buyer, first, second = await two_seller_order(client)
    await paid_out_to_both(client, order["id"], buyer)
    admin = await admin_session(client, marketplace)
    for viewer in (buyer, admin):
        payment = await client.get(f"/api/v1/orders/{order['id']}/payment", headers=viewer.headers)
        assert payment.status_code == 200, payment.text
        assert payment.json()["seller_shares"] == {first.id: 2500, second.id: 12000}
        assert payment.json()["buyer_id"] == buyer.id
        ledger = await client.get(f"/api/v1/orders/{order['id']}/ledger", headers=viewer.headers)
        assert ledger.status_code == 200, ledger.text
        accounts = {entry["account"] for entry in ledger.json()}
        assert {f"buyer:{buyer.id}", f"seller:{first.id}", f"seller:{second.id}"} <= accounts
        assert sum(entry["amount_minor"] for entry in ledger.json()) == 0


async def test_a_seller_sees_their_own_shipment_and_not_the_order(client, marketplace):
    order, buyer, first, second = await two_seller_order(client)
    await marketplace.runtime.services["orders"].idle()
    for seller in (first, second):
        response = await client.get(
            f"/api/v1/orders/{order['id']}/shipments", headers=seller.headers
        )
        assert response.status_code == 200, response.text
        assert [s["seller_id"] for s in response.json()] == [seller.id]
        # The order itself, with every seller's lines, is the buyer's: a seller's part of it
        # is in their queue.
        detail = await client.get(f"/api/v1/orders/{order['id']}", headers=seller.headers)
        assert detail.status_code == 404, detail.text
        queue = await client.get("/api/v1/seller/orders", headers=seller.headers)
        lines = [line for o in queue.json()["items"] for line in o["lines"]]
        assert lines and all(line["seller_id"] == seller.id for line in lines), lines
    everything = await client.get(f"/api/v1/orders/{order['id']}/shipments", headers=buyer.headers)
    assert sorted(s["seller_id"] for s in everything.json()) == sorted([first.id, second.id])


async def test_another_buyers_order_is_answered_as_none(client, marketplace):
    order, buyer, first, _ = await two_seller_order(client)
    other = await sign_up(client, "buyer")
    stranger = await sign_up(client, "seller")
    order_path = f"/api/v1/orders/{order['id']}"
    for intruder in (other, stranger):
        for path in ("", "/shipments", "/payment", "/ledger"):
            response = await client.get(order_path + path, headers=intruder.headers)
            assert response.status_code == 404, (path, response.text)
            assert buyer.id not in response.text
        for path in ("/cancellation", "/refunds"):
            response = await client.post(
                order_path + path, json={"reason": "mine now"}, headers=intruder.headers
            )
            assert response.status_code == 404, (path, response.text)
    missing = await client.get("/api/v1/orders/no-such-order", headers=other.headers)
    assert missing.status_code == 404
    # Nothing the intruders tried changed the order.
    assert (await wait_for(client, buyer, order["id"]))["status"] == "completed"
    payment = await client.get(f"{order_path}/payment", headers=buyer.headers)
    assert payment.json()["refunded_minor"] == 0
    await marketplace.runtime.services["orders"].idle()
    history = await client.get("/api/v1/orders", headers=other.headers)
    assert history.json()["total"] == 0
    queue = await client.get("/api/v1/seller/orders", headers=stranger.headers)
    assert queue.json()["items"] == []
    first_queue = await client.get("/api/v1/seller/orders", headers=first.headers)
    assert [o["order_id"] for o in first_queue.json()["items"]] == [order["id"]]


async def test_a_cart_is_reached_by_its_buyer_alone(client, marketplace):
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=3)
    buyer, other = await sign_up(client, "buyer"), await sign_up(client, "buyer")
    await add_to_cart(client, buyer, lamp, 2)
    # The cart has no id to address: another buyer's calls act on their own cart.
    assert (await client.get("/api/v1/cart", headers=other.headers)).json()["lines"] == []
    removed = await client.delete(f"/api/v1/cart/items/{lamp['id']}", headers=other.headers)
    assert removed.status_code in (200, 404), removed.text
    await client.delete("/api/v1/cart", headers=other.headers)
    changed = await client.put(
        f"/api/v1/cart/items/{lamp['id']}", json={"quantity": 5}, headers=other.headers
    )
    assert changed.status_code in (200, 404), changed.text
    lines = (await client.get("/api/v1/cart", headers=buyer.headers)).json()["lines"]
    assert [(line["listing_id"], line["quantity"]) for line in lines] == [(lamp["id"], 2)]
    # Naming the buyer reaches nothing: no route takes a cart's owner.
    named = await client.get(f"/api/v1/cart?buyer_id={buyer.id}", headers=other.headers)
    assert named.status_code in (200, 422), named.text
    assert lamp["id"] not in named.text


async def test_notifications_are_their_owners_own(client, marketplace):
    _, buyer, _, _ = await two_seller_order(client)
    other = await sign_up(client, "buyer")

    async def buyers_feed() -> list[dict[str, Any]]:
        response = await client.get("/api/v1/notifications", headers=buyer.headers)
        return list(response.json()["items"])

    notes = await eventually(buyers_feed, within=10.0)
    note = notes[0]
    assert not note["read"]
    feed = (await client.get("/api/v1/notifications", headers=other.headers)).json()
    assert all(item["user_id"] == other.id for item in feed["items"])
    assert note["id"] not in {item["id"] for item in feed["items"]}
    stolen = await client.post(f"/api/v1/notifications/{note['id']}/read", headers=other.headers)
    assert stolen.status_code == 404, stolen.text
    missing = await client.post("/api/v1/notifications/no-such-note/read", headers=other.headers)
    assert missing.status_code == 404
    assert stolen.json()["detail"] == missing.json()["detail"]
    still = {item["id"]: item for item in await buyers_feed()}
    assert still[note["id"]]["read"] is False
    own = await client.post(f"/api/v1/notifications/{note['id']}/read", headers=buyer.headers)
    assert own.status_code == 200 and own.json()["read"] is True


async def test_another_sellers_listing_and_stock_are_refused(client, marketplace):
    owner, rival = await sign_up(client, "seller"), await sign_up(client, "seller")
    buyer = await sign_up(client, "buyer")
    lamp = await list_product(client, owner, stock=4, price_minor=2500)
    path = f"/api/v1/listings/{lamp['id']}"
    for intruder in (rival, buyer):
        attempts = [
            client.patch(path, json={"price_minor": 1}, headers=intruder.headers),
            client.delete(path, headers=intruder.headers),
            client.get(f"{path}/stock", headers=intruder.headers),
            client.post(f"{path}/stock/receipts", json={"quantity": 9}, headers=intruder.headers),
            client.post(
                f"{path}/stock/adjustments",
                json={"delta": -4, "reason": "damaged"},
                headers=intruder.headers,
            ),
        ]
        for attempt in attempts:
            response = await attempt
            assert response.status_code == 403, (response.request.url, response.text)
    listing = (await client.get(path)).json()
    assert listing["listing"]["price_minor"] == 2500
    assert listing["listing"]["status"] == "active"
    stock = (await client.get(f"{path}/stock", headers=owner.headers)).json()
    assert (stock["available"], stock["received"]) == (4, 4)
    rivals = (await client.get("/api/v1/seller/listings", headers=rival.headers)).json()
    assert lamp["id"] not in {item["id"] for item in rivals["items"]}


async def test_a_webhook_is_its_sellers_alone(client, marketplace):
    owner, rival = await sign_up(client, "seller"), await sign_up(client, "seller")
    buyer = await sign_up(client, "buyer")
    hook = await client.put(
        "/api/v1/seller/webhook", json={"url": "https://example.com/hooks"}, headers=owner.headers
    )
    assert hook.status_code == 200, hook.text
    secret = hook.json()["secret"]
    rivals = await client.get("/api/v1/seller/webhook", headers=rival.headers)
    assert rivals.status_code == 404
    assert secret not in rivals.text
    assert (await client.get("/api/v1/seller/webhook", headers=buyer.headers)).status_code == 403
    deliveries = await client.get("/api/v1/seller/webhook/deliveries", headers=rival.headers)
    assert deliveries.status_code == 200 and deliveries.json() == []
    # Setting one's own webhook leaves the other's as it was, secret included.
    mine = await client.put(
        "/api/v1/seller/webhook",
        json={"url": "https://hooks.example/colony"},
        headers=rival.headers,
    )
    assert mine.status_code == 200 and mine.json()["seller_id"] == rival.id
    assert mine.json()["secret"] != secret
    kept = (await client.get("/api/v1/seller/webhook", headers=owner.headers)).json()
    assert (kept["url"], kept["secret"]) == ("https://example.com/hooks", secret)
