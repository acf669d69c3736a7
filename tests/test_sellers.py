"""Sellers manage their own listings and stock, and nobody else's."""

from __future__ import annotations

from conftest import list_product, sign_up


async def test_seller_updates_own_listing(client):
    seller = await sign_up(client, "seller")
    listing = await list_product(client, seller)
    response = await client.patch(
        f"/api/v1/listings/{listing['id']}",
        json={"price_minor": 3100, "title": "Brass desk lamp"},
        headers=seller.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["price_minor"] == 3100
    assert response.json()["title"] == "Brass desk lamp"
    assert response.json()["description"] == listing["description"]


async def test_another_seller_cannot_touch_a_listing(client):
    owner = await sign_up(client, "seller")
    other = await sign_up(client, "seller")
    listing = await list_product(client, owner)
    path = f"/api/v1/listings/{listing['id']}"
    assert (
        await client.patch(path, json={"price_minor": 1}, headers=other.headers)
    ).status_code == 403
    assert (await client.delete(path, headers=other.headers)).status_code == 403
    receipt = await client.post(
        f"{path}/stock/receipts", json={"quantity": 5}, headers=other.headers
    )
    assert receipt.status_code == 403
    assert (await client.get(f"{path}/stock", headers=other.headers)).status_code == 403
    unchanged = (await client.get(path)).json()
    assert unchanged["listing"]["price_minor"] == listing["price_minor"]
    assert unchanged["available"] == 0


async def test_buyers_cannot_list_products(client):
    buyer = await sign_up(client, "buyer")
    response = await client.post(
        "/api/v1/listings",
        json={"title": "x", "category": "books", "price_minor": 100},
        headers=buyer.headers,
    )
    assert response.status_code == 403


async def test_listing_needs_a_token(client):
    response = await client.post(
        "/api/v1/listings", json={"title": "x", "category": "books", "price_minor": 100}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_stock_is_received_and_adjusted_but_never_negative(client):
    seller = await sign_up(client, "seller")
    listing = await list_product(client, seller)
    path = f"/api/v1/listings/{listing['id']}/stock"
    received = await client.post(f"{path}/receipts", json={"quantity": 10}, headers=seller.headers)
    assert received.status_code == 201
    assert received.json()["available"] == 10
    adjusted = await client.post(
        f"{path}/adjustments", json={"delta": -3, "reason": "damaged"}, headers=seller.headers
    )
    assert adjusted.json()["available"] == 7
    too_much = await client.post(
        f"{path}/adjustments", json={"delta": -8, "reason": "lost"}, headers=seller.headers
    )
    assert too_much.status_code == 409
    level = (await client.get(path, headers=seller.headers)).json()
    assert level["available"] == 7
    assert level["available"] + level["reserved"] + level["sold"] == level["received"]


async def test_seller_sees_only_own_listings(client):
    seller = await sign_up(client, "seller")
    other = await sign_up(client, "seller")
    mine = await list_product(client, seller, title="Mine")
    await list_product(client, other, title="Theirs")
    page = (await client.get("/api/v1/seller/listings", headers=seller.headers)).json()
    assert [item["id"] for item in page["items"]] == [mine["id"]]


async def test_delisted_listing_cannot_be_changed(client):
    seller = await sign_up(client, "seller")
    listing = await list_product(client, seller)
    path = f"/api/v1/listings/{listing['id']}"
    await client.delete(path, headers=seller.headers)
    response = await client.patch(path, json={"price_minor": 999}, headers=seller.headers)
    assert response.status_code == 409


async def test_a_title_cannot_be_blanked(client):
    seller = await sign_up(client, "seller")
    listing = await list_product(client, seller)
    response = await client.patch(
        f"/api/v1/listings/{listing['id']}", json={"title": "   "}, headers=seller.headers
    )
    assert response.status_code == 422
    assert (await client.get(f"/api/v1/listings/{listing['id']}")).json()["listing"][
        "title"
    ] == listing["title"]
