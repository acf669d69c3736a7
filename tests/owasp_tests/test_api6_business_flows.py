"""OWASP API6:2023, unrestricted access to sensitive business flows: stock held hostage,
refunds beyond what was paid, card testing, and orders placed by the thousand — each tried
through the gateway as an abuser would, and the throttle's rules with a fake clock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from checkout_helpers import add_to_cart, checkout, place, stock_of, wait_for
from colony.marketplace import Marketplace
from colony.payment_provider import CARD_APPROVED, CARD_DECLINED
from colony.platform.errors import Conflict, RateLimited
from colony.platform.security import Actor
from colony.services.inventory.api import InventoryApi, ReservationLine
from colony.services.inventory.service import SWEEP_SECONDS
from colony.services.orders.throttle import (
    DECLINES_ALLOWED,
    PLACEMENT_BURST,
    CheckoutThrottle,
)
from conftest import Session, list_product, sign_up
from owasp_tests.refusals import retry_after


async def payment_of(client: httpx.AsyncClient, who: Session, order_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/orders/{order_id}/payment", headers=who.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def order_count(client: httpx.AsyncClient, buyer: Session) -> int:
    response = await client.get("/api/v1/orders", headers=buyer.headers)
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


# --- stock cannot be held hostage -------------------------------------------------------------


async def test_an_abandoned_reservation_expires_and_its_units_go_back_on_sale(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=5)
    # A checkout that reserves and then never comes back (its process gone): only the
    # reservation's expiry returns the units.
    inventory = marketplace.runtime.client(InventoryApi, caller="orders")
    held = await inventory.reserve(
        Actor.system("orders"),
        "abandoned-" + lamp["id"],
        [ReservationLine(listing_id=lamp["id"], quantity=4)],
        1.0,
    )
    assert held.status == "held"
    level = await stock_of(client, seller, lamp)
    assert (level["available"], level["reserved"]) == (1, 4)
    deadline = asyncio.get_running_loop().time() + 1.0 + SWEEP_SECONDS + 5.0
    while (level := await stock_of(client, seller, lamp))["reserved"]:
        assert asyncio.get_running_loop().time() < deadline, f"never expired: {level}"
        await asyncio.sleep(0.1)
    assert (level["available"], level["reserved"], level["sold"]) == (5, 0, 0)
    # Expired means gone: committing it now sells nothing.
    with pytest.raises(Conflict):
        await inventory.commit_reservation(Actor.system("orders"), held.id)
    level = await stock_of(client, seller, lamp)
    assert (level["available"], level["sold"]) == (5, 0)


async def test_a_cart_holds_no_stock(client: httpx.AsyncClient, marketplace: Marketplace) -> None:
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=3)
    hoarder, shopper = await sign_up(client), await sign_up(client)
    await add_to_cart(client, hoarder, lamp, 3)
    level = await stock_of(client, seller, lamp)
    assert (level["available"], level["reserved"]) == (3, 0)
    await add_to_cart(client, shopper, lamp, 3)
    order = await wait_for(client, shopper, await place(client, shopper))
    assert order["status"] == "completed"
    # The hoarder's cart now asks for what is sold: their checkout is refused, nothing oversold.
    late = await wait_for(client, hoarder, await place(client, hoarder))
    assert late["status"] == "cancelled"
    level = await stock_of(client, seller, lamp)
    assert (level["available"], level["reserved"], level["sold"]) == (0, 0, 3)


# --- refunds cannot exceed what was captured --------------------------------------------------


async def _completed_order(
    client: httpx.AsyncClient, price_minor: int = 4000
) -> tuple[Session, Session, str]:
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=2, price_minor=price_minor)
    buyer = await sign_up(client)
    await add_to_cart(client, buyer, lamp)
    order = await wait_for(client, buyer, await place(client, buyer))
    assert order["status"] == "completed", order
    return seller, buyer, str(order["id"])


async def _refund(client: httpx.AsyncClient, seller: Session, order_id: str) -> httpx.Response:
    return await client.post(
        f"/api/v1/orders/{order_id}/refunds", json={"reason": "damaged"}, headers=seller.headers
    )


async def _settled_payment(
    client: httpx.AsyncClient, marketplace: Marketplace, buyer: Session, order_id: str
) -> dict[str, Any]:
    """The payment once every refund and cancellation saga has ended."""
    await marketplace.runtime.services["orders"].idle()
    return await payment_of(client, buyer, order_id)


async def test_a_seller_refunding_twice_refunds_once(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    seller, buyer, order_id = await _completed_order(client)
    for _ in range(2):
        response = await _refund(client, seller, order_id)
        assert response.status_code in (200, 409), response.text
    payment = await _settled_payment(client, marketplace, buyer, order_id)
    assert payment["refunded_minor"] == payment["captured_minor"] == 4000


async def test_a_buyer_cancelling_after_a_refund_is_not_paid_twice(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    seller, buyer, order_id = await _completed_order(client)
    assert (await _refund(client, seller, order_id)).status_code == 200
    await _settled_payment(client, marketplace, buyer, order_id)
    cancel = await client.post(
        f"/api/v1/orders/{order_id}/cancellation",
        json={"reason": "refunded already, try for more"},
        headers=buyer.headers,
    )
    assert cancel.status_code in (200, 409), cancel.text
    payment = await _settled_payment(client, marketplace, buyer, order_id)
    assert payment["refunded_minor"] <= payment["captured_minor"] == 4000
    assert payment["refunded_minor"] == 4000


async def test_concurrent_refunds_refund_at_most_what_was_captured(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    seller, buyer, order_id = await _completed_order(client)
    cancel = client.post(
        f"/api/v1/orders/{order_id}/cancellation",
        json={"reason": "race the refunds"},
        headers=buyer.headers,
    )
    answers = await asyncio.gather(*(_refund(client, seller, order_id) for _ in range(6)), cancel)
    assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers]
    payment = await _settled_payment(client, marketplace, buyer, order_id)
    assert payment["refunded_minor"] == payment["captured_minor"] == 4000


# --- card testing is throttled ----------------------------------------------------------------


async def test_card_testing_is_held_back_before_it_reaches_the_provider(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=20)
    tester = await sign_up(client)
    await add_to_cart(client, tester, lamp)
    for _ in range(DECLINES_ALLOWED):
        order = await wait_for(client, tester, await place(client, tester, card=CARD_DECLINED))
        assert order["status"] == "cancelled"
    placed = await order_count(client, tester)
    for card in (CARD_DECLINED, CARD_APPROVED):
        retry_after(await checkout(client, tester, card=card))
    # Refused at placing: no order, so no authorization the provider could be asked for.
    assert await order_count(client, tester) == placed
    # Another buyer is not held back for it.
    honest = await sign_up(client)
    await add_to_cart(client, honest, lamp)
    assert (await wait_for(client, honest, await place(client, honest)))["status"] == "completed"


def test_declines_age_out_and_an_authorized_card_starts_afresh() -> None:
    now = [0.0]
    throttle = CheckoutThrottle(
        declines_allowed=3, decline_window_seconds=600, clock=lambda: now[0]
    )
    for _ in range(3):
        throttle.admit("b")
        throttle.declined("b")
        now[0] += 1
    with pytest.raises(RateLimited) as refused:
        throttle.admit("b")
    assert refused.value.extensions["retry_after"] == 597  # until the first decline ages out
    now[0] = 600.5
    throttle.admit("b")  # the first decline no longer counts
    throttle.declined("b")
    with pytest.raises(RateLimited):
        throttle.admit("b")
    throttle.authorized("b")
    throttle.admit("b")
    throttle.admit("other")


# --- placing orders by the thousand -----------------------------------------------------------


async def test_one_buyer_cannot_place_orders_without_bound(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    buyer = await sign_up(client)
    # Every placement counts, placed or refused (here an empty cart): the bound is on how
    # often checkout is asked, which is what costs.
    for _ in range(PLACEMENT_BURST):
        assert (await checkout(client, buyer)).status_code == 422
    seconds = retry_after(await checkout(client, buyer))
    assert seconds <= 60 / 30 + 1
    other = await sign_up(client)
    assert (await checkout(client, other)).status_code == 422  # empty cart, not held back


def test_placements_allow_a_burst_then_the_sustained_rate() -> None:
    now = [0.0]
    throttle = CheckoutThrottle(placements_per_minute=30, burst=5, clock=lambda: now[0])
    for _ in range(5):
        throttle.admit("b")
    with pytest.raises(RateLimited) as refused:
        throttle.admit("b")
    assert refused.value.extensions["retry_after"] == 2  # one placement every 2 s
    now[0] += 2.0
    throttle.admit("b")
    with pytest.raises(RateLimited):
        throttle.admit("b")
    now[0] += 60.0
    for _ in range(5):  # refilled to the burst, never beyond it
        throttle.admit("b")
    with pytest.raises(RateLimited):
        throttle.admit("b")


def test_a_throttle_that_lets_nothing_through_is_refused() -> None:
    with pytest.raises(ValueError):
        CheckoutThrottle(placements_per_minute=0)
    with pytest.raises(ValueError):
        CheckoutThrottle(burst=0)
