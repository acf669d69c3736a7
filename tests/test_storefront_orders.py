"""The storefront after the cart, driven as a browser would: checking out with the form, the
order's page keeping itself current, history, cancelling, the seller's queue and refunds,
notifications, webhooks, and "bought together" on the product page."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from checkout_helpers import ADDRESS, add_to_cart
from colony.marketplace import Marketplace
from colony.payment_provider import CARD_APPROVED, CARD_DECLINED
from colony.services.delivery.api import Address, Shipment, TrackingEvent
from colony.services.gateway.storefront.checkout import checkout_body, read_checkout
from colony.services.gateway.storefront.display import format_when, order_ref
from colony.services.gateway.storefront.forms import FormInvalid
from colony.services.gateway.storefront.orders import (
    PENDING_REFRESH_SECONDS,
    SHIPPING_REFRESH_SECONDS,
    can_cancel,
    lead_text,
    refresh_seconds,
    timeline_rows,
)
from colony.services.orders.api import Order, OrderLine, OrderStep
from conftest import Session, list_product, sign_up
from test_storefront import browser, csrf, log_in

FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')
REFRESH = re.compile(r'<meta http-equiv="refresh" content="(\d+); url=/orders/\w+">')
AUTO_REFRESH = 'http-equiv="refresh"'
FORM = {**ADDRESS, "card_number": CARD_APPROVED}


# --- helpers ---------------------------------------------------------------------------------


async def provider_latency(url: str, ms: float) -> None:
    """Slow the payment provider down, so a checkout stays pending long enough to look at."""
    latency = {"p50_ms": ms, "p99_ms": ms} if ms else {}
    async with httpx.AsyncClient(base_url=url) as provider:
        response = await provider.put("/admin/behaviour", json={"latency": latency})
        assert response.status_code == 200, response.text


async def buyer_with_cart(
    client: httpx.AsyncClient, *listings: dict[str, Any]
) -> tuple[Session, list[dict[str, Any]]]:
    buyer = await sign_up(client, "buyer")
    for listing in listings:
        await add_to_cart(client, buyer, listing)
    return buyer, list(listings)


async def checkout_form(web: httpx.AsyncClient) -> dict[str, str]:
    """The checkout page's hidden fields (CSRF token and form key)."""
    token = await csrf(web, "/checkout")
    page = await web.get("/checkout")
    key = FORM_KEY.search(page.text)
    assert key, "no form key on /checkout"
    return {"csrf_token": token, "form_key": key.group(1)}


async def place_with_form(web: httpx.AsyncClient, **changes: str) -> str:
    response = await web.post("/checkout", data={**FORM, **await checkout_form(web), **changes})
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/orders/")
    return location.removeprefix("/orders/")


async def page_until(
    web: httpx.AsyncClient, path: str, text: str, within: float = 10.0
) -> httpx.Response:
    """GET the page until it says ``text``, as its refresh would."""
    deadline = time.monotonic() + within
    while True:
        page = await web.get(path)
        assert page.status_code == 200, page.text
        if text in page.text:
            return page
        assert time.monotonic() < deadline, f"{path} never said {text!r}: {page.text}"
        await asyncio.sleep(0.05)


async def history_total(client: httpx.AsyncClient, marketplace: Marketplace, buyer: Session) -> int:
    await marketplace.runtime.services["orders"].idle()  # the history is a projection
    history = await client.get("/api/v1/orders", headers=buyer.headers)
    return int(history.json()["total"])


async def completed_order(
    client: httpx.AsyncClient, web: httpx.AsyncClient, *listings: dict[str, Any]
) -> tuple[Session, str]:
    """A buyer, logged in in ``web``, whose order of ``listings`` has completed."""
    buyer, _ = await buyer_with_cart(client, *listings)
    await log_in(web, buyer)
    order_id = await place_with_form(web)
    await page_until(web, f"/orders/{order_id}", "Completed")
    return buyer, order_id


async def read_ids(client: httpx.AsyncClient, user: Session) -> set[str]:
    feed = await client.get("/api/v1/notifications", headers=user.headers)
    return {item["id"] for item in feed.json()["items"] if item["read"]}


@pytest.fixture
async def web(marketplace: Marketplace) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(marketplace) as client:
        yield client


# --- checking out ----------------------------------------------------------------------------


async def test_checkout_with_the_form_and_watch_the_order(
    client: httpx.AsyncClient,
    marketplace: Marketplace,
    web: httpx.AsyncClient,
    payment_provider: str,
) -> None:
    first, second = await sign_up(client, "seller"), await sign_up(client, "seller")
    lamp = await list_product(client, first, stock=5, title="Brass lamp", price_minor=2500)
    rug = await list_product(client, second, stock=5, title="Wool rug", price_minor=12000)
    buyer, _ = await buyer_with_cart(client, lamp, rug)
    await log_in(web, buyer)

    cart = await web.get("/cart")
    assert 'href="/checkout"' in cart.text
    page = await web.get("/checkout")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "private, no-store"
    for text in ("Brass lamp", "Wool rug", "€145.00", "From Seller", 'autocomplete="cc-number"'):
        assert text in page.text, text
    assert page.text.count('class="parcel"') == 2  # one parcel per seller
    assert 'value="Buyer"' in page.text  # the name is filled in from the account

    hidden = await checkout_form(web)
    # Typed as people do: the card in groups, the country in lower case.
    data = {**FORM, **hidden, "card_number": "4242 4242 4242 4242", "country": "gb"}
    await provider_latency(payment_provider, 300)
    try:
        # A double click: the same form twice at once makes one order.
        first_post, second_post = await asyncio.gather(
            web.post("/checkout", data=data), web.post("/checkout", data=data)
        )
        assert first_post.status_code == second_post.status_code == 303, first_post.text
        assert first_post.headers["location"] == second_post.headers["location"]
        order_path = first_post.headers["location"]
        order_id = order_path.removeprefix("/orders/")

        pending = await web.get(order_path)
        assert pending.status_code == 200
        assert "Processing" in pending.text
        assert REFRESH.findall(pending.text) == [str(PENDING_REFRESH_SECONDS)]
    finally:
        await provider_latency(payment_provider, 0)

    done = await page_until(web, order_path, "Completed")
    for text in (
        order_ref(order_id),
        "Your order is confirmed.",
        "Brass lamp",
        "Wool rug",
        "€145.00",
        "Paid",
        "ending 4242",
        "Order placed",
        "Order confirmed",
        "Ada Buyer",
        "N1 9GU",
    ):
        assert text in done.text, text
    # The parcels are still on their way: the page keeps looking, at the slower pace.
    assert REFRESH.findall(done.text) == [str(SHIPPING_REFRESH_SECONDS)]
    assert "script-src 'none'" in done.headers["content-security-policy"]  # no script needed
    assert "Tracking is unavailable" not in done.text
    assert "Cancel order" in done.text
    still = await web.get(order_path, params={"refresh": "off"})
    assert AUTO_REFRESH not in still.text
    assert "Turn them on" in still.text

    assert await history_total(client, marketplace, buyer) == 1
    history = await web.get("/orders")
    assert f'href="/orders/{order_id}"' in history.text
    assert "Completed" in history.text
    assert 'href="/orders"' in history.text  # the header's link for buyers
    assert "Your cart is empty." in (await web.get("/cart")).text


async def test_a_declined_card_shows_the_order_cancelled(
    client: httpx.AsyncClient, marketplace: Marketplace, web: httpx.AsyncClient
) -> None:
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=2)
    buyer, _ = await buyer_with_cart(client, lamp)
    await log_in(web, buyer)
    order_id = await place_with_form(web, card_number=CARD_DECLINED)
    page = await page_until(web, f"/orders/{order_id}", "Cancelled")
    assert "declined" in page.text
    assert "Declined" in page.text  # the payment's status
    assert AUTO_REFRESH not in page.text  # settled: nothing more will change by itself
    assert "Cancel order" not in page.text
    assert "items released" in page.text  # the timeline tells what was undone

    # The cart is still full; trying again, the address is filled in from the last order.
    await marketplace.runtime.services["orders"].idle()
    again = await web.get("/checkout")
    assert 'value="1 Analytical Row"' in again.text
    assert 'value="N1 9GU"' in again.text


async def test_a_bad_form_is_shown_again_and_orders_nothing(
    client: httpx.AsyncClient, marketplace: Marketplace, web: httpx.AsyncClient
) -> None:
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=3)
    buyer, _ = await buyer_with_cart(client, lamp)
    await log_in(web, buyer)
    hidden = await checkout_form(web)

    bad = await web.post(
        "/checkout", data={**FORM, **hidden, "postcode": "!!", "card_number": "4242x"}
    )
    assert bad.status_code == 422
    assert "Postcode is not in the expected format." in bad.text
    assert "Card number is not in the expected format." in bad.text  # both at once
    assert 'value="Ada Buyer"' in bad.text  # what was typed is kept...
    assert 'value="!!"' in bad.text
    assert "4242x" not in bad.text  # ...except the card number
    assert f'value="{hidden["form_key"]}"' in bad.text

    missing = await web.post("/checkout", data={**hidden, "card_number": CARD_APPROVED})
    assert missing.status_code == 422
    assert "Full name is required." in missing.text
    assert CARD_APPROVED not in missing.text

    await client.delete(f"/api/v1/listings/{lamp['id']}", headers=seller.headers)
    gone = await web.post("/checkout", data={**FORM, **hidden})
    assert gone.status_code == 409
    assert "No longer for sale" in gone.text
    assert await history_total(client, marketplace, buyer) == 0

    async with browser(marketplace) as other:
        await log_in(other, await sign_up(client, "buyer"))
        empty = await other.get("/checkout")
        assert "Your cart is empty" in empty.text
        assert 'action="/checkout"' not in empty.text  # nothing to check out: no form
        token = await csrf(other, "/checkout")
        posted = await other.post("/checkout", data={**FORM, "csrf_token": token})
        assert posted.status_code == 422
        assert "The cart is empty." in posted.text


async def test_checkout_and_orders_need_the_buyer(
    client: httpx.AsyncClient, marketplace: Marketplace, web: httpx.AsyncClient
) -> None:
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=2)
    _, order_id = await completed_order(client, web, lamp)
    async with browser(marketplace) as anonymous:
        for path in ("/checkout", "/orders", f"/orders/{order_id}", "/notifications"):
            response = await anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login?next=%2F"), path
    async with browser(marketplace) as other:
        await log_in(other, await sign_up(client, "buyer"))
        for path in (f"/orders/{order_id}", f"/orders/{order_id}/cancel", "/orders/nope"):
            response = await other.get(path)
            assert response.status_code == 404, path
            assert "No such order." in response.text
        token = await csrf(other, "/orders")
        cancel = await other.post(
            f"/orders/{order_id}/cancel", data={"reason": "mine now", "csrf_token": token}
        )
        assert cancel.status_code == 404
        assert order_id not in (await other.get("/orders")).text
    async with browser(marketplace) as seller_web:
        await log_in(seller_web, seller)
        assert (await seller_web.get("/checkout")).status_code == 403
        assert (await seller_web.get(f"/orders/{order_id}")).status_code == 403
        assert 'href="/orders"' not in (await seller_web.get("/")).text


# --- after checkout ------------------------------------------------------------------------


async def test_the_buyer_cancels_with_a_reason(
    client: httpx.AsyncClient, web: httpx.AsyncClient
) -> None:
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=3)
    buyer, order_id = await completed_order(client, web, lamp)
    path = f"/orders/{order_id}/cancel"
    form = await web.get(path)
    assert form.status_code == 200
    assert "Why are you cancelling?" in form.text
    token = await csrf(web, path)

    no_reason = await web.post(path, data={"reason": "  ", "csrf_token": token})
    assert no_reason.status_code == 422
    assert "Reason is required." in no_reason.text

    done = await web.post(path, data={"reason": "ordered by mistake", "csrf_token": token})
    assert done.status_code == 303, done.text
    assert done.headers["location"] in (
        f"/orders/{order_id}?notice=cancelled",
        f"/orders/{order_id}?notice=cancelling",
    )
    page = await page_until(web, f"/orders/{order_id}", "Cancelled: ordered by mistake")
    assert AUTO_REFRESH not in page.text
    assert "Cancel order" not in page.text
    payment = await client.get(f"/api/v1/orders/{order_id}/payment", headers=buyer.headers)
    assert payment.json()["status"] == "refunded"
    # Cancelling again (a second click) lands on the order, not on an error.
    again = await web.post(path, data={"reason": "again", "csrf_token": token})
    assert again.status_code == 303


async def test_the_seller_sees_the_order_and_refunds_it(
    client: httpx.AsyncClient, marketplace: Marketplace, web: httpx.AsyncClient
) -> None:
    seller, other = await sign_up(client, "seller"), await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=3, title="Copper kettle", price_minor=4000)
    rug = await list_product(client, other, stock=3, title="Jute rug", price_minor=6000)
    buyer, order_id = await completed_order(client, web, lamp, rug)
    await marketplace.runtime.services["orders"].idle()
    async with browser(marketplace) as seller_web:
        await log_in(seller_web, seller)
        assert 'href="/seller/orders"' in (await seller_web.get("/seller")).text
        queue = await seller_web.get("/seller/orders")
        assert queue.status_code == 200
        assert order_ref(order_id) in queue.text
        assert "Copper kettle" in queue.text
        assert "Jute rug" not in queue.text  # only this seller's part
        assert "€40.00" in queue.text
        token = await csrf(seller_web, "/seller/orders")
        refund_path = f"/seller/orders/{order_id}/refund"

        no_reason = await seller_web.post(refund_path, data={"reason": "", "csrf_token": token})
        assert no_reason.status_code == 422
        assert "Reason is required." in no_reason.text

        refunded = await seller_web.post(
            refund_path, data={"reason": "scratched", "csrf_token": token}
        )
        assert refunded.status_code == 303, refunded.text
        assert refunded.headers["location"] == "/seller/orders?notice=refunded"
        payment = await client.get(f"/api/v1/orders/{order_id}/payment", headers=buyer.headers)
        assert payment.json()["refunded_minor"] == 4000

        await marketplace.runtime.services["orders"].idle()
        after = await seller_web.get("/seller/orders?notice=refunded")
        assert "The refund is on its way to the buyer." in after.text
        assert "Refunded in full" in after.text

        stranger = await seller_web.post(
            "/seller/orders/nope/refund", data={"reason": "x", "csrf_token": token}
        )
        assert stranger.status_code == 404
    page = await web.get(f"/orders/{order_id}")
    assert "€40.00 by Seller" in page.text  # the buyer's timeline shows the refund


async def test_notifications_and_the_sellers_webhook(
    client: httpx.AsyncClient, marketplace: Marketplace, web: httpx.AsyncClient
) -> None:
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=3)
    buyer, order_id = await completed_order(client, web, lamp)
    await marketplace.runtime.drain()
    feed = await page_until(web, "/notifications", f"Order {order_ref(order_id)} confirmed")
    assert f'href="/orders/{order_id}"' in feed.text
    assert re.search(r'Notifications <span class="badge">\d+<', feed.text)
    shown = re.findall(r'action="/notifications/([0-9a-f]+)/read"', feed.text)
    assert shown, "no unread notification to mark"
    token = await csrf(web, "/notifications")
    one = await web.post(f"/notifications/{shown[0]}/read", data={"csrf_token": token})
    assert one.status_code == 303
    assert await read_ids(client, buyer) >= {shown[0]}
    read_all = await web.post("/notifications/read", data={"csrf_token": token})
    assert read_all.status_code == 303
    # Parcels keep moving, so newer ones may come meanwhile: those shown are the ones read.
    assert await read_ids(client, buyer) >= set(shown)
    gone = await web.post("/notifications/nope/read", data={"csrf_token": token})
    assert gone.status_code == 303

    async with browser(marketplace) as seller_web:
        await log_in(seller_web, seller)
        await page_until(seller_web, "/notifications", f"New order {order_ref(order_id)}")
        page = await seller_web.get("/seller/webhook")
        assert page.status_code == 200
        assert "Set up webhook" in page.text
        token = await csrf(seller_web, "/seller/webhook")
        bad = await seller_web.post(
            "/seller/webhook", data={"url": "ftp://files.example", "csrf_token": token}
        )
        assert bad.status_code == 422
        assert "Webhook URL is not in the expected format." in bad.text
        saved = await seller_web.post(
            "/seller/webhook",
            data={"url": "https://hooks.example/colony", "csrf_token": token},
        )
        assert saved.status_code == 303
        page = await seller_web.get(saved.headers["location"])
        assert "Your webhook URL is saved." in page.text
        assert 'value="https://hooks.example/colony"' in page.text
        secret = (await client.get("/api/v1/seller/webhook", headers=seller.headers)).json()
        assert secret["secret"] in page.text
    buyer_webhook = await web.get("/seller/webhook")
    assert buyer_webhook.status_code == 403


# --- bought together -------------------------------------------------------------------------


async def test_the_product_page_shows_what_was_bought_together(
    client: httpx.AsyncClient, marketplace: Marketplace, web: httpx.AsyncClient
) -> None:
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=3, title="Reading lamp")
    shade = await list_product(client, seller, stock=3, title="Linen shade")
    await completed_order(client, web, lamp, shade)
    await marketplace.runtime.drain()
    page = await page_until(web, f"/listings/{lamp['id']}", "Bought together")
    assert f'href="/listings/{shade["id"]}"' in page.text
    assert "Linen shade" in page.text


@pytest.mark.parametrize("failure", ["slow", "down"])
async def test_the_product_page_does_not_wait_for_recommendations(
    client: httpx.AsyncClient,
    marketplace: Marketplace,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=3)

    async def bought_together(listing_id: str, limit: int = 4) -> list[Any]:
        if failure == "slow":
            await asyncio.sleep(1.0)
            return []
        raise RuntimeError("recommendations is down")

    monkeypatch.setattr(marketplace.backends.recommendations, "bought_together", bought_together)
    started = time.monotonic()
    page = await client.get(f"/listings/{lamp['id']}")
    elapsed = time.monotonic() - started
    assert page.status_code == 200
    assert "Walnut desk lamp" in page.text
    assert "Bought together" not in page.text
    assert elapsed < 0.5, elapsed


# --- the pieces, without a marketplace -------------------------------------------------------


def an_order(status: str = "completed", stage: str = "completed", **changes: Any) -> Order:
    values: dict[str, Any] = {
        "id": "01a1fefda0627d89b4d3884644dbe609",
        "buyer_id": "b1",
        "status": status,
        "stage": stage,
        "lines": [
            OrderLine(
                listing_id="l1",
                seller_id="s1",
                title="Lamp",
                quantity=2,
                unit_price_minor=2500,
                line_total_minor=5000,
            )
        ],
        "total_minor": 5000,
        "currency": "EUR",
        "address": Address(**ADDRESS),
        "card_last4": "4242",
        "cancel_reason": None,
        "refunded_minor": 0,
        "version": 1,
        "created_at": "2026-11-21T16:43:16.962990+00:00",
        "updated_at": "2026-11-21T16:43:16.962990+00:00",
        "deadline_at": "2026-11-21T16:53:16.962990+00:00",
        "timeline": [],
        **changes,
    }
    return Order(**values)


def a_shipment(status: str) -> Shipment:
    return Shipment(
        id="sh1",
        order_id="o1",
        seller_id="s1",
        buyer_id="b1",
        status=status,  # type: ignore[arg-type]
        address=Address(**ADDRESS),
        lines=[],
        tracking=[TrackingEvent(status=status, at="", note="")],  # type: ignore[arg-type]
        created_at="",
        updated_at="",
    )


def test_the_order_page_refreshes_only_while_something_moves() -> None:
    pending = an_order("pending", "payment_authorized")
    assert refresh_seconds(pending, []) == PENDING_REFRESH_SECONDS
    assert refresh_seconds(an_order(stage="cancellation_requested"), []) == 2
    on_the_way = [a_shipment("delivered"), a_shipment("in_transit")]
    assert refresh_seconds(an_order(), on_the_way) == SHIPPING_REFRESH_SECONDS
    assert refresh_seconds(an_order(), None) == SHIPPING_REFRESH_SECONDS  # tracking unknown
    assert refresh_seconds(an_order(), [a_shipment("delivered")]) is None
    assert refresh_seconds(an_order("cancelled", "cancelled"), None) is None


def test_the_lead_says_where_the_order_is() -> None:
    assert lead_text(an_order("pending", "stock_reserved"), []).startswith("Your items are")
    assert lead_text(an_order(), [a_shipment("label_created")]) == "Your order is confirmed."
    on_the_way = [a_shipment("delivered"), a_shipment("picked_up")]
    assert lead_text(an_order(), on_the_way) == "Your order is on its way."
    assert lead_text(an_order(), [a_shipment("delivered")]) == "Everything is delivered."
    assert lead_text(an_order("cancelled", "cancelled"), None) == "This order is cancelled."


def test_cancelling_is_offered_until_a_parcel_is_picked_up() -> None:
    assert can_cancel(an_order("pending", "placed"), [])
    assert can_cancel(an_order(), [a_shipment("label_created"), a_shipment("pending")])
    assert not can_cancel(an_order(), [a_shipment("label_created"), a_shipment("picked_up")])
    assert not can_cancel(an_order("pending", "compensating"), [])
    assert not can_cancel(an_order(stage="cancellation_requested"), [])
    assert not can_cancel(an_order("cancelled", "cancelled"), [])


def test_the_timeline_reads_as_words() -> None:
    steps = [
        OrderStep(type="PaymentCaptured", at="", detail="5000"),
        OrderStep(type="CheckoutFailed", at="", detail="authorize_payment: The card was declined."),
        OrderStep(type="StepCompensated", at="", detail="undid reserve_stock"),
        OrderStep(type="Refunded", at="", detail="seller s1 refunded 2500"),
        OrderStep(type="SomethingNew", at="", detail="internal"),
    ]
    rows = timeline_rows(an_order(timeline=steps), {"s1": "Oak & Co"})
    assert [(row.label, row.detail) for row in rows] == [
        ("Payment taken", "€50.00"),
        ("The order could not go through", "The card was declined."),
        ("Undone", "items released"),
        ("Refunded", "€25.00 by Oak & Co"),
        ("SomethingNew", ""),
    ]


def test_the_checkout_form_reads_as_the_api_would() -> None:
    form = read_checkout(
        {**FORM, "card_number": "4242-4242 4242 4242", "country": " gb ", "city": " London "}
    )
    body = checkout_body(form)
    assert body.card_number == CARD_APPROVED
    assert (body.address.country, body.address.city) == ("GB", "London")
    with pytest.raises(FormInvalid) as failed:
        checkout_body(read_checkout({"card_number": "1", "country": "Britain"}))
    assert list(failed.value.errors) == [
        "name",
        "line1",
        "city",
        "postcode",
        "country",
        "card_number",
    ]


def test_times_and_references_for_people() -> None:
    assert order_ref("01a1fefda0627d89b4d3884644dbe609") == "#44DBE609"
    assert format_when("2026-11-21T16:43:16.962990+00:00") == "21 Nov 2026, 16:43 UTC"
    assert format_when("2026-11-21T17:43:16+01:00") == "21 Nov 2026, 16:43 UTC"
    assert format_when("not a time") == "not a time"
    assert format_when("") == ""
