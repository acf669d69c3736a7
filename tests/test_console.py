"""The operations console at /console, driven as a browser would, in both bindings: admin
only, every form CSRF-protected, each page showing what it is for, bad input a 4xx page.

Until the platform's spans flow, the traces are ones these tests put in the trace store."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp

from checkout_helpers import add_to_cart, place, wait_for
from colony.distributed.processes import PROCESSES_FILE, Processes, ProcessRecord
from colony.faults.ledger import Ledger
from colony.marketplace import Marketplace
from colony.payment_provider import CARD_DECLINED
from colony.platform import faults as fault_table
from colony.platform.ids import new_id
from colony.platform.messaging import Message
from colony.platform.messaging.asyncapi import asyncapi_document
from colony.platform.messaging.consumer import record_dead_letter
from colony.platform.observability.trace_store import SpanEvent, StoredSpan, TraceStore
from colony.platform.security import Actor
from colony.platform.web.server import HttpServer, free_port
from colony.services.gateway.app import create_app
from colony.services.gateway.auth import Authenticator
from colony.services.gateway.console import service_map
from colony.services.gateway.console.catalogue import build_catalogue
from colony.services.identity.api import IdentityApi, Registration
from conftest import list_product, sign_up, unique_email

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"
PAGES = [
    "/console",
    "/console/traces",
    "/console/sagas",
    "/console/dead-letters",
    "/console/outboxes",
    "/console/faults",
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
    assert "orders calls payments" in page and "(2 seen in the last 5.0 min)" in page
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


# --- sagas ---------------------------------------------------------------------------------------


async def an_order(console: Console, card: str | None = None) -> dict[str, Any]:
    """An order through the API, waited for to its end."""
    async with browser(console.app) as api:
        seller, buyer = await sign_up(api, "seller"), await sign_up(api, "buyer")
        listing = await list_product(api, seller, stock=3)
        await add_to_cart(api, buyer, listing)
        order_id = await place(api, buyer, **({"card": card} if card else {}))
        return await wait_for(api, buyer, order_id)


async def test_sagas_are_listed_by_state_and_one_shows_its_timeline_and_traces(
    console: Console,
) -> None:
    done = await an_order(console)
    refused = await an_order(console, CARD_DECLINED)
    assert (done["status"], refused["status"]) == ("completed", "cancelled")
    trace_id = uuid.uuid4().hex
    console.traces.add(
        [
            span(trace_id, "a" * 16, "POST /api/v1/orders", "gateway", 0, 50, kind="server"),
            span(
                trace_id,
                "b" * 16,
                "saga checkout reserve_stock",
                "orders",
                5,
                8,
                "a" * 16,
                **{"colony.saga_id": done["id"], "colony.order_id": done["id"]},
            ),
            span(
                trace_id,
                "c" * 16,
                "saga checkout capture_payment",
                "orders",
                15,
                9,
                "a" * 16,
                status="error",
                **{"colony.saga_id": done["id"], "colony.order_id": done["id"]},
            ),
            span(
                trace_id,
                "d" * 16,
                "saga checkout capture_payment",
                "orders",
                30,
                7,
                "a" * 16,
                **{"colony.saga_id": done["id"], "colony.order_id": done["id"]},
            ),
        ]
    )
    async with admin_browser(console) as web:
        every = (await web.get("/console/sagas")).text
        assert done["id"] in every and refused["id"] in every
        completed = (await web.get("/console/sagas", params={"status": "completed"})).text
        assert done["id"] in completed and refused["id"] not in completed
        cancelled = (await web.get("/console/sagas", params={"status": "cancelled"})).text
        assert refused["id"] in cancelled and done["id"] not in cancelled
        assert "authorize_payment" in cancelled  # where it turned round
        page = await web.get(f"/console/sagas/orders/{done['id']}")
        assert page.status_code == 200, page.text
        text = page.text
        assert "pill-completed" in text
        assert "StockReserved" in text and "PaymentCaptured" in text  # the order's timeline
        assert text.count("<code>capture_payment</code>") == 2  # an attempt retried
        assert f'href="/console/traces/{trace_id}"' in text
        turned = (await web.get(f"/console/sagas/orders/{refused['id']}")).text
        assert "pill-cancelled" in turned and "StepCompensated" in turned


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/console/sagas?status=stuck", 422),
        ("/console/sagas/nosuch/abc", 404),
        ("/console/sagas/orders/no-such-saga", 404),
        ("/console/sagas/payments/no-such-saga", 404),  # payments runs no sagas
        ("/console/sagas/orders/" + "x" * 300, 404),
        ("/console/sagas/orders/%00", 404),
    ],
)
async def test_bad_saga_questions_are_4xx_pages(console: Console, path: str, status: int):
    async with admin_browser(console) as web:
        page = await web.get(path)
    assert page.status_code == status, page.text
    assert "text/html" in page.headers["content-type"]


# --- dead letters ----------------------------------------------------------------------------


async def dead_letter(market: Marketplace, source: str = "orders") -> str:
    """A dead letter in recommendations, as its consumer leaves one after its retries: an
    order completed that it failed to learn from. From a ``source`` other than the topic's
    owner, it can never be applied (the consumer refuses foreign events)."""
    order_id = new_id()
    payload = {
        "order_id": order_id,
        "buyer_id": "buyer-" + order_id,
        "lines": [],
        "total_minor": 0,
        "currency": "EUR",
    }
    message = Message(
        id=new_id(),
        topic="orders.order.completed",
        key=order_id,
        payload=msgspec.Raw(msgspec.json.encode(payload)),
        headers={"correlation_id": "corr-" + order_id},
        created_at="2026-01-01T00:00:00+00:00",
        source=source,
    )
    db = market.runtime.databases["recommendations"]
    await record_dead_letter(db, "recommendations", message, "RuntimeError: model busy", 5)
    letters = await market.runtime.operations("recommendations").dead_letters(ADMIN_ACTOR, False)
    return next(letter.id for letter in letters if letter.message.id == message.id)


ADMIN_ACTOR = Actor(id="admin-test", role="admin")


async def test_a_dead_letter_is_listed_shown_and_replayed_from_the_console(
    console: Console,
) -> None:
    letter_id = await dead_letter(console.market)
    async with admin_browser(console) as web:
        listing = (await web.get("/console/dead-letters")).text
        assert letter_id in listing and "RuntimeError: model busy" in listing
        url = f"/console/dead-letters/recommendations/{letter_id}"
        shown = await web.get(url)
        assert shown.status_code == 200
        assert "orders.order.completed" in shown.text and "&#34;currency&#34;" in shown.text
        token = CSRF_INPUT.search(shown.text)
        assert token is not None
        replayed = await web.post(url + "/replay", data={"csrf_token": token.group(1)})
        assert replayed.status_code == 303
        assert replayed.headers["location"] == url + "?notice=replayed"
        after = await web.get(replayed.headers["location"])
        assert "Replayed: the consumer applied the message" in after.text
        assert letter_id not in (await web.get("/console/dead-letters")).text
        assert letter_id in (await web.get("/console/dead-letters?replayed=yes")).text


async def test_a_replay_that_fails_again_says_so_and_the_letter_stays(console: Console) -> None:
    letter_id = await dead_letter(console.market, source="payments")  # a foreign event
    url = f"/console/dead-letters/recommendations/{letter_id}"
    async with admin_browser(console) as web:
        token = await csrf(web, url)
        replayed = await web.post(url + "/replay", data={"csrf_token": token})
        assert replayed.headers["location"] == url + "?notice=failed"
        page = (await web.get(replayed.headers["location"])).text
        assert "failed again" in page and "ForeignEvent" in page
        assert letter_id in (await web.get("/console/dead-letters")).text


async def test_a_replay_needs_the_forms_token_and_an_admin(console: Console) -> None:
    letter_id = await dead_letter(console.market)
    url = f"/console/dead-letters/recommendations/{letter_id}/replay"
    async with admin_browser(console) as web:
        await csrf(web, "/console/dead-letters")
        for data in ({}, {"csrf_token": "x" * 43}, {"csrf_token": ""}):
            refused = await web.post(url, data=data)
            assert refused.status_code == 403, refused.text
    async with browser(console.app) as anonymous:
        assert (await anonymous.post(url, data={})).status_code == 303  # to log in
    async with browser(console.app) as setup:
        buyer = await sign_up(setup, "buyer")
    async with browser(console.app) as web:
        await log_in(web, buyer.account["email"], buyer.password)
        token = await csrf(web, "/login")
        assert (await web.post(url, data={"csrf_token": token})).status_code == 403
    letters = await console.market.runtime.operations("recommendations").dead_letters(
        ADMIN_ACTOR, False
    )
    assert letter_id in {letter.id for letter in letters}  # nothing was replayed


@pytest.mark.parametrize(
    "path",
    [
        "/console/dead-letters/nosuch/abc",
        "/console/dead-letters/recommendations/no-such-letter",
        "/console/dead-letters/recommendations/" + "x" * 200,
        "/console/dead-letters/recommendations/bad%20id",
    ],
)
async def test_unknown_dead_letters_are_404_pages(console: Console, path: str) -> None:
    async with admin_browser(console) as web:
        assert (await web.get(path)).status_code == 404
        token = await csrf(web, "/console/dead-letters")
        assert (await web.post(path + "/replay", data={"csrf_token": token})).status_code == 404


# --- outboxes and consumers ------------------------------------------------------------------


async def test_outboxes_and_consumers_of_every_service(console: Console) -> None:
    await dead_letter(console.market)
    async with admin_browser(console) as web:
        page = (await web.get("/console/outboxes")).text
    for service in ("identity", "catalog", "orders", "payments", "recommendations"):
        assert f'id="outbox-{service}"' in page
    assert "orders.order.completed" in page  # what recommendations consumes
    assert "in-process" in page  # no JetStream here to report a backlog


async def test_without_the_operations_endpoints_the_pages_say_so(console: Console) -> None:
    market = console.market
    backends = dataclasses.replace(market.backends, operations=None)
    app = create_app(backends, market.runtime.settings, Authenticator(backends.identity))
    async with browser(app) as web:
        await log_in(web, await admin_account(market), PASSWORD)
        for path in ("/console/sagas", "/console/dead-letters", "/console/outboxes"):
            page = await web.get(path)
            assert page.status_code == 200, page.text
            assert "not connected to the services" in page.text
        assert (await web.get("/console")).status_code == 200  # no catalogue: still a map


# --- faults ----------------------------------------------------------------------------------


def faults_console(console: Console, tmp_path: Path, enabled: bool) -> ASGIApp:
    market = console.market
    settings = msgspec.structs.replace(
        market.runtime.settings, data_dir=tmp_path / "data", fault_injection=enabled
    )
    backends = dataclasses.replace(market.backends, operations=market.runtime.operations)
    return create_app(backends, settings, Authenticator(backends.identity))


def chaos_report(tmp_path: Path) -> None:
    folder = tmp_path / "chaos" / "run-20260101-120000"
    folder.mkdir(parents=True)
    body = {
        "fault": "kill:payments",
        "checks": [
            {"name": "orders end", "ok": True, "detail": ""},
            {"name": "money", "ok": False, "detail": "x"},
        ],
    }
    (folder / "report.json").write_bytes(msgspec.json.encode(body))
    (folder / "report.html").write_text("<html><style>p{}</style><p>the run</p></html>")
    (tmp_path / "secret.json").write_text('{"password": "hunter2"}')


async def test_chaos_reports_are_listed_and_served_read_only(
    console: Console, tmp_path: Path
) -> None:
    chaos_report(tmp_path)
    app = faults_console(console, tmp_path, enabled=False)
    async with browser(app) as web:
        await log_in(web, await admin_account(console.market), PASSWORD)
        page = (await web.get("/console/faults")).text
        assert "kill:payments" in page and "money" in page and "Fault injection is off" in page
        assert 'name="spec"' not in page  # no form to inject with
        html = await web.get("/console/faults/reports/run-20260101-120000/report.html")
        assert html.status_code == 200 and "the run" in html.text
        policy = html.headers["content-security-policy"]
        assert "sandbox" in policy and "script-src" not in policy and "default-src 'none'" in policy
        data = await web.get("/console/faults/reports/run-20260101-120000/report.json")
        assert data.json()["fault"] == "kill:payments"
        for bad in (
            "/console/faults/reports/..%2F/secret.json",
            "/console/faults/reports/run-20260101-120000/..%2F..%2Fsecret.json",
            "/console/faults/reports/run-20260101-120000/report.txt",
            "/console/faults/reports/run-20260101-120000/missing.json",
            "/console/faults/reports/.hidden/report.json",
            "/console/faults/reports/%2E%2E/secret.json",
        ):
            answer = await web.get(bad)
            assert answer.status_code == 404, (bad, answer.status_code)
            assert "hunter2" not in answer.text
        token = await csrf(web, "/console/faults")
        refused = await web.post(
            "/console/faults/inject", data={"csrf_token": token, "kind": "reset"}
        )
        assert refused.status_code == 409 and "Fault injection is off" in refused.text


async def test_a_fault_is_installed_and_removed_in_this_process(
    console: Console, tmp_path: Path
) -> None:
    app = faults_console(console, tmp_path, enabled=True)
    try:
        async with browser(app) as web:
            await log_in(web, await admin_account(console.market), PASSWORD)
            token = await csrf(web, "/console/faults")
            fault = {"where": "here", "kind": "unavailable", "target": "payment-provider"}
            injected = await web.post(
                "/console/faults/inject", data={"csrf_token": token, **fault, "share": "0.5"}
            )
            assert injected.status_code == 303, injected.text
            (installed,) = fault_table.active()
            assert isinstance(installed, fault_table.Unavailable)
            assert (installed.dependency, installed.probability) == ("payment-provider", 0.5)
            page = (await web.get("/console/faults?notice=injected")).text
            assert installed.id in page and "Injected." in page
            assert "unavailable (dependency=payment-provider, probability=0.5)" in page
            for bad, field in (
                ({"kind": "explode"}, "kind"),
                ({"kind": "latency", "target": "payments"}, "delay_ms"),
                ({"kind": "latency", "target": "payments", "delay_ms": "soon"}, "delay_ms"),
                ({"kind": "reset", "target": ""}, "target"),
                ({"kind": "reset", "target": "Not A Name"}, "kind"),
                ({"kind": "reset", "target": "payments", "share": "2"}, "kind"),
                ({"kind": "clock-skew", "skew_seconds": "nan"}, "skew_seconds"),
            ):
                answer = await web.post(
                    "/console/faults/inject", data={"csrf_token": token, "where": "here", **bad}
                )
                assert answer.status_code == 422, (bad, answer.text)
                assert f'href="#f-{field}"' in answer.text, (bad, field)
            assert len(fault_table.active()) == 1
            assert (await web.post("/console/faults/inject", data=fault)).status_code == 403
            healed = await web.post(
                "/console/faults/heal", data={"csrf_token": token, "fault_id": installed.id}
            )
            assert healed.headers["location"] == "/console/faults?notice=removed"
            assert fault_table.active() == []
            again = await web.post(
                "/console/faults/heal", data={"csrf_token": token, "fault_id": installed.id}
            )
            assert again.headers["location"] == "/console/faults?notice=not-installed"
    finally:
        fault_table.heal_all()


async def test_a_fault_is_injected_into_the_running_topology_by_its_spec_and_healed(
    console: Console, tmp_path: Path
) -> None:
    """As ``colony faults`` does: a running topology's processes from ``processes.json``,
    each taking faults at ``/admin/faults`` (here one server of this test stands for them)."""
    port = free_port()
    server = HttpServer(Starlette(routes=fault_table.admin_routes()), "127.0.0.1", port)
    await server.start()
    url = f"http://127.0.0.1:{port}"
    records = {
        name: ProcessRecord(service=service, pid=None, url=url, restarts=0)
        for name, service in (
            ("gateway-1", "gateway"),
            ("orders-1", "orders"),
            ("payments-1", "payments"),
        )
    }
    table = Processes(
        supervisor_pid=os.getpid(), updated_at="2026-01-01T00:00:00+00:00", processes=records
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / PROCESSES_FILE).write_bytes(msgspec.json.encode(table))
    app = faults_console(console, tmp_path, enabled=True)
    spec = "latency:orders->payments:200ms"
    try:
        async with browser(app) as web:
            await log_in(web, await admin_account(console.market), PASSWORD)
            page = await web.get("/console/faults")
            assert "orders-1" in page.text and "payments-1" in page.text
            token = await csrf(web, "/console/faults")
            injected = await web.post(
                "/console/faults/inject",
                data={"csrf_token": token, "where": "topology", "spec": spec},
            )
            assert injected.status_code == 303, injected.text
            (installed,) = fault_table.active()
            assert isinstance(installed, fault_table.Latency) and installed.delay_ms == 200
            assert [e.spec for e in Ledger(tmp_path / "data").entries()] == [spec]
            listed = (await web.get("/console/faults")).text
            assert f'name="spec" value="{spec.replace(">", "&gt;")}"' in listed  # its heal form
            for bad, words in (
                ("explode:now", "no fault family"),
                ("database:payments", "colony faults inject database:payments"),
                ("kill:gateway", "this console&#39;s own process"),
                ("latency:orders->nowhere:5ms", "no service named"),
                ("", "Give a fault"),
                ("x" * 300, "Give a fault"),
            ):
                answer = await web.post(
                    "/console/faults/inject",
                    data={"csrf_token": token, "where": "topology", "spec": bad},
                )
                assert answer.status_code == 422, (bad, answer.text)
                assert words in answer.text, (bad, words)
            down = await web.post(
                "/console/faults/inject",
                data={"csrf_token": token, "where": "topology", "spec": "kill:orders"},
            )
            assert down.status_code == 409 and "not running now" in down.text
            healed = await web.post(
                "/console/faults/heal",
                data={"csrf_token": token, "where": "topology", "spec": spec},
            )
            assert healed.headers["location"] == "/console/faults?notice=healed"
            assert fault_table.active() == []
            assert Ledger(tmp_path / "data").entries() == []
    finally:
        fault_table.heal_all()
        await server.stop()


async def test_list_pages_keep_themselves_current_and_can_be_told_not_to(console: Console):
    async with admin_browser(console) as web:
        live = (await web.get("/console/sagas")).text
        assert 'data-live="5"' in live and 'src="/console/static/console.js"' in live
        assert '<noscript><meta http-equiv="refresh" content="10"></noscript>' in live
        still = (await web.get("/console/sagas", params={"live": "off"})).text
        assert "console.js" not in still and "http-equiv" not in still
        assert "Live updates are off." in still
        search = (await web.get("/console/traces")).text  # a form: no reload under it
        assert "console.js" in search and "http-equiv" not in search
