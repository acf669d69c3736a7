"""The operations console at /console, driven as a browser would, in both bindings: admin
only, every form CSRF-protected, each page showing what it is for, bad input a 4xx page.

Until the platform's spans flow, the traces are ones these tests put in the trace store."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from starlette.types import ASGIApp

from colony.marketplace import Marketplace
from colony.platform.ids import new_id
from colony.platform.messaging.asyncapi import asyncapi_document
from colony.platform.observability.trace_store import SpanEvent, StoredSpan, TraceStore
from colony.services.gateway.app import create_app
from colony.services.gateway.auth import Authenticator
from colony.services.gateway.console import service_map
from colony.services.gateway.console.catalogue import build_catalogue
from colony.services.identity.api import IdentityApi, Registration
from conftest import sign_up, unique_email

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"
PAGES = [
    "/console",
    "/console/traces",
]


@dataclasses.dataclass
class Console:
    app: ASGIApp
    traces: TraceStore
    market: Marketplace


@pytest.fixture
def console(marketplace: Marketplace) -> Console:
    """The gateway with the console wired as the marketplace wires it, and a trace store of
    the test's own."""
    store = TraceStore()
    runtime = marketplace.runtime
    backends = dataclasses.replace(
        marketplace.backends,
        traces=store,
        operations=runtime.operations,
        topology=runtime.topology,
        dependencies=runtime.resilience.snapshot,
    )
    app = create_app(
        backends,
        runtime.settings,
        Authenticator(backends.identity),
        event_catalogue=asyncapi_document(runtime.definitions.values()),
    )
    return Console(app, store, marketplace)


@contextlib.asynccontextmanager
async def browser(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of its own: its own cookie jar, so its own session."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as client:
        yield client


async def csrf(web: httpx.AsyncClient, path: str) -> str:
    page = await web.get(path)
    assert page.status_code == 200, page.text
    found = CSRF_INPUT.search(page.text)
    assert found, "no csrf_token field on " + path
    return found.group(1)


async def log_in(web: httpx.AsyncClient, email: str, password: str) -> None:
    token = await csrf(web, "/login")
    answer = await web.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}
    )
    assert answer.status_code == 303, answer.text


async def admin_account(market: Marketplace) -> str:
    """An admin, provisioned as operators do (admins never register); its e-mail."""
    email = unique_email("admin")
    await market.runtime.client(IdentityApi, caller="seed").provision(
        Registration(email=email, password=PASSWORD, name="Ops"), "admin"
    )
    return email


@contextlib.asynccontextmanager
async def admin_browser(console: Console) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(console.app) as web:
        await log_in(web, await admin_account(console.market), PASSWORD)
        yield web


# --- spans the tests put in the store ----------------------------------------------------------


def span(
    trace_id: str,
    span_id: str,
    name: str,
    service: str,
    start_ms: float,
    duration_ms: float,
    parent: str | None = None,
    kind: str = "internal",
    status: str = "unset",
    **attributes: str | int | float | bool,
) -> StoredSpan:
    base = time.time_ns() - 60 * 1_000_000_000
    start = base + int(start_ms * 1e6)
    return StoredSpan(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=kind,
        service=service,
        process=f"{service}-1",
        start_unix_nano=start,
        end_unix_nano=start + int(duration_ms * 1e6),
        status=status,
        attributes=dict(attributes),
    )


def checkout_trace(order_id: str, correlation_id: str, failed: bool = False) -> list[StoredSpan]:
    """A checkout's trace as the platform records one: the gateway's request, the order's
    saga steps, calls to payments (once failing, when ``failed``) and a delivery to a
    consumer, with a log line."""
    trace_id = uuid.uuid4().hex
    ids = iter(f"{n:016x}" for n in range(1, 100))
    root, place, step, pay = next(ids), next(ids), next(ids), next(ids)
    common = {"colony.correlation_id": correlation_id}
    spans = [
        span(trace_id, root, "POST /api/v1/orders", "gateway", 0, 40, kind="server", **common),
        span(
            trace_id,
            place,
            "orders/place_order",
            "orders",
            2,
            30,
            root,
            kind="server",
            **{"rpc.caller": "gateway", "colony.order_id": order_id, **common},
        ),
        span(
            trace_id,
            step,
            "saga checkout authorize_payment",
            "orders",
            10,
            20,
            place,
            **{"colony.saga": "checkout", "colony.order_id": order_id},
        ),
        span(
            trace_id,
            pay,
            "payments/authorize",
            "payments",
            12,
            15,
            step,
            kind="server",
            status="error" if failed else "ok",
            **{"rpc.caller": "orders", "colony.order_id": order_id},
        ),
        span(
            trace_id,
            next(ids),
            "orders.order.completed process",
            "notifications",
            45,
            5,
            root,
            kind="consumer",
            **{"messaging.destination.name": "orders.order.completed", "colony.order_id": order_id},
        ),
    ]
    logged = msgspec.structs.replace(
        spans[3],
        events=[
            SpanEvent(
                name="log",
                time_unix_nano=spans[3].start_unix_nano + 1000,
                attributes={"level": "warning", "event": "card <declined> by the provider"},
            )
        ],
    )
    spans[3] = logged
    return spans


# --- who may look -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
async def test_anonymous_is_sent_to_log_in(console: Console, path: str) -> None:
    async with browser(console.app) as web:
        answer = await web.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=%2Fconsole")


@pytest.mark.parametrize("role", ["buyer", "seller"])
async def test_buyers_and_sellers_are_refused_every_page(console: Console, role: str) -> None:
    async with browser(console.app) as setup:
        account = await sign_up(setup, role)
    async with browser(console.app) as web:
        await log_in(web, account.account["email"], account.password)
        for path in PAGES:
            answer = await web.get(path)
            assert answer.status_code == 403, (path, answer.text)
            assert "text/html" in answer.headers["content-type"]
            assert "for admin accounts" in answer.text
            assert "Service map" not in answer.text  # not even the console's sections


async def test_an_admin_sees_every_page_with_the_consoles_headers(console: Console) -> None:
    async with admin_browser(console) as web:
        for path in PAGES:
            answer = await web.get(path)
            assert answer.status_code == 200, (path, answer.text)
            policy = answer.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy
            assert "frame-ancestors 'none'" in policy
            assert answer.headers["cache-control"] == "private, no-store"
        script = await web.get("/console/static/console.js")
        assert script.status_code == 200 and "data-live" in script.text
        assert (await web.get("/console/static/console.css")).status_code == 200


# --- the service map -----------------------------------------------------------------------------


async def test_the_map_draws_every_service_call_and_topic(console: Console) -> None:
    for spans in (checkout_trace(new_id(), new_id()), checkout_trace(new_id(), new_id(), True)):
        console.traces.add(spans)
    async with admin_browser(console) as web:
        page = (await web.get("/console")).text
    for service in (
        "gateway",
        "identity",
        "catalog",
        "inventory",
        "cart",
        "orders",
        "payments",
        "delivery",
        "notifications",
        "recommendations",
        "payment-provider",
        "mail-sink",
    ):
        assert f'data-service="{service}"' in page, service
        assert f'id="service-{service}"' in page, service
    assert 'data-edge="orders-payments"' in page  # a call, with its breaker
    assert 'data-edge="payments-payment-provider"' in page
    assert 'data-topic="orders.order.completed"' in page
    assert 'id="channel-orders.order.completed"' in page  # the catalogue beside the map
    assert "edge edge-publish" in page and "edge edge-consume" in page
    # What the traces show: orders' calls to payments were seen, one of two failed.
    assert "orders calls payments" in page and "(2 seen in the last 5 min)" in page
    assert 'href="/console/traces?service=orders"' in page
    assert 'href="#channel-orders.order.completed"' in page


def test_the_layout_is_the_same_every_time_and_follows_the_calls() -> None:
    document = {"channels": {}, "operations": {}, "components": {}}
    first = service_map.layout(build_catalogue(document))
    again = service_map.layout(build_catalogue(document))
    assert first == again
    boxes = first.boxes
    assert boxes["gateway"].x < boxes["orders"].x < boxes["payments"].x
    assert boxes["payments"].x < boxes["payment-provider"].x
    assert boxes["inventory"].x < boxes["catalog"].x  # inventory calls catalog
    assert not any(
        a.x == b.x and abs(a.y - b.y) < service_map.BOX_H
        for a in boxes.values()
        for b in boxes.values()
        if a is not b
    )


# --- traces ----------------------------------------------------------------------------------


async def test_traces_are_found_by_order_correlation_service_status_and_duration(
    console: Console,
) -> None:
    order_id, correlation = new_id(), new_id()
    mine = checkout_trace(order_id, correlation, failed=True)
    other = checkout_trace(new_id(), new_id())
    console.traces.add([*mine, *other])
    trace_id = mine[0].trace_id
    async with admin_browser(console) as web:
        for query in (
            {"order_id": order_id},
            {"correlation_id": correlation},
            {"order_id": order_id, "service": "payments", "status": "error"},
            {"correlation_id": correlation, "min_ms": "40"},
        ):
            page = await web.get("/console/traces", params=query)
            assert page.status_code == 200, page.text
            assert trace_id in page.text, query
            assert other[0].trace_id not in page.text, query
        for query in (
            {"order_id": order_id, "status": "ok"},
            {"correlation_id": correlation, "min_ms": "1000"},
        ):
            page = await web.get("/console/traces", params=query)
            assert trace_id not in page.text and "No stored trace matches." in page.text
        opened = await web.get("/console/traces", params={"trace_id": trace_id.upper()})
        assert opened.status_code == 303
        assert opened.headers["location"] == f"/console/traces/{trace_id}"


@pytest.mark.parametrize(
    "query",
    [
        {"min_ms": "soon"},
        {"min_ms": "-5"},
        {"min_ms": "1e12"},
        {"status": "broken"},
        {"service": "Orders!"},
        {"order_id": "a" * 201},
        {"correlation_id": "with space"},
        {"limit": "all"},
        {"limit": "7"},
        {"trace_id": "not-hex"},
        {"order_id": "\x00"},
    ],
)
async def test_a_malformed_search_says_what_is_wrong(console: Console, query: dict[str, str]):
    async with admin_browser(console) as web:
        page = await web.get("/console/traces", params=query)
    assert page.status_code == 422, page.text
    assert "There is a problem" in page.text and 'aria-invalid="true"' in page.text


async def test_a_trace_is_a_waterfall_with_attributes_events_and_log_lines(
    console: Console,
) -> None:
    order_id = new_id()
    spans = checkout_trace(order_id, "corr-" + new_id(), failed=True)
    console.traces.add(spans)
    trace_id = spans[0].trace_id
    async with admin_browser(console) as web:
        page = await web.get(f"/console/traces/{trace_id}")
    assert page.status_code == 200, page.text
    text = page.text
    order = [text.index(f'id="span-{s.span_id}"') for s in spans]
    assert order == sorted(order)  # parents before children, siblings by start
    assert 'class="span-row indent-0' in text and 'class="span-row indent-3 span-error' in text
    assert "saga checkout authorize_payment" in text and "colony.order_id" in text
    assert "card &lt;declined&gt; by the provider" in text  # a log line, escaped
    assert "warning" in text
    assert f'href="/console/sagas/orders/{order_id}"' in text
    assert text.count('class="span-bar"') == len(spans)


@pytest.mark.parametrize("trace_id", ["0" * 32, "not-a-trace", "A" * 40, "%00"])
async def test_an_unknown_or_malformed_trace_is_a_404_page(console: Console, trace_id: str):
    async with admin_browser(console) as web:
        page = await web.get(f"/console/traces/{trace_id}")
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"]


async def test_with_the_marketplaces_own_wiring_the_pages_answer(client, marketplace) -> None:
    """Through the marketplace's gateway as it is wired (whatever it gives the console)."""
    async with browser(marketplace.app) as web:
        await log_in(web, await admin_account(marketplace), PASSWORD)
        for path in PAGES:
            assert (await web.get(path)).status_code == 200, path
