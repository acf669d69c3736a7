"""OWASP API4:2023 Unrestricted Resource Consumption, tried against the gateway: pages asked
for too large, bodies too large or nested too deep, a client holding a connection by sending
its request slowly, an anonymous client flooding, a cart grown without end."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import msgspec
import pytest
from starlette.types import ASGIApp

from colony.marketplace import Marketplace
from colony.platform.web.api import MAX_JSON_DEPTH
from colony.platform.web.limits import BODY_READ_SECONDS
from colony.platform.web.server import HEADER_READ_SECONDS, HttpServer, free_port
from colony.services.cart.api import MAX_LINES
from colony.services.gateway.app import create_app
from colony.services.gateway.auth import Authenticator
from conftest import list_product, sign_up

ELSEWHERE = "203.0.113.7"  # a documentation address: not this host's, so not exempt
PAGE_LIMIT = 100
"""The most items any list in the API hands out at once."""
BOUNDED_BY_NATURE = {
    ("GET", "/api/v1/categories"): "the catalog's fixed categories",
    ("GET", "/api/v1/cart"): "a cart holds at most MAX_LINES lines",
    ("GET", "/api/v1/orders/{order_id}/shipments"): "one per seller of one order's lines",
    ("GET", "/api/v1/orders/{order_id}/ledger"): "a few entries per seller of one order",
}
"""Lists with no page parameters, and why they cannot grow without bound."""


def gateway(market: Marketplace, **overrides: Any) -> ASGIApp:
    settings = msgspec.structs.replace(market.runtime.settings, **overrides)
    return create_app(market.backends, settings, Authenticator(market.backends.identity))


def client_at(app: ASGIApp, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://colony.test")


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    return problem


# --- pages --------------------------------------------------------------------------------------


def _lists(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every GET whose answer is a list of things, or a page of them."""
    schemas = document["components"]["schemas"]
    found = []
    for path, item in document["paths"].items():
        operation = item.get("get")
        if operation is None:
            continue
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
        properties = schema.get("properties", {})
        if schema.get("type") == "array" or properties.get("items", {}).get("type") == "array":
            found.append((path, "GET", operation))
    return found


async def test_every_list_in_the_api_is_paged_and_its_page_bounded(client):
    document = (await client.get("/api/openapi.json")).json()
    lists = _lists(document)
    assert len(lists) >= 8  # the walk finds lists at all
    for path, method, operation in lists:
        sizes = [
            p
            for p in operation.get("parameters", [])
            if p["in"] == "query" and p["name"] in ("page_size", "limit")
        ]
        if not sizes:
            assert (method, path) in BOUNDED_BY_NATURE, f"{method} {path} has no page size"
            continue
        maximum = sizes[0]["schema"].get("maximum")
        assert maximum is not None and maximum <= PAGE_LIMIT, (path, sizes[0])


@pytest.mark.parametrize(
    "path, auth, size, paged",
    [
        ("/api/v1/listings", None, "page_size", True),
        ("/api/v1/seller/listings", "seller", "page_size", True),
        ("/api/v1/orders", "buyer", "page_size", True),
        ("/api/v1/seller/orders", "seller", "page_size", True),
        ("/api/v1/notifications", "buyer", "limit", False),
        ("/api/v1/seller/webhook/deliveries", "seller", "limit", False),
        ("/api/v1/listings/any/recommendations", None, "limit", False),
    ],
)
async def test_asking_for_a_huge_page_is_refused(client, path, auth, size, paged):
    headers = (await sign_up(client, auth)).headers if auth else {}
    assert (await client.get(path, params={size: 1}, headers=headers)).status_code == 200
    for asked in (PAGE_LIMIT + 1, 10**9, 10**30, -1, 0):
        answer = await client.get(path, params={size: asked}, headers=headers)
        assert size in assert_problem(answer, 422)["detail"]
    if paged:  # a page far down costs the database a scan past every row before it
        answer = await client.get(path, params={"page": 10**7}, headers=headers)
        assert "page" in assert_problem(answer, 422)["detail"]


async def test_a_cart_cannot_grow_without_bound(client):
    seller, buyer = await sign_up(client, "seller"), await sign_up(client, "buyer")
    for _ in range(MAX_LINES):
        listing = await list_product(client, seller, stock=1)
        added = await client.post(
            "/api/v1/cart/items", json={"listing_id": listing["id"]}, headers=buyer.headers
        )
        assert added.status_code == 200, added.text
    one_more = await list_product(client, seller, stock=1)
    refused = await client.post(
        "/api/v1/cart/items", json={"listing_id": one_more["id"]}, headers=buyer.headers
    )
    assert_problem(refused, 409)
    cart = (await client.get("/api/v1/cart", headers=buyer.headers)).json()
    assert len(cart["lines"]) == MAX_LINES


# --- bodies --------------------------------------------------------------------------------------


async def test_bodies_nested_deeper_than_the_limit_are_a_400_under_the_size_limit(client):
    buyer = await sign_up(client, "buyer")
    json = {"content-type": "application/json"}
    for depth in (MAX_JSON_DEPTH + 1, 5_000, 30_000):  # 30k fits in 64 KiB and would recurse
        nested = b"[" * depth + b"]" * depth
        body = b'{"listing_id": "x", "quantity": 1, "extra": ' + nested + b"}"
        answer = await client.post(
            "/api/v1/cart/items", content=body, headers={**buyer.headers, **json}
        )
        problem = assert_problem(answer, 400)
        assert "deep" in problem["detail"]
    # Brackets inside a string are text, not nesting.
    text = "[" * (MAX_JSON_DEPTH * 2)
    answer = await client.post(
        "/api/v1/cart/items", json={"listing_id": text[:64]}, headers=buyer.headers
    )
    assert_problem(answer, 404)  # no such listing: the body itself was fine


async def test_a_body_over_the_limit_is_refused_before_it_is_read(client, marketplace):
    limit = marketplace.runtime.settings.max_body_bytes
    answer = await client.post(
        "/api/v1/accounts",
        content=b"x" * (limit + 1),
        headers={"content-type": "application/json"},
    )
    assert_problem(answer, 413)


# --- slow clients --------------------------------------------------------------------------------


async def _closed_within(port: int, opening: bytes, dribble: bytes, seconds: float) -> float:
    """Send ``opening``, then ``dribble`` every 0.2 s; how long until the server hangs up
    (or answers), at most ``seconds``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(opening)
    try:
        while time.monotonic() - started < seconds:
            try:
                await asyncio.wait_for(reader.read(65536), 0.2)  # an answer, or closed
                return time.monotonic() - started
            except TimeoutError:
                writer.write(dribble)
                await writer.drain()
    except ConnectionError:
        return time.monotonic() - started
    finally:
        writer.close()
    return seconds


async def test_a_client_that_sends_its_headers_slowly_is_cut_off(marketplace):
    assert HEADER_READ_SECONDS <= 10
    server = HttpServer(marketplace.app, "127.0.0.1", free_port(), header_read_seconds=1.0)
    await server.start()
    try:
        held = await _closed_within(
            server.port, b"GET /api/v1/categories HTTP/1.1\r\nhost: x\r\n", b"x-a: b\r\n", 6.0
        )
    finally:
        await server.stop()
    assert held < 3.0


async def test_a_client_that_sends_its_body_slowly_gets_a_408(marketplace):
    server = HttpServer(marketplace.app, "127.0.0.1", free_port())
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /api/v1/accounts HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n{"
        )
        started = time.monotonic()

        async def dribble() -> None:
            while True:
                await asyncio.sleep(0.2)
                writer.write(b" ")
                await writer.drain()

        dribbling = asyncio.create_task(dribble())
        try:
            answer = await asyncio.wait_for(reader.read(65536), BODY_READ_SECONDS + 3)
        finally:
            dribbling.cancel()
            writer.close()
        elapsed = time.monotonic() - started
    finally:
        await server.stop()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert b"application/problem+json" in head
    assert msgspec.json.decode(body)["type"] == "/problems/request-timeout"
    assert BODY_READ_SECONDS - 0.5 <= elapsed <= BODY_READ_SECONDS + 2


# --- floods --------------------------------------------------------------------------------------


async def test_an_anonymous_flood_from_elsewhere_is_limited_by_default(marketplace):
    """The default settings exempt only this host: 300 requests at once from another
    address get the burst through and the rest a 429."""
    settings = marketplace.runtime.settings
    assert settings.rate_limit_exempt == "127.0.0.1,::1"
    app = gateway(marketplace, gateway_max_concurrency=0)  # no shedding: the limit alone
    async with client_at(app, ELSEWHERE) as flood:
        started = time.monotonic()
        answers = await asyncio.gather(*(flood.get("/api/v1/categories") for _ in range(300)))
        elapsed = time.monotonic() - started
    passed = sum(a.status_code == 200 for a in answers)
    refused = [a for a in answers if a.status_code == 429]
    assert passed + len(refused) == 300
    assert passed <= settings.rate_limit_burst + settings.rate_limit_per_second * elapsed + 1
    assert refused and all(int(a.headers["retry-after"]) >= 1 for a in refused)


async def test_made_up_forwarding_headers_buy_no_fresh_bucket(marketplace):
    app = gateway(marketplace, rate_limit_per_second=0.5, rate_limit_burst=3)
    async with client_at(app, ELSEWHERE) as flood:
        answers = [
            await flood.get("/api/v1/categories", headers={"x-forwarded-for": f"198.51.100.{i}"})
            for i in range(10)
        ]
    assert [a.status_code for a in answers].count(200) == 3
