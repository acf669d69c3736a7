"""A buyer and an admin, in a real browser.

The buyer finds a lamp from the home page, puts two in the cart and checks out with the
keyboard alone, then watches the order page, which reloads itself, go to completed and its
parcel advance to delivered. The admin finds that order's trace in the console, sees every
service that took part, and replays the dead letter the seller's failing webhook left.
"""

from __future__ import annotations

import re
import time

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from browser.browsing import Browser
from browser.conftest import Receiver, Shop
from colony.payment_provider import CARD_APPROVED
from e2e.deployment import Deployment

BUYER = ("buyer01@colony.example", "colony-buyer", "Buyer 01")
ADMIN = ("admin@colony.example", "colony-admin")
CHECKOUT_FIELDS = [
    "Full name",
    "Street address",
    "Town or city",
    "Postcode",
    "Country",
    "Card number",
]
# What the order page calls each shipment status, in the courier's order.
PARCEL_STEPS = [
    "Waiting for the order",
    "Being prepared",
    "Picked up by the courier",
    "On its way",
    "Delivered",
]
TOOK_PART = {
    "gateway",
    "orders",
    "inventory",
    "payments",
    "delivery",
    "notifications",
    "cart",
    "payment-provider",
}
GAVE_UP = "notifications.delivery.gave_up"
ADDRESS_LINES = ["1 Analytical Row", "N1 9GU London", "GB"]
"""How the order page writes the address typed at the checkout."""


def log_in(browser: Browser, email: str, password: str) -> None:
    """On the login page the browser was sent to."""
    browser.wait_for_path(r"/login\?.*")
    browser.find("#f-email").send_keys(email)
    browser.find("#f-password").send_keys(password)
    browser.shot("log in")
    browser.button("Log in").click()


def test_a_buyer_finds_buys_by_keyboard_and_watches_the_order_arrive(
    browser: Browser, shop: Shop
) -> None:
    browser.visit("/")
    assert browser.text("h1") == "Welcome to Colony"
    browser.shot("home")
    browser.link("Log in").click()
    log_in(browser, BUYER[0], BUYER[1])
    browser.wait_for_path("/")
    assert BUYER[2] in browser.text(".site-header .who")

    # Search from the header, then open the product.
    browser.find("#site-q").send_keys(shop.word, Keys.ENTER)
    browser.wait_for_path(r"/search\?q=" + shop.word)
    assert browser.text("#results-heading") == "1 listing found"
    browser.shot("search results")
    browser.link(shop.title).click()
    browser.wait_for_path("/listings/" + shop.listing_id)
    assert browser.text("h1") == shop.title
    assert shop.price in browser.text(".price-large")
    assert browser.text(".stock") == "10 in stock"

    # Two of them in the cart.
    quantity = browser.find("#f-quantity")
    quantity.clear()
    quantity.send_keys("2")
    browser.shot("product")
    browser.button("Add to cart").click()
    browser.wait_for_path("/cart")
    (line,) = browser.find_all("table.table tbody tr")
    assert shop.title in line.text
    assert browser.find("#f-qty-1").get_attribute("value") == "2"
    assert "50.00" in browser.text(".totals dl")
    browser.shot("cart")

    # From here on, the keyboard alone.
    browser.tab_to("Check out")
    browser.press(Keys.ENTER)
    browser.wait_for_path("/checkout")
    browser.shot("checkout")
    order_id = check_out_by_keyboard(browser, shop)
    shop.order_id = order_id
    watch_the_order(browser)


def check_out_by_keyboard(browser: Browser, shop: Shop) -> str:
    """Fill in and send the checkout form with Tab, Shift+Tab, typing and Space; asserts the
    focus goes where a person expects and every control says what it is."""
    every_control_has_a_label(browser)

    # The first stop skips the header; from the page's start the focus goes down it in order.
    browser.press(Keys.TAB)
    assert browser.focused_name() == "Skip to content"
    assert browser.focused().location["y"] >= 0  # shown once it has the focus
    browser.press(Keys.ENTER)
    stops = browser.tab_to(CHECKOUT_FIELDS[0])
    assert stops == ["← Back to your cart", shop.title, CHECKOUT_FIELDS[0]], stops
    assert browser.focused().get_attribute("value") == BUYER[2]  # filled in from the account
    forward = [browser.focused_name()]
    for _ in range(len(CHECKOUT_FIELDS)):
        browser.press(Keys.TAB)
        forward.append(browser.focused_name())
        assert_focus_is_visible(browser)
    assert forward == [*CHECKOUT_FIELDS, "Place order"], forward

    # Back up to the street with Shift+Tab, the same stops in reverse.
    backward = []
    for _ in range(len(CHECKOUT_FIELDS) - 1):
        browser.shift_tab()
        backward.append(browser.focused_name())
        assert_focus_is_visible(browser)
    assert backward == CHECKOUT_FIELDS[:0:-1], backward

    card = " ".join(re.findall("....", CARD_APPROVED))  # in groups, as printed on a card
    for value in ("1 Analytical Row", "London", "N1 9GU", "gb", card):
        browser.type(value)
        browser.press(Keys.TAB)
    assert browser.focused_name() == "Place order"
    browser.shot("checkout filled in")
    browser.press(Keys.SPACE)
    found = browser.wait_for_path(r"/orders/([^/?]+)")
    return found.group(1)


def every_control_has_a_label(browser: Browser) -> None:
    """Every control a person can reach on the page has an accessible name, and every field
    of the checkout form a visible <label> of its own."""
    for control in browser.find_all("input, select, textarea, button"):
        if control.get_attribute("type") == "hidden":
            continue
        assert control.accessible_name.strip(), control.get_attribute("outerHTML")
    form = browser.find("form.checkout-form")
    for field in form.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select"):
        field_id = field.get_attribute("id")
        (label,) = form.find_elements(By.CSS_SELECTOR, f"label[for='{field_id}']")
        assert label.is_displayed() and label.text.strip() == field.accessible_name


def assert_focus_is_visible(browser: Browser) -> None:
    focused = browser.focused()
    assert focused.value_of_css_property("outline-style") != "none", focused.accessible_name


def watch_the_order(browser: Browser) -> None:
    """Stay on the order page, which loads itself again while anything is moving, until the
    parcel is delivered and the page stops; one screenshot per load."""
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + 45
    while True:
        status = browser.text(".heading-row .pill")
        parcel = browser.text(".tracking .pill")
        seen.append((status, parcel))
        browser.shot(f"order {status} {parcel or 'no parcel yet'}")
        if parcel == "Delivered":
            break
        assert browser.find_all("meta[http-equiv=refresh]"), f"the page stopped at {seen}"
        assert time.monotonic() < deadline, f"the order page is still at {seen}"
        browser.wait_for_reload(within=15)

    statuses = [status for status, _ in seen]
    assert statuses[-1] == "Completed" and set(statuses) <= {"Processing", "Completed"}, seen
    assert statuses == sorted(statuses, key=["Processing", "Completed"].index), seen
    parcels = [PARCEL_STEPS.index(parcel) for _, parcel in seen if parcel]
    assert parcels == sorted(parcels) and len(set(parcels)) >= 2, seen  # it moved, forward
    assert browser.text(".order-state .lead") == "Everything is delivered."
    tracking = [item.text for item in browser.find_all(".tracking ol.steps li")]
    assert [next(s for s in PARCEL_STEPS if f"— {s}" in item) for item in tracking] == (
        PARCEL_STEPS
    ), tracking
    # Nothing moves any more, so the page no longer reloads itself.
    assert not browser.find_all("meta[http-equiv=refresh]")
    # What was typed, as the order keeps it (the country as its code in capitals).
    assert browser.text("address").splitlines() == [BUYER[2], *ADDRESS_LINES], browser.text(
        "address"
    )


def test_an_admin_finds_the_orders_trace_and_replays_a_dead_letter(
    browser: Browser, shop: Shop, receiver: Receiver, deployment: Deployment
) -> None:
    # The buyer's order from the storefront; or, when this test runs alone, one from the API.
    if shop.order_id is not None:
        order_id, checkout = shop.order_id, "POST /checkout"
    else:
        order_id, checkout = place_an_order(deployment, shop), "POST /api/v1/orders"
    browser.visit("/console")
    log_in(browser, *ADMIN)
    browser.wait_for_path("/console")
    browser.shot("service map")

    # The order's checkout trace, found by the order id.
    browser.link("Traces").click()
    browser.wait_for_path("/console/traces")
    browser.find("#f-order_id").send_keys(order_id)
    browser.button("Find traces").click()
    browser.wait_for_path(r"/console/traces\?.*order_id=.*")
    browser.shot("traces of the order")
    roots = [link.text for link in browser.find_all("table.traces tbody td:nth-child(2) a")]
    assert checkout in roots, roots
    browser.link(checkout).click()
    browser.wait_for_path(r"/console/traces/[0-9a-f]{32}")

    def every_service() -> set[str] | None:
        """The services of the waterfall's spans, once all of them have arrived (the
        provider's come from its own process a moment later)."""
        services = {
            row.find_element(By.CSS_SELECTOR, ".span-label .muted").text.split(" · ")[0]
            for row in browser.find_all(".waterfall .span-row")
        }
        if services >= TOOK_PART:
            return services
        browser.driver.refresh()
        return None

    services = browser.until(every_service, within=20, what="span of every service")
    listed = {chip.text.strip() for chip in browser.find_all("dl.facts dd .chip")}
    assert TOOK_PART <= listed <= services, (listed, services)
    assert order_id in browser.text("dl.facts")
    browser.shot("the checkout's waterfall")

    # The seller's webhook kept failing: its delivery is a dead letter in notifications.
    browser.link("Dead letters").click()
    browser.wait_for_path("/console/dead-letters")

    def the_letter() -> str | None:
        for row in browser.find_all("table.dead-letters tbody tr"):
            if GAVE_UP in row.text and "HTTP 500" in row.text:
                return str(row.find_element(By.TAG_NAME, "a").get_attribute("href"))
        browser.driver.refresh()
        return None

    letter = browser.until(the_letter, within=20, what="dead letter of the webhook")
    browser.shot("dead letters")
    browser.driver.get(letter)
    browser.wait_for_path(r"/console/dead-letters/notifications/[^/]+")
    payload = browser.find_all("pre.payload")[-1].text
    assert receiver.url in payload, payload
    assert "not yet" in browser.text("dl.facts")
    delivery_id = re.search(r'"delivery_id": "([^"]+)"', payload)
    assert delivery_id is not None, payload
    browser.shot("the dead letter")

    # The seller's endpoint is back: replay the message, from the console.
    receiver.failing = False
    browser.button("Replay this message").click()
    browser.until(lambda: browser.find_all(".notice.good"), what="notice of the replay")
    assert browser.text(".notice.good") == (
        "Replayed: the consumer applied the message, and the letter is closed."
    )
    assert not [b for b in browser.find_all("button") if b.text == "Replay this message"]
    assert "not yet" not in browser.text("dl.facts")
    browser.shot("replayed")
    # ... and the webhook went out again, this time accepted.
    browser.until(
        lambda: delivery_id.group(1) in receiver.delivered(), within=15, what="webhook accepted"
    )


def place_an_order(deployment: Deployment, shop: Shop) -> str:
    """The buyer's order, through the API, when the admin's test runs without the buyer's."""
    with httpx.Client(base_url=deployment.url + "/api/v1", timeout=30) as api:
        login = api.post("/tokens", json={"email": BUYER[0], "password": BUYER[1]})
        headers = {"authorization": f"Bearer {login.json()['access_token']}"}
        added = api.post(
            "/cart/items", json={"listing_id": shop.listing_id, "quantity": 1}, headers=headers
        )
        assert added.status_code == 200, added.text
        address = {
            "name": BUYER[2],
            "line1": "1 Analytical Row",
            "city": "London",
            "postcode": "N1 9GU",
            "country": "GB",
        }
        placed = api.post(
            "/orders",
            json={"card_number": CARD_APPROVED, "address": address},
            headers={**headers, "idempotency-key": f"browser-{shop.listing_id}"},
        )
        assert placed.status_code == 201, placed.text
        order_id = str(placed.json()["order_id"])
        shop.order_id = order_id
        return order_id
