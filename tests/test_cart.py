"""A buyer's cart: add, change, remove, priced now, and private to its buyer."""

from __future__ import annotations

from conftest import list_product, sign_up


async def test_add_change_and_remove(client):
    seller = await sign_up(client, "seller")
    buyer = await sign_up(client, "buyer")
    lamp = await list_product(client, seller, stock=5, price_minor=2500)
    mug = await list_product(client, seller, stock=5, title="Enamel mug", price_minor=900)

    added = await client.post(
        "/api/v1/cart/items", json={"listing_id": lamp["id"], "quantity": 2}, headers=buyer.headers
    )
    assert added.status_code == 200, added.text
    await client.post("/api/v1/cart/items", json={"listing_id": mug["id"]}, headers=buyer.headers)
    await client.post("/api/v1/cart/items", json={"listing_id": mug["id"]}, headers=buyer.headers)
    cart = (await client.get("/api/v1/cart", headers=buyer.headers)).json()
    quantities = {line["listing_id"]: line["quantity"] for line in cart["lines"]}
    assert quantities == {lamp["id"]: 2, mug["id"]: 2}
    assert cart["totals"] == {"EUR": 2 * 2500 + 2 * 900}

    changed = await client.put(
        f"/api/v1/cart/items/{lamp['id']}", json={"quantity": 1}, headers=buyer.headers
    )
    assert changed.json()["totals"] == {"EUR": 2500 + 1800}
    removed = await client.delete(f"/api/v1/cart/items/{mug['id']}", headers=buyer.headers)
    assert [line["listing_id"] for line in removed.json()["lines"]] == [lamp["id"]]
    cleared = await client.delete("/api/v1/cart", headers=buyer.headers)
    assert cleared.json()["lines"] == []


async def test_cart_shows_current_price_and_stock(client, marketplace):
    seller = await sign_up(client, "seller")
    buyer = await sign_up(client, "buyer")
    lamp = await list_product(client, seller, stock=1, price_minor=2500)
    await client.post(
        "/api/v1/cart/items", json={"listing_id": lamp["id"], "quantity": 3}, headers=buyer.headers
    )
    await client.patch(
        f"/api/v1/listings/{lamp['id']}", json={"price_minor": 2000}, headers=seller.headers
    )
    line = (await client.get("/api/v1/cart", headers=buyer.headers)).json()["lines"][0]
    assert line["unit_price_minor"] == 2000
    assert line["status"] == "insufficient_stock" and line["available"] == 1


async def test_delisted_listing_is_flagged_and_not_totalled(client, marketplace):
    seller = await sign_up(client, "seller")
    buyer = await sign_up(client, "buyer")
    lamp = await list_product(client, seller, stock=3)
    await client.post("/api/v1/cart/items", json={"listing_id": lamp["id"]}, headers=buyer.headers)
    await client.delete(f"/api/v1/listings/{lamp['id']}", headers=seller.headers)
    await marketplace.runtime.drain()
    cart = (await client.get("/api/v1/cart", headers=buyer.headers)).json()
    assert cart["lines"][0]["status"] == "unavailable"
    assert cart["totals"] == {}
    again = await client.post(
        "/api/v1/cart/items", json={"listing_id": lamp["id"]}, headers=buyer.headers
    )
    assert again.status_code == 409


async def test_a_cart_is_its_buyers_alone(client):
    seller = await sign_up(client, "seller")
    alice = await sign_up(client, "buyer")
    bob = await sign_up(client, "buyer")
    lamp = await list_product(client, seller, stock=3)
    await client.post("/api/v1/cart/items", json={"listing_id": lamp["id"]}, headers=alice.headers)
    assert (await client.get("/api/v1/cart", headers=bob.headers)).json()["lines"] == []
    stolen = await client.delete(f"/api/v1/cart/items/{lamp['id']}", headers=bob.headers)
    assert stolen.status_code == 404
    assert len((await client.get("/api/v1/cart", headers=alice.headers)).json()["lines"]) == 1


async def test_unknown_listing_cannot_be_added(client):
    buyer = await sign_up(client, "buyer")
    response = await client.post(
        "/api/v1/cart/items", json={"listing_id": "nope"}, headers=buyer.headers
    )
    assert response.status_code == 404


async def test_line_quantity_is_bounded(client):
    seller = await sign_up(client, "seller")
    buyer = await sign_up(client, "buyer")
    lamp = await list_product(client, seller, stock=3)
    await client.post(
        "/api/v1/cart/items", json={"listing_id": lamp["id"], "quantity": 60}, headers=buyer.headers
    )
    over = await client.post(
        "/api/v1/cart/items", json={"listing_id": lamp["id"], "quantity": 60}, headers=buyer.headers
    )
    assert over.status_code == 409
    cart = (await client.get("/api/v1/cart", headers=buyer.headers)).json()
    assert cart["lines"][0]["quantity"] == 60
