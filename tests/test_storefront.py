"""The storefront's pages and forms, driven as a browser would: GET a form, POST it back."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from colony.marketplace import Marketplace
from colony.services.gateway.storefront.money import format_money, parse_amount
from colony.services.gateway.storefront.session import safe_next
from conftest import Session, list_product, sign_up

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def unique_word() -> str:
    return "w" + uuid.uuid4().hex[:12]


@contextlib.asynccontextmanager
async def browser(marketplace: Marketplace) -> AsyncIterator[httpx.AsyncClient]:
    """A separate browser: its own cookie jar, so its own session."""
    transport = httpx.ASGITransport(app=marketplace.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as client:
        yield client


async def csrf(client: httpx.AsyncClient, path: str) -> str:
    """GET a page with a form; its hidden token, which matches the browser's cookie."""
    page = await client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF_INPUT.search(page.text)
    assert found, "no csrf_token field on " + path
    assert client.cookies.get("colony_csrf") == found.group(1)
    return found.group(1)


async def log_in(client: httpx.AsyncClient, session: Session) -> None:
    token = await csrf(client, "/login")
    response = await client.post(
        "/login",
        data={"email": session.account["email"], "password": session.password, "csrf_token": token},
    )
    assert response.status_code == 303, response.text
    assert client.cookies.get("colony_session")


async def seller_listing_ids(client: httpx.AsyncClient, seller: Session) -> list[str]:
    response = await client.get("/api/v1/seller/listings", headers=seller.headers)
    return [item["id"] for item in response.json()["items"]]


# --- helpers without a marketplace ---------------------------------------------------------


def test_money_formatting_and_parsing() -> None:
    assert format_money(2500, "EUR") == "€25.00"
    assert format_money(199, "USD") == "$1.99"
    assert format_money(123456789, "GBP") == "£1,234,567.89"
    assert format_money(500, "CHF") == "5.00 CHF"
    assert parse_amount("12.50") == 1250
    assert parse_amount(" 12.5 ") == 1250
    assert parse_amount("12") == 1200
    for bad in ("", "abc", "-1", "1.234", "1e3", "12,50", "٣"):
        assert parse_amount(bad) is None, bad


def test_next_must_be_a_path_on_this_site() -> None:
    assert safe_next("/cart") == "/cart"
    assert safe_next("/search?q=a") == "/search?q=a"
    for bad in (
        "//evil.example",
        "/\\evil.example",
        "https://evil.example",
        "evil",
        "",
        None,
        "/\r\nSet-Cookie: x=1",
    ):
        assert safe_next(bad) == "/", bad


# --- browsing --------------------------------------------------------------------------------


async def test_home_and_search_show_a_new_listing(client: httpx.AsyncClient) -> None:
    seller = await sign_up(client, "seller")
    word = unique_word()
    await list_product(client, seller, title=f"Walnut lamp {word}", category="books")

    home = await client.get("/")
    assert home.status_code == 200
    assert "text/html" in home.headers["content-type"]
    assert f"Walnut lamp {word}" in home.text
    assert 'href="/search?category=books"' in home.text

    found = await client.get("/search", params={"q": word})
    assert found.status_code == 200
    assert f"Walnut lamp {word}" in found.text
    assert "1 listing found" in found.text
    assert "€25.00" in found.text
    assert "Page 1 of 1" in found.text

    in_range = await client.get(
        "/search",
        params={
            "q": word,
            "category": "books",
            "min_price": "24.99",
            "max_price": "25",
            "sort": "price_asc",
        },
    )
    assert word in in_range.text
    too_cheap = await client.get("/search", params={"q": word, "max_price": "10.00"})
    assert "0 listings found" in too_cheap.text
    other_category = await client.get("/search", params={"q": word, "category": "music"})
    assert "0 listings found" in other_category.text


async def test_search_with_bad_filters_explains(client: httpx.AsyncClient) -> None:
    bad_price = await client.get("/search", params={"min_price": "cheap"})
    assert bad_price.status_code == 422
    assert "Minimum price must be an amount like 12.50." in bad_price.text

    reversed_range = await client.get("/search", params={"min_price": "20", "max_price": "10"})
    assert reversed_range.status_code == 422
    assert "Maximum price must not be below the minimum." in reversed_range.text

    bad_sort = await client.get("/search", params={"sort": "cheapest"})
    assert bad_sort.status_code == 422
    assert "Sort order is not one of the choices." in bad_sort.text


async def test_search_pages(client: httpx.AsyncClient) -> None:
    seller = await sign_up(client, "seller")
    word = unique_word()
    for n in range(21):
        await list_product(client, seller, title=f"Mug {word} {n}")
    first = await client.get("/search", params={"q": word})
    assert "Page 1 of 2" in first.text
    assert "21 listings found" in first.text
    assert 'rel="next"' in first.text
    second = await client.get("/search", params={"q": word, "page": "2"})
    assert "Page 2 of 2" in second.text
    assert 'rel="prev"' in second.text


async def test_product_page_shows_stock_and_escapes(client: httpx.AsyncClient) -> None:
    seller = await sign_up(client, "seller")
    listing = await list_product(
        client,
        seller,
        stock=7,
        title="Lamp <em>bright</em>",
        description="Line one\nLine two",
        image_url="https://images.example/lamp.jpg",
    )
    page = await client.get(f"/listings/{listing['id']}")
    assert page.status_code == 200
    assert "7 in stock" in page.text
    assert "€25.00" in page.text
    assert "Lamp &lt;em&gt;bright&lt;/em&gt;" in page.text
    assert "<em>bright" not in page.text
    assert 'src="https://images.example/lamp.jpg"' in page.text
    assert "Log in to buy" in page.text
    assert 'action="/cart/items"' not in page.text  # no cart form for visitors


async def test_unknown_listing_is_an_html_404(client: httpx.AsyncClient) -> None:
    page = await client.get("/listings/no-such-listing")
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"]
    assert "No such listing." in page.text


# --- accounts --------------------------------------------------------------------------------


async def test_register_via_form_signs_in(marketplace: Marketplace) -> None:
    async with browser(marketplace) as web:
        token = await csrf(web, "/register")
        email = f"form-{unique_word()}@example.com"
        response = await web.post(
            "/register",
            data={
                "name": "Ada <Buyer>",
                "email": email,
                "password": "long enough pw",
                "role": "buyer",
                "csrf_token": token,
            },
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/"
        cookie = next(
            value
            for value in response.headers.get_list("set-cookie")
            if value.startswith("colony_session=")
        )
        for attribute in ("HttpOnly", "Path=/", "SameSite=lax", "Max-Age=3600"):
            assert attribute.lower() in cookie.lower(), cookie

        home = await web.get("/")
        assert "Ada &lt;Buyer&gt;" in home.text
        assert "Log out" in home.text
        assert 'href="/cart"' in home.text

        # The same e-mail again, with another password: the page does not say the address has
        # an account (it tells its owner by e-mail), and sends the person to log in.
        again = await web.post(
            "/register",
            data={
                "name": "Ada",
                "email": email,
                "password": "another long pw",
                "role": "buyer",
                "csrf_token": await csrf(web, "/register"),
            },
        )
        assert again.status_code == 200
        assert "Check your e-mail" in again.text
        assert 'action="/login"' in again.text

        logout = await web.post("/logout", data={"csrf_token": await csrf(web, "/")})
        assert logout.status_code == 303
        assert "Log in" in (await web.get("/")).text


async def test_register_validation_errors_rerender(marketplace: Marketplace) -> None:
    async with browser(marketplace) as web:
        token = await csrf(web, "/register")
        short = await web.post(
            "/register",
            data={
                "name": "Bo",
                "email": f"{unique_word()}@example.com",
                "password": "short",
                "role": "seller",
                "csrf_token": token,
            },
        )
        assert short.status_code == 422
        assert "Password must be at least 8 characters." in short.text
        assert 'value="seller" checked' in short.text  # what was chosen is kept
        assert "short" not in re.findall(r'value="([^"]*)"', short.text)

        admin = await web.post(
            "/register",
            data={
                "name": "Mallory",
                "email": f"{unique_word()}@example.com",
                "password": "long enough pw",
                "role": "admin",
                "csrf_token": token,
            },
        )
        assert admin.status_code == 422
        assert "Account type is not one of the choices." in admin.text
        assert not web.cookies.get("colony_session")


async def test_login_with_wrong_password_is_401(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    buyer = await sign_up(client, "buyer")
    async with browser(marketplace) as web:
        token = await csrf(web, "/login")
        response = await web.post(
            "/login",
            data={
                "email": buyer.account["email"],
                "password": "wrong password",
                "csrf_token": token,
            },
        )
        assert response.status_code == 401
        assert "not correct" in response.text
        assert buyer.account["email"] in response.text  # the e-mail stays filled in
        assert not web.cookies.get("colony_session")


async def test_login_next_is_never_another_site(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    buyer = await sign_up(client, "buyer")
    async with browser(marketplace) as web:
        form = await web.get("/login", params={"next": "//evil.example"})
        assert "evil.example" not in form.text
        for target, expected in (
            ("//evil.example", "/"),
            ("/\\evil.example", "/"),
            ("https://evil.example/", "/"),
            ("/cart", "/cart"),
        ):
            response = await web.post(
                "/login",
                data={
                    "email": buyer.account["email"],
                    "password": buyer.password,
                    "next": target,
                    "csrf_token": await csrf(web, "/login"),
                },
            )
            assert response.status_code == 303
            assert response.headers["location"] == expected, target


async def test_pages_needing_sign_in_redirect_to_login(marketplace: Marketplace) -> None:
    async with browser(marketplace) as web:
        for path in ("/cart", "/seller", "/seller/listings/new"):
            response = await web.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/login?next=%2F")


# --- the buyer's cart ------------------------------------------------------------------------


async def test_buyer_adds_to_cart_with_the_form(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    seller = await sign_up(client, "seller")
    buyer = await sign_up(client, "buyer")
    word = unique_word()
    listing = await list_product(client, seller, stock=5, title=f"Teapot {word}")
    product = f"/listings/{listing['id']}"
    async with browser(marketplace) as web:
        await log_in(web, buyer)
        token = await csrf(web, product)
        added = await web.post(
            "/cart/items", data={"listing_id": listing["id"], "quantity": "2", "csrf_token": token}
        )
        assert added.status_code == 303
        assert added.headers["location"] == "/cart"

        cart = await web.get("/cart")
        assert cart.status_code == 200
        assert f"Teapot {word}" in cart.text
        assert "€50.00" in cart.text
        assert "In stock" in cart.text
        assert '<span class="badge">2<' in cart.text

        more = await web.post(
            f"/cart/items/{listing['id']}", data={"quantity": "9", "csrf_token": token}
        )
        assert more.status_code == 303
        cart = await web.get("/cart")
        assert "Not enough in stock" in cart.text
        assert "€225.00" in cart.text

        too_many = await web.post(
            f"/cart/items/{listing['id']}", data={"quantity": "100", "csrf_token": token}
        )
        assert too_many.status_code == 422
        assert "Quantity must be at most 99." in too_many.text

        bad_add = await web.post(
            "/cart/items",
            data={"listing_id": listing["id"], "quantity": "-1", "csrf_token": token},
        )
        assert bad_add.status_code == 422
        assert "Quantity must be at least 1." in bad_add.text

        removed = await web.post(f"/cart/items/{listing['id']}/remove", data={"csrf_token": token})
        assert removed.status_code == 303
        assert "Your cart is empty." in (await web.get("/cart")).text


async def test_post_without_csrf_token_is_403(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    seller = await sign_up(client, "seller")
    buyer = await sign_up(client, "buyer")
    listing = await list_product(client, seller, stock=5)
    async with browser(marketplace) as web:
        await log_in(web, buyer)
        await csrf(web, f"/listings/{listing['id']}")
        for data in ({}, {"csrf_token": "x" * 43}, {"csrf_token": ""}):
            response = await web.post("/cart/items", data={"listing_id": listing["id"], **data})
            assert response.status_code == 403
            assert "text/html" in response.headers["content-type"]
        cart = await client.get("/api/v1/cart", headers=buyer.headers)
        assert cart.json()["lines"] == []

    async with browser(marketplace) as web:  # a login form posted from another site
        response = await web.post(
            "/login", data={"email": buyer.account["email"], "password": buyer.password}
        )
        assert response.status_code == 403


async def test_roles_keep_to_their_pages(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    buyer = await sign_up(client, "buyer")
    seller = await sign_up(client, "seller")
    async with browser(marketplace) as web:
        await log_in(web, buyer)
        response = await web.get("/seller")
        assert response.status_code == 403
        assert "text/html" in response.headers["content-type"]
        assert (await web.get("/seller/listings/new")).status_code == 403
    async with browser(marketplace) as web:
        await log_in(web, seller)
        assert (await web.get("/cart")).status_code == 403


# --- the seller area -------------------------------------------------------------------------


async def test_seller_lists_stocks_edits_and_delists(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    seller = await sign_up(client, "seller")
    word = unique_word()
    async with browser(marketplace) as web:
        await log_in(web, seller)
        form = await web.get("/seller/listings/new")
        key = re.search(r'name="form_key" value="([^"]+)"', form.text)
        assert key
        draft = {
            "title": f"Oak stool {word}",
            "description": "Sturdy.",
            "category": "home-kitchen",
            "price": "49.90",
            "currency": "GBP",
            "image_url": "",
            "form_key": key.group(1),
            "csrf_token": await csrf(web, "/seller/listings/new"),
        }
        created = await web.post("/seller/listings/new", data=draft)
        assert created.status_code == 303, created.text
        assert created.headers["location"] == "/seller?notice=created"
        # A double click sends the same form again: still one listing.
        again = await web.post("/seller/listings/new", data=draft)
        assert again.status_code == 303
        [listing_id] = await seller_listing_ids(client, seller)

        dashboard = await web.get("/seller?notice=created")
        assert "Your listing is live." in dashboard.text
        assert f"Oak stool {word}" in dashboard.text
        assert "£49.90" in dashboard.text

        token = await csrf(web, "/seller")
        stocked = await web.post(
            f"/seller/listings/{listing_id}/stock", data={"quantity": "4", "csrf_token": token}
        )
        assert stocked.status_code == 303
        detail = (await client.get(f"/api/v1/listings/{listing_id}")).json()
        assert detail["available"] == 4
        assert "4 in stock" in (await web.get(f"/listings/{listing_id}")).text

        no_stock = await web.post(
            f"/seller/listings/{listing_id}/stock", data={"quantity": "0", "csrf_token": token}
        )
        assert no_stock.status_code == 422
        assert "Quantity must be at least 1." in no_stock.text

        edit = await web.get(f"/seller/listings/{listing_id}/edit")
        assert 'value="49.90"' in edit.text
        changes = {**draft, "price": "55", "csrf_token": await csrf(web, "/seller")}
        edited = await web.post(f"/seller/listings/{listing_id}/edit", data=changes)
        assert edited.status_code == 303
        assert edited.headers["location"] == "/seller?notice=updated"
        detail = (await client.get(f"/api/v1/listings/{listing_id}")).json()
        assert detail["listing"]["price_minor"] == 5500

        delisted = await web.post(
            f"/seller/listings/{listing_id}/delist", data={"csrf_token": token}
        )
        assert delisted.status_code == 303
        detail = (await client.get(f"/api/v1/listings/{listing_id}")).json()
        assert detail["listing"]["status"] == "delisted"
        assert "no longer offered" in (await web.get(f"/listings/{listing_id}")).text


async def test_bad_listing_form_is_explained_and_creates_nothing(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    seller = await sign_up(client, "seller")
    async with browser(marketplace) as web:
        await log_in(web, seller)
        token = await csrf(web, "/seller/listings/new")
        good = {
            "title": "Chair",
            "description": "",
            "category": "home-kitchen",
            "price": "10.00",
            "currency": "EUR",
            "image_url": "",
            "csrf_token": token,
        }
        cases = [
            ({"price": "ten"}, "Price must be an amount like 12.50."),
            ({"price": "0"}, "Price must be between 0.01 and 1000000.00."),
            ({"price": "-5"}, "Price must be an amount like 12.50."),
            ({"title": "x" * 201}, "Title must be at most 200 characters."),
            ({"title": "   "}, "Title is required."),
            ({"category": "moon-rocks"}, "Unknown category"),
            ({"category": ""}, "Category is required."),
            ({"category": "Bad Slug"}, "Category is not in the expected format."),
            ({"currency": "JPY"}, "Currency is not one of the choices."),
            ({"image_url": "javascript:alert(1)"}, "Image URL is not in the expected format."),
        ]
        for change, message in cases:
            response = await web.post("/seller/listings/new", data={**good, **change})
            assert response.status_code == 422, (change, response.status_code)
            assert message in response.text, (change, message)
            assert 'aria-invalid="true"' in response.text
        assert await seller_listing_ids(client, seller) == []


async def test_seller_cannot_edit_anothers_listing(
    client: httpx.AsyncClient, marketplace: Marketplace
) -> None:
    owner = await sign_up(client, "seller")
    other = await sign_up(client, "seller")
    listing = await list_product(client, owner)
    async with browser(marketplace) as web:
        await log_in(web, other)
        assert (await web.get(f"/seller/listings/{listing['id']}/edit")).status_code == 403
        token = await csrf(web, "/seller")
        response = await web.post(
            f"/seller/listings/{listing['id']}/delist", data={"csrf_token": token}
        )
        assert response.status_code == 403
        assert (await web.get("/seller/listings/nope/edit")).status_code == 404


@pytest.mark.parametrize("path", ["/", "/search", "/login", "/register"])
async def test_pages_send_security_headers(marketplace: Marketplace, path: str) -> None:
    async with browser(marketplace) as web:
        response = await web.get(path)
    assert response.status_code == 200
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    # Only pages with a form hand out a CSRF cookie; the rest stay cacheable.
    has_form = path in ("/login", "/register")
    assert ("colony_csrf=" in response.headers.get("set-cookie", "")) is has_form
    if has_form:
        assert "samesite=strict" in response.headers["set-cookie"].lower()
        assert response.headers["cache-control"] == "private, no-store"
