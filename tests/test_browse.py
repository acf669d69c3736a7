"""Browsing: categories, search with filters, sorting and pages, and product detail."""

from __future__ import annotations

import uuid

from conftest import list_product, sign_up


async def test_categories_are_listed(client):
    response = await client.get("/api/v1/categories")
    assert response.status_code == 200
    slugs = [c["slug"] for c in response.json()]
    assert len(slugs) >= 10 and "electronics" in slugs


async def test_search_filters_by_word_category_and_price(client):
    seller = await sign_up(client, "seller")
    word = f"zq{uuid.uuid4().hex[:8]}"
    cheap = await list_product(
        client, seller, title=f"{word} kettle", category="home-kitchen", price_minor=1000
    )
    dear = await list_product(
        client, seller, title=f"{word} teapot", category="home-kitchen", price_minor=9000
    )
    await list_product(client, seller, title=f"{word} novel", category="books", price_minor=1500)

    found = (await client.get("/api/v1/listings", params={"q": word})).json()
    assert found["total"] == 3

    kitchen = (
        await client.get("/api/v1/listings", params={"q": word, "category": "home-kitchen"})
    ).json()
    assert {i["id"] for i in kitchen["items"]} == {cheap["id"], dear["id"]}

    ranged = (
        await client.get(
            "/api/v1/listings", params={"q": word, "min_price": 500, "max_price": 2000}
        )
    ).json()
    assert {i["title"] for i in ranged["items"]} == {f"{word} kettle", f"{word} novel"}

    ordered = await client.get("/api/v1/listings", params={"q": word, "sort": "price_desc"})
    prices = [i["price_minor"] for i in ordered.json()["items"]]
    assert prices == sorted(prices, reverse=True)


async def test_search_prefix_matches_as_you_type(client):
    seller = await sign_up(client, "seller")
    word = f"typeahead{uuid.uuid4().hex[:6]}"
    await list_product(client, seller, title=f"{word} lantern")
    found = (await client.get("/api/v1/listings", params={"q": word[:-3]})).json()
    assert any(i["title"] == f"{word} lantern" for i in found["items"])


async def test_search_pages(client):
    seller = await sign_up(client, "seller")
    word = f"pg{uuid.uuid4().hex[:8]}"
    for n in range(5):
        await list_product(client, seller, title=f"{word} item {n}", price_minor=100 + n)
    first = (
        await client.get(
            "/api/v1/listings", params={"q": word, "page_size": 2, "sort": "price_asc"}
        )
    ).json()
    third = (
        await client.get(
            "/api/v1/listings", params={"q": word, "page_size": 2, "page": 3, "sort": "price_asc"}
        )
    ).json()
    assert first["total"] == 5 and len(first["items"]) == 2
    assert [i["price_minor"] for i in third["items"]] == [104]


async def test_search_text_is_never_read_as_query_syntax(client):
    for q in ['"', "AND OR NOT", "title:x", "*", "a) OR (b", "NEAR(x y)", "'; DROP TABLE"]:
        response = await client.get("/api/v1/listings", params={"q": q})
        assert response.status_code == 200, (q, response.text)


async def test_listing_detail_shows_stock(client):
    seller = await sign_up(client, "seller")
    listing = await list_product(client, seller, stock=7)
    detail = await client.get(f"/api/v1/listings/{listing['id']}")
    assert detail.status_code == 200
    assert detail.json()["available"] == 7
    assert detail.json()["listing"]["title"] == listing["title"]


async def test_unknown_listing_is_a_404_problem(client):
    response = await client.get("/api/v1/listings/does-not-exist")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


async def test_delisted_listings_leave_search(client):
    seller = await sign_up(client, "seller")
    word = f"gone{uuid.uuid4().hex[:8]}"
    listing = await list_product(client, seller, title=f"{word} clock")
    deleted = await client.delete(f"/api/v1/listings/{listing['id']}", headers=seller.headers)
    assert deleted.json()["status"] == "delisted"
    found = (await client.get("/api/v1/listings", params={"q": word})).json()
    assert found["total"] == 0
