"""Helpers for the checkout suites: fill a cart, check out, wait for the saga to end."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from colony.payment_provider import CARD_APPROVED
from conftest import Session

ADDRESS = {
    "name": "Ada Buyer",
    "line1": "1 Analytical Row",
    "city": "London",
    "postcode": "N1 9GU",
    "country": "GB",
}


async def add_to_cart(
    client: httpx.AsyncClient, buyer: Session, listing: dict[str, Any], quantity: int = 1
) -> None:
    response = await client.post(
        "/api/v1/cart/items",
        json={"listing_id": listing["id"], "quantity": quantity},
        headers=buyer.headers,
    )
    assert response.status_code == 200, response.text


async def checkout(
    client: httpx.AsyncClient,
    buyer: Session,
    card: str = CARD_APPROVED,
    address: dict[str, Any] | None = None,
    key: str | None = None,
) -> httpx.Response:
    return await client.post(
        "/api/v1/orders",
        json={"card_number": card, "address": address or ADDRESS},
        headers={**buyer.headers, "idempotency-key": key or str(uuid.uuid4())},
    )


async def place(client: httpx.AsyncClient, buyer: Session, **kwargs: Any) -> str:
    response = await checkout(client, buyer, **kwargs)
    assert response.status_code == 201, response.text
    return str(response.json()["order_id"])


async def wait_for(
    client: httpx.AsyncClient,
    buyer: Session,
    order_id: str,
    statuses: tuple[str, ...] = ("completed", "cancelled"),
    within: float = 20.0,
) -> dict[str, Any]:
    """Poll the order, as its page does, until its status is one of ``statuses``."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await client.get(f"/api/v1/orders/{order_id}", headers=buyer.headers)
        assert response.status_code == 200, response.text
        order = response.json()
        if order["status"] in statuses:
            return dict(order)
        assert asyncio.get_running_loop().time() < deadline, f"order stuck: {order}"
        await asyncio.sleep(0.05)


async def stock_of(
    client: httpx.AsyncClient, seller: Session, listing: dict[str, Any]
) -> dict[str, Any]:
    response = await client.get(f"/api/v1/listings/{listing['id']}/stock", headers=seller.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())
