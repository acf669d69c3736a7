"""Idempotency-Key: a repeated request replays the first response and changes nothing."""

from __future__ import annotations

import asyncio
import uuid

from conftest import list_product, sign_up

DRAFT = {"title": "Copper kettle", "category": "home-kitchen", "price_minor": 5500}


async def count(client, seller) -> int:
    return (await client.get("/api/v1/seller/listings", headers=seller.headers)).json()["total"]


async def test_same_key_and_body_replays_the_first_response(client):
    seller = await sign_up(client, "seller")
    headers = {**seller.headers, "idempotency-key": str(uuid.uuid4())}
    first = await client.post("/api/v1/listings", json=DRAFT, headers=headers)
    second = await client.post("/api/v1/listings", json=DRAFT, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert await count(client, seller) == 1


async def test_same_key_with_another_body_is_a_422(client):
    seller = await sign_up(client, "seller")
    headers = {**seller.headers, "idempotency-key": str(uuid.uuid4())}
    await client.post("/api/v1/listings", json=DRAFT, headers=headers)
    other = await client.post("/api/v1/listings", json={**DRAFT, "price_minor": 1}, headers=headers)
    assert other.status_code == 422
    assert other.json()["type"] == "/problems/idempotency-key-reused"
    assert await count(client, seller) == 1


async def test_concurrent_requests_with_one_key_make_one_listing(client):
    seller = await sign_up(client, "seller")
    headers = {**seller.headers, "idempotency-key": str(uuid.uuid4())}
    responses = await asyncio.gather(
        *(client.post("/api/v1/listings", json=DRAFT, headers=headers) for _ in range(8))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count(client, seller) == 1


async def test_keys_belong_to_their_caller(client):
    alice = await sign_up(client, "seller")
    bob = await sign_up(client, "seller")
    key = str(uuid.uuid4())
    a = await client.post(
        "/api/v1/listings", json=DRAFT, headers={**alice.headers, "idempotency-key": key}
    )
    b = await client.post(
        "/api/v1/listings", json=DRAFT, headers={**bob.headers, "idempotency-key": key}
    )
    assert a.json()["id"] != b.json()["id"]
    assert b.json()["seller_id"] == bob.id


async def test_stock_receipt_is_booked_once(client):
    seller = await sign_up(client, "seller")
    listing = await list_product(client, seller)
    headers = {**seller.headers, "idempotency-key": str(uuid.uuid4())}
    path = f"/api/v1/listings/{listing['id']}/stock/receipts"
    for _ in range(3):
        response = await client.post(path, json={"quantity": 4}, headers=headers)
        assert response.json()["available"] == 4


async def test_a_failed_request_stores_no_key(client):
    seller = await sign_up(client, "seller")
    listing = await list_product(client, seller)
    headers = {**seller.headers, "idempotency-key": str(uuid.uuid4())}
    path = f"/api/v1/listings/{listing['id']}/stock/adjustments"
    refused = await client.post(path, json={"delta": -1, "reason": "count"}, headers=headers)
    assert refused.status_code == 409
    await client.post(
        f"/api/v1/listings/{listing['id']}/stock/receipts",
        json={"quantity": 2},
        headers=seller.headers,
    )
    retried = await client.post(path, json={"delta": -1, "reason": "count"}, headers=headers)
    assert retried.status_code == 201 and retried.json()["available"] == 1
