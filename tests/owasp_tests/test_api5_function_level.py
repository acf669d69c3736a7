"""OWASP API5:2023, broken function level authorization: every authenticated operation of the
API document, called by anonymous, and each role-bound one by the roles it is not for — all
refused with 401 or 403, never served and never a 500. The operations come from the served
document, so a new one is tried as soon as it exists (and this module fails until it says
who the new one is for). Internal routes are unreachable through the gateway, and a person's
token is no key to a service's own RPC routes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from checkout_helpers import ADDRESS, add_to_cart, place, wait_for
from colony.marketplace import Marketplace
from colony.payment_provider import CARD_APPROVED
from conftest import Session, list_product, sign_up

ANYONE_SIGNED_IN = "anyone signed in"
"""Operations any account may call; what they reach is checked by owner (API1's matter)."""
FOR: dict[str, str] = {
    "revoke_token": ANYONE_SIGNED_IN,
    "me": ANYONE_SIGNED_IN,
    "create_listing": "seller",
    "update_listing": "seller",
    "delist": "seller",
    "seller_listings": "seller",
    "stock": "seller",
    "receive_stock": "seller",
    "adjust_stock": "seller",
    "get_cart": "buyer",
    "add_to_cart": "buyer",
    "set_quantity": "buyer",
    "remove_from_cart": "buyer",
    "clear_cart": "buyer",
    "place_order": "buyer",
    "order_history": "buyer",
    "get_order": ANYONE_SIGNED_IN,
    "order_shipments": ANYONE_SIGNED_IN,
    "order_payment": ANYONE_SIGNED_IN,
    "order_ledger": ANYONE_SIGNED_IN,
    "cancel_order": "buyer",
    "refund_order": "seller",
    "seller_queue": "seller",
    "rebuild": "admin",
    "feed": ANYONE_SIGNED_IN,
    "mark_read": ANYONE_SIGNED_IN,
    "set_webhook": "seller",
    "get_webhook": "seller",
    "webhook_deliveries": "seller",
}
"""Who each authenticated operation is for, by its ``operationId``. The document says that an
operation needs a token, not whose; the services' ``actor.require(...)`` decide that, and
this table is what they must agree with. Admins may do what buyers and sellers do."""

VALID_BODIES: dict[str, dict[str, Any]] = {
    "create_listing": {"title": "Oak stool", "category": "home-kitchen", "price_minor": 900},
    "update_listing": {"price_minor": 1},
    "receive_stock": {"quantity": 5},
    "adjust_stock": {"delta": -1, "reason": "damaged"},
    "add_to_cart": {"quantity": 1},  # listing_id added from the fixtures
    "set_quantity": {"quantity": 2},
    "place_order": {"card_number": CARD_APPROVED, "address": ADDRESS},
    "cancel_order": {"reason": "testing who may"},
    "refund_order": {"reason": "testing who may"},
    "set_webhook": {"url": "https://hooks.example.com/colony"},
}
"""A body each operation would accept, so that a refusal is for who calls, not for what."""


@dataclass
class Cast:
    buyer: Session
    seller: Session
    path_values: dict[str, str]


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


@pytest.fixture
async def cast(client: httpx.AsyncClient) -> AsyncIterator[Cast]:
    """A seller with a listing, and a buyer with a completed order of it: real ids for every
    path, so that no refusal is a 404 in disguise."""
    seller, buyer = await sign_up(client, "seller"), await sign_up(client)
    listing = await list_product(client, seller, stock=3)
    await add_to_cart(client, buyer, listing)
    order = await wait_for(client, buyer, await place(client, buyer))
    assert order["status"] == "completed"
    await add_to_cart(client, buyer, listing)  # a cart line for the cart's paths
    yield Cast(
        buyer,
        seller,
        {"listing_id": listing["id"], "order_id": order["id"], "notification_id": "x"},
    )


def refusals(path: str) -> set[int]:
    """How a signed-in caller is refused an operation not for their role: 403, or 404 where
    the path names an order, since the gateway answers an order the caller has no part in as
    no order at all (whether an order id exists is its parties' business alone)."""
    return {403, 404} if "{order_id}" in path else {403}


def authenticated_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if operation.get("security")
    ]


async def call(
    client: httpx.AsyncClient,
    cast: Cast,
    method: str,
    path: str,
    operation: dict[str, Any],
    who: Session | None,
) -> httpx.Response:
    name = operation["operationId"]
    body = dict(VALID_BODIES.get(name, {})) if "requestBody" in operation else None
    if name == "add_to_cart" and body is not None:
        body["listing_id"] = cast.path_values["listing_id"]
    headers = {"idempotency-key": str(uuid.uuid4())} if method == "POST" else {}
    if who is not None:
        headers.update(who.headers)
    return await client.request(method, path.format(**cast.path_values), json=body, headers=headers)


def test_every_authenticated_operation_says_who_it_is_for(document: dict[str, Any]) -> None:
    names = {op["operationId"] for _, _, op in authenticated_operations(document)}
    assert names - FOR.keys() == set(), "say who these new operations are for"
    assert FOR.keys() - names == set(), "these operations are gone from the document"
    needing_body = {
        op["operationId"]
        for _, _, op in authenticated_operations(document)
        if "requestBody" in op and FOR[op["operationId"]] != ANYONE_SIGNED_IN
    }
    assert needing_body - VALID_BODIES.keys() == set(), "give these a body they would accept"


async def test_anonymous_is_refused_every_authenticated_operation(
    client: httpx.AsyncClient, document: dict[str, Any], cast: Cast
) -> None:
    served = []
    for method, path, operation in authenticated_operations(document):
        response = await call(client, cast, method, path, operation, None)
        if response.status_code != 401:
            served.append((method, path, response.status_code, response.text[:200]))
    assert served == []


@pytest.mark.parametrize("role", ["buyer", "seller"])
async def test_no_role_is_let_into_operations_for_another(
    client: httpx.AsyncClient, document: dict[str, Any], cast: Cast, role: str
) -> None:
    who = cast.buyer if role == "buyer" else cast.seller
    tried, served = 0, []
    for method, path, operation in authenticated_operations(document):
        meant_for = FOR[operation["operationId"]]
        if meant_for in (ANYONE_SIGNED_IN, role):
            continue
        tried += 1
        response = await call(client, cast, method, path, operation, who)
        if response.status_code not in refusals(path):
            served.append((method, path, response.status_code, response.text[:200]))
    assert tried >= 5
    assert served == []


async def test_the_operations_refused_are_served_to_those_they_are_for(
    client: httpx.AsyncClient, document: dict[str, Any], cast: Cast
) -> None:
    """The refusals above are for who called: the same requests, by the right role, work."""
    by_name = {op["operationId"]: (m, p, op) for m, p, op in authenticated_operations(document)}
    for name, who in (("seller_queue", cast.seller), ("stock", cast.seller)):
        method, path, operation = by_name[name]
        response = await call(client, cast, method, path, operation, who)
        assert response.status_code == 200, response.text
    method, path, operation = by_name["get_cart"]
    assert (await call(client, cast, method, path, operation, cast.buyer)).status_code == 200


@pytest.mark.parametrize(
    "path", ["/rpc/reserve", "/rpc/authorize", "/rpc/rebuild_projections", "/admin/behaviour"]
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_internal_routes_are_not_reachable_through_the_gateway(
    client: httpx.AsyncClient, cast: Cast, path: str, method: str
) -> None:
    for headers in ({}, cast.buyer.headers, cast.seller.headers):
        response = await client.request(method, path, json={}, headers=headers)
        assert response.status_code == 404, (path, response.status_code, response.text)


async def test_a_persons_token_does_not_open_a_services_rpc_route(
    client: httpx.AsyncClient, marketplace: Marketplace, cast: Cast
) -> None:
    placement = marketplace.runtime.topology.placement("inventory")
    if placement.binding != "http":
        pytest.skip("inventory is in this process: it has no route to present a token to")
    async with httpx.AsyncClient(base_url=placement.addresses[0]) as service:
        for who in (cast.buyer, cast.seller):
            response = await service.post(
                "/rpc/receive_stock",
                json={"listing_id": cast.path_values["listing_id"], "quantity": 1000},
                headers=who.headers,
            )
            assert response.status_code == 401, response.text
