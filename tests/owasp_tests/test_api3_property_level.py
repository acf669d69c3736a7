"""OWASP API3 (broken object property level authorization), through the gateway in both
bindings.

Mass assignment: every body the API takes names its fields exactly, and a field it does not
take (an owner, a role, a status, a price or total the server computes, a ledger field) is
refused with a 422 problem naming it, never ignored and never applied; nothing is written.

Excessive exposure: no answer to a buyer, a seller or an admin carries a password or its
hash, another account's e-mail, a full card number, or another seller's part of an order.
"""

from __future__ import annotations

from typing import Any

import httpx

from checkout_helpers import ADDRESS, add_to_cart, place, wait_for
from colony.payment_provider import CARD_APPROVED
from conftest import list_product, sign_up, unique_email
from owasp_tests.test_api1_object_level import admin_session, paid_out_to_both, two_seller_order

FORBIDDEN_IN_ANSWERS = ("password", "$argon2", "$2b$", "pbkdf2", "scrypt", CARD_APPROVED)


async def test_every_body_refuses_a_field_it_does_not_take(client, marketplace):
    seller, buyer = await sign_up(client, "seller"), await sign_up(client, "buyer")
    lamp = await list_product(client, seller, stock=3, price_minor=2500)
    await add_to_cart(client, buyer, lamp)
    order_id = await place(client, buyer)
    await wait_for(client, buyer, order_id)
    listing = f"/api/v1/listings/{lamp['id']}"
    registration = {"email": unique_email("mass"), "password": "correct horse battery", "name": "M"}
    draft = {"title": "Oak chair", "category": "home-kitchen", "price_minor": 9000}
    attempts: list[tuple[str, str, dict[str, Any], dict[str, str], str]] = [
        ("POST", "/api/v1/accounts", registration, {}, "is_admin"),
        ("POST", "/api/v1/accounts", registration, {}, "id"),
        ("POST", "/api/v1/tokens", {"email": "x@example.com", "password": "p"}, {}, "role"),
        ("POST", "/api/v1/listings", draft, seller.headers, "seller_id"),
        ("POST", "/api/v1/listings", draft, seller.headers, "status"),
        ("PATCH", listing, {"title": "Brass lamp"}, seller.headers, "seller_id"),
        ("PATCH", listing, {"title": "Brass lamp"}, seller.headers, "owner"),
        ("POST", f"{listing}/stock/receipts", {"quantity": 1}, seller.headers, "available"),
        (
            "POST",
            f"{listing}/stock/adjustments",
            {"delta": 1, "reason": "found"},
            seller.headers,
            "sold",
        ),
        ("POST", "/api/v1/cart/items", {"listing_id": lamp["id"]}, buyer.headers, "price_minor"),
        ("POST", "/api/v1/cart/items", {"listing_id": lamp["id"]}, buyer.headers, "buyer_id"),
        ("PUT", f"/api/v1/cart/items/{lamp['id']}", {"quantity": 2}, buyer.headers, "price_minor"),
        (
            "POST",
            "/api/v1/orders",
            {"card_number": CARD_APPROVED, "address": ADDRESS},
            {**buyer.headers, "idempotency-key": "mass-assignment-total"},
            "total_minor",
        ),
        (
            "POST",
            "/api/v1/orders",
            {"card_number": CARD_APPROVED, "address": ADDRESS},
            {**buyer.headers, "idempotency-key": "mass-assignment-buyer"},
            "buyer_id",
        ),
        (
            "POST",
            f"/api/v1/orders/{order_id}/cancellation",
            {"reason": "changed my mind"},
            buyer.headers,
            "status",
        ),
        (
            "POST",
            f"/api/v1/orders/{order_id}/refunds",
            {"reason": "scratched"},
            seller.headers,
            "amount_minor",
        ),
        (
            "POST",
            f"/api/v1/orders/{order_id}/refunds",
            {"reason": "scratched"},
            seller.headers,
            "ledger",
        ),
        (
            "PUT",
            "/api/v1/seller/webhook",
            {"url": "https://example.com/hooks"},
            seller.headers,
            "secret",
        ),
        (
            "PUT",
            "/api/v1/seller/webhook",
            {"url": "https://example.com/hooks"},
            seller.headers,
            "seller_id",
        ),
    ]
    for method, path, body, headers, extra in attempts:
        response = await client.request(method, path, json={**body, extra: "x"}, headers=headers)
        assert response.status_code == 422, (method, path, extra, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert extra in response.text, (method, path, extra, response.text)

    # Nothing was written by any of them.
    assert (await client.get(listing)).json()["listing"]["title"] == "Walnut desk lamp"
    stock = (await client.get(f"{listing}/stock", headers=seller.headers)).json()
    assert (stock["received"], stock["sold"]) == (3, 1)
    assert (await client.get("/api/v1/cart", headers=buyer.headers)).json()["lines"] == []
    order = (await client.get(f"/api/v1/orders/{order_id}", headers=buyer.headers)).json()
    assert (order["status"], order["total_minor"]) == ("completed", 2500)
    webhook = await client.get("/api/v1/seller/webhook", headers=seller.headers)
    assert webhook.status_code == 404
    await marketplace.runtime.services["orders"].idle()
    history = (await client.get("/api/v1/orders", headers=buyer.headers)).json()
    assert history["total"] == 1
    login = await client.post(
        "/api/v1/tokens", json={"email": registration["email"], "password": "x" * 12}
    )
    assert login.status_code == 401  # no account was made


async def test_a_registration_cannot_choose_to_be_admin(client, marketplace):
    body = {
        "email": unique_email("would-be-admin"),
        "password": "correct horse battery",
        "name": "Mallory",
        "role": "admin",
    }
    response = await client.post("/api/v1/accounts", json=body)
    assert response.status_code == 422, response.text
    login = await client.post(
        "/api/v1/tokens", json={"email": body["email"], "password": body["password"]}
    )
    assert login.status_code == 401


async def answers(client: httpx.AsyncClient, headers: dict[str, str], paths: list[str]) -> str:
    texts = []
    for path in paths:
        response = await client.get(path, headers=headers)
        assert response.status_code in (200, 404), (path, response.text)
        texts.append(response.text)
    return "\n".join(texts)


async def test_answers_carry_nothing_that_is_not_the_callers(client, marketplace):
    order, buyer, first, second = await two_seller_order(client)
    await paid_out_to_both(client, order["id"], buyer)
    await marketplace.runtime.services["orders"].idle()
    admin = await admin_session(client, marketplace)
    await client.put(
        "/api/v1/seller/webhook", json={"url": "https://example.com/hooks"}, headers=first.headers
    )
    of_order = [
        f"/api/v1/orders/{order['id']}{tail}" for tail in ("/payment", "/ledger", "/shipments")
    ]
    everyone = ["/api/v1/me", "/api/v1/notifications?limit=100"]
    seen = {
        "buyer": await answers(
            client,
            buyer.headers,
            [
                *everyone,
                *of_order,
                f"/api/v1/orders/{order['id']}",
                "/api/v1/orders",
                "/api/v1/cart",
            ],
        ),
        "first": await answers(
            client,
            first.headers,
            [*everyone, *of_order, "/api/v1/seller/orders", "/api/v1/seller/webhook/deliveries"],
        ),
        "second": await answers(
            client, second.headers, [*everyone, *of_order, "/api/v1/seller/orders"]
        ),
        "admin": await answers(
            client, admin.headers, [*everyone, *of_order, f"/api/v1/orders/{order['id']}"]
        ),
    }
    for who, text in seen.items():
        for secret in FORBIDDEN_IN_ANSWERS:
            assert secret not in text, (who, secret)
    emails = {
        "buyer": buyer.account["email"],
        "first": first.account["email"],
        "second": second.account["email"],
    }
    for who, text in seen.items():
        for owner, email in emails.items():
            if owner != who:
                assert email not in text, (who, owner)
    # A seller is shown neither the other seller nor the buyer's card or e-mail.
    assert second.id not in seen["first"]
    assert first.id not in seen["second"]
