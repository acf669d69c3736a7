"""Traces: a checkout is one trace across the gateway, every service it calls and every event
it raises, in either binding; unsampled traces record nothing, compensations and failed
requests are kept anyway; spans reach the console's store from other processes only with a
service token; every log line names its trace and span."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from checkout_helpers import add_to_cart, checkout, wait_for
from colony.marketplace import running_marketplace
from colony.payment_provider import CARD_DECLINED
from colony.platform.config import Settings
from colony.platform.logging import _add_trace
from colony.platform.observability import tracing
from colony.platform.observability.http_telemetry import RequestTelemetry
from colony.platform.observability.span_shipping import spans_route
from colony.platform.observability.trace_store import StoredSpan, TraceStore
from colony.platform.trust import InMemoryKeys, TokenIssuer, TokenVerifier
from colony.platform.web.problems import install_problem_handlers
from conftest import list_product, settings_for, sign_up
from waiting import eventually


@pytest.fixture
def sampled_at() -> Iterator[Any]:
    """Set the process's sampling ratio for one test, and put the usual one back."""

    def set_ratio(ratio: float) -> None:
        tracing.configure_tracing("gateway", "test", ratio)

    yield set_ratio
    tracing.configure_tracing("gateway", "test", 0.1)


async def checkout_trace(client: httpx.AsyncClient, card: str | None = None) -> tuple[str, str]:
    seller = await sign_up(client, "seller")
    buyer = await sign_up(client, "buyer")
    listing = await list_product(client, seller, stock=5)
    await add_to_cart(client, buyer, listing)
    kwargs = {"card": card} if card else {}
    response = await checkout(client, buyer, **kwargs)
    assert response.status_code == 201, response.text
    order_id = response.json()["order_id"]
    order = await wait_for(client, buyer, order_id)
    return order_id, order["status"]


async def test_a_checkout_is_one_trace_across_every_service(client, sampled_at) -> None:
    sampled_at(1.0)
    order_id, status = await checkout_trace(client)
    assert status == "completed"

    async def traced() -> list[Any]:
        # The checkout's own trace; the courier's later steps each start one of their own.
        found = tracing.STORE.search(order_id=order_id)
        return [f for f in found if f.root_name == "POST /api/v1/orders"]

    (summary,) = await eventually(traced, within=10)
    expected = {"gateway", "orders", "inventory", "payments", "delivery", "notifications", "cart"}

    async def whole() -> list[StoredSpan] | None:
        spans = tracing.STORE.trace(summary.trace_id)
        return spans if expected <= {span.service for span in spans} else None

    spans = await eventually(whole, within=10)
    names = {span.name for span in spans}
    assert "POST /api/v1/orders" in names
    assert any(name.startswith("saga checkout ") for name in names)
    assert "orders.order.completed process" in names  # across the broker, in the same trace
    assert any(span.name == "db transaction" for span in spans)
    assert any(
        span.kind == "client" and span.name.startswith("POST payment-provider") for span in spans
    )
    # One tree: every parent is in the trace, but the gateway's request, its root.
    ids = {span.span_id for span in spans}
    roots = [span for span in spans if span.parent_span_id not in ids]
    assert [root.name for root in roots] == ["POST /api/v1/orders"]
    assert {span.trace_id for span in spans} == {summary.trace_id}
    # The consumer's work sits under the span that raised its event.
    consumed = next(span for span in spans if span.name == "orders.order.completed process")
    assert consumed.attributes["colony.order_id"] == order_id


async def test_an_unsampled_checkout_records_nothing(client, sampled_at) -> None:
    sampled_at(0.0)
    order_id, status = await checkout_trace(client)
    assert status == "completed"
    await tracing_flushed()
    assert tracing.STORE.search(order_id=order_id) == []


async def test_a_compensation_is_kept_whatever_the_ratio(client, sampled_at) -> None:
    sampled_at(0.0)
    order_id, status = await checkout_trace(client, card=CARD_DECLINED)
    assert status == "cancelled"

    async def kept() -> list[StoredSpan]:
        return [
            span
            for summary in tracing.STORE.search(order_id=order_id)
            for span in tracing.STORE.trace(summary.trace_id)
            if " compensate " in span.name
        ]

    compensations = await eventually(kept, within=10)
    assert {span.service for span in compensations} == {"orders"}
    # And what the compensation called (inventory's release) is kept under it.
    trace_id = compensations[0].trace_id
    assert "inventory" in {span.service for span in tracing.STORE.trace(trace_id)}


async def tracing_flushed() -> None:
    """Wait for the shipper's next round (it takes finished spans once a second)."""
    import asyncio

    await asyncio.sleep(1.3)


async def test_a_failed_request_is_recorded_even_unsampled(sampled_at) -> None:
    sampled_at(0.0)
    carried: list[tuple[str, str] | None] = []

    async def broken(request: Request) -> Response:
        carried.append(tracing.current_ids())  # what a log line here would name
        raise RuntimeError("the floor gave way")

    app = RequestTelemetry(Starlette(routes=[Route("/boom/{thing}", broken)]), "gateway")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    before = set(_trace_ids())
    async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as client:
        assert (await client.get("/boom/7")).status_code == 500
    store = TraceStore()
    store.add(tracing.finished_spans())
    failed = [s for s in _all(store) if s.name == "GET /boom/{thing}"]
    assert failed and failed[0].status == "error"
    assert failed[0].attributes["http.response.status_code"] == 500
    assert not before & {s.trace_id for s in failed}
    # Kept with the ids its log lines carried, as the root of its trace.
    assert carried == [(failed[0].trace_id, failed[0].span_id)]
    assert failed[0].parent_span_id is None


def test_an_unsampled_request_carries_one_context_to_its_logs_and_its_events(sampled_at) -> None:
    """Nothing is recorded, but a log line and an event raised in the same request name the
    same trace, marked unsampled, so the work it causes elsewhere is not sampled either."""
    sampled_at(0.0)
    tracing.finished_spans()
    with tracing.root("GET", SpanKind.SERVER, service="gateway"):
        ids = tracing.current_ids()
        headers: dict[str, str] = {}
        tracing.inject(headers)
        again: dict[str, str] = {}
        tracing.inject(again)
    assert ids is not None
    trace_id, span_id = ids
    assert len(trace_id) == 32 and len(span_id) == 16 and int(trace_id, 16) and int(span_id, 16)
    assert headers == again == {"traceparent": f"00-{trace_id}-{span_id}-00"}
    assert tracing.finished_spans() == []
    assert tracing.current_ids() is None


def _trace_ids() -> list[str]:
    return [summary.trace_id for summary in tracing.STORE.search(limit=10_000)]


def _all(store: TraceStore) -> list[StoredSpan]:
    return [span for s in store.search(limit=10_000) for span in store.trace(s.trace_id)]


def test_a_log_line_names_its_trace_and_joins_its_span(sampled_at) -> None:
    sampled_at(1.0)
    with tracing.span("work", SpanKind.INTERNAL, service="orders"):
        line = _add_trace(None, "warning", {"event": "stock ran out"})
        ids = tracing.current_ids()
    assert ids is not None
    assert (line["trace_id"], line["span_id"]) == ids
    store = TraceStore()
    store.add(tracing.finished_spans())
    (work,) = [span for span in _all(store) if span.span_id == ids[1]]
    assert [(e.name, e.attributes["event"]) for e in work.events] == [("log", "stock ran out")]
    # Outside any span a line has no ids.
    assert "trace_id" not in _add_trace(None, "info", {"event": "idle"})


# --- spans from other processes --------------------------------------------------------------


KEYS = InMemoryKeys()


def span_json(trace_id: str) -> bytes:
    return msgspec.json.encode(
        [
            StoredSpan(
                trace_id=trace_id,
                span_id="00f067aa0ba902b7",
                name="payments/capture",
                kind="server",
                service="payments",
                process="payments/payments-1",
                start_unix_nano=1,
                end_unix_nano=2,
            )
        ]
    )


async def post_spans(body: bytes, headers: dict[str, str], host: str) -> tuple[int, TraceStore]:
    store = TraceStore()
    local = host == "127.0.0.1"
    app = Starlette(
        routes=[spans_route(store, TokenVerifier("gateway", KEYS), lambda request: local)]
    )
    install_problem_handlers(app)
    transport = httpx.ASGITransport(app=app, client=(host, 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        answer = await client.post("/internal/spans", content=body, headers=headers)
    return answer.status_code, store


@pytest.mark.parametrize(
    ("host", "identity", "audience", "status"),
    [
        ("10.1.2.3", "payments", "gateway", 204),
        ("10.1.2.3", None, None, 401),
        ("10.1.2.3", "payments", "orders", 401),  # a token for another service
        ("127.0.0.1", None, None, 204),  # the simulator, on the gateway's machine
    ],
)
async def test_spans_are_taken_from_the_marketplace_alone(
    host: str, identity: str | None, audience: str | None, status: int
) -> None:
    headers = {"content-type": "application/json"}
    if identity is not None and audience is not None:
        headers["authorization"] = "Bearer " + TokenIssuer(identity, KEYS).token(audience)
    trace_id = tracing.new_trace_id()
    answer, store = await post_spans(span_json(trace_id), headers, host)
    assert answer == status
    assert len(store.trace(trace_id)) == (1 if status == 204 else 0)


@pytest.mark.parametrize(
    "body", [b"not json", b"{}", b'[{"trace_id": 5}]', b"[" + b'{"x":1},' * 600 + b'{"x":1}]']
)
async def test_what_is_not_a_list_of_spans_is_a_4xx(body: bytes) -> None:
    status, store = await post_spans(body, {"content-type": "application/json"}, "127.0.0.1")
    assert 400 <= status < 500
    assert len(store) == 0


@pytest.mark.parametrize(
    ("traceparent", "valid"),
    [
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", True),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", True),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", False),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", False),
        ("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", False),
        ("", False),
    ],
)
def test_a_span_joins_only_a_well_formed_trace_context(
    traceparent: str, valid: bool, sampled_at
) -> None:
    sampled_at(1.0)
    with tracing.span("work", SpanKind.CONSUMER, service="orders", parent=traceparent or None):
        ids = tracing.current_ids()
    assert ids is not None  # a log line names its trace even when it is not recorded
    if valid:
        assert ids[0] == traceparent[3:35]
    elif not valid:
        assert ids[0] != traceparent[3:35]
    tracing.finished_spans()


async def test_the_couriers_later_steps_link_back_to_the_checkout(client, sampled_at) -> None:
    sampled_at(1.0)
    order_id, status = await checkout_trace(client)
    assert status == "completed"

    async def linked() -> list[tuple[str, str]] | None:
        found = tracing.STORE.search(order_id=order_id)
        checkout = [f.trace_id for f in found if f.root_name == "POST /api/v1/orders"]
        steps = [
            (span.name, link.trace_id)
            for f in found
            if f.root_name.startswith("courier ")
            for span in tracing.STORE.trace(f.trace_id)
            for link in span.links
        ]
        return steps if checkout and steps else None

    steps = await eventually(linked, within=15)
    checkout_id = next(
        f.trace_id
        for f in tracing.STORE.search(order_id=order_id)
        if f.root_name == "POST /api/v1/orders"
    )
    assert {trace_id for _, trace_id in steps} == {checkout_id}
    assert all(name.startswith("courier ") for name, _ in steps)


# --- OpenTelemetry's API and exporters --------------------------------------------------------


def test_a_span_another_library_opens_through_the_api_joins_colonys_trace(sampled_at) -> None:
    """Colony records its own spans; a library instrumented with OpenTelemetry's API opens its
    through the SDK's provider, under Colony's current span, and both reach the store."""
    from opentelemetry import trace

    sampled_at(1.0)
    tracing.finished_spans()
    with (
        tracing.span("checkout", SpanKind.SERVER, service="orders") as ours,
        trace.get_tracer("some.library").start_as_current_span("library work") as theirs,
    ):
        theirs.set_attribute("library.detail", "x")
        assert tracing.current_ids() == (
            f"{ours.get_span_context().trace_id:032x}",
            f"{theirs.get_span_context().span_id:016x}",
        )
    store = TraceStore()
    store.add(tracing.finished_spans())
    spans = {span.name: span for span in _all(store)}
    assert spans["library work"].parent_span_id == spans["checkout"].span_id
    assert spans["library work"].trace_id == spans["checkout"].trace_id
    assert spans["library work"].attributes == {"library.detail": "x"}


def test_colonys_span_is_the_apis_current_span_inside_its_block_alone(sampled_at) -> None:
    """Colony sets OpenTelemetry's context itself (not through the API's calls): what the API
    reads must be the same, inside the block, in a block nested in it, and after both."""
    from opentelemetry import trace

    sampled_at(1.0)
    with tracing.span("outer", SpanKind.SERVER, service="orders") as outer:
        assert trace.get_current_span() is outer
        with tracing.child("inner") as inner:
            assert trace.get_current_span() is inner
            assert inner.get_span_context().trace_id == outer.get_span_context().trace_id
        assert trace.get_current_span() is outer
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert tracing.current_ids() is None
    tracing.finished_spans()


def test_an_otlp_exporter_receives_each_span_as_the_sdk_exports_it(sampled_at) -> None:
    """With ``OTEL_EXPORTER_OTLP_*`` set, every finished span is handed to the SDK's batch
    processor: here an in-memory exporter stands in, and the OTLP encoder takes what it got."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from colony.platform.observability.recorder import FINISHED

    sampled_at(1.0)
    exported = InMemorySpanExporter()
    FINISHED.exporter, before = SimpleSpanProcessor(exported), FINISHED.exporter
    try:
        with (
            tracing.span("POST /api/v1/orders", SpanKind.SERVER, service="gateway"),
            tracing.child("orders/place", attributes={"rpc.method": "place"}),
            pytest.raises(ValueError),
            tracing.child("db transaction", SpanKind.CLIENT),
        ):
            raise ValueError("disk full")
    finally:
        FINISHED.exporter = before
    tracing.finished_spans()
    by_name = {span.name: span for span in exported.get_finished_spans()}
    assert set(by_name) == {"POST /api/v1/orders", "orders/place", "db transaction"}
    root, call = by_name["POST /api/v1/orders"], by_name["orders/place"]
    db = by_name["db transaction"]
    assert root.parent is None and root.kind is SpanKind.SERVER
    assert call.parent.span_id == root.context.span_id
    assert db.parent.span_id == call.context.span_id
    assert call.attributes["colony.service"] == "gateway"
    assert call.attributes["rpc.method"] == "place"
    assert db.status.status_code is StatusCode.ERROR
    assert [event.name for event in db.events] == ["exception"]
    assert db.end_time >= db.start_time
    request = encode_spans(list(by_name.values()))
    names = {
        span.name
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
    assert names == set(by_name)


async def test_the_console_stores_retention_comes_from_settings(tmp_path) -> None:
    read = Settings.from_env(
        {
            "COLONY_TRACE_STORE_TRACES": "120",
            "COLONY_TRACE_STORE_AGE_SECONDS": "90",
            "COLONY_TRACE_STORE_SPANS": "4000",
        }
    )
    assert (read.trace_store_traces, read.trace_store_age_seconds) == (120, 90.0)
    settings = settings_for(
        tmp_path, trace_store_traces=120, trace_store_age_seconds=90.0, trace_store_spans=4000
    )
    defaults = (tracing.STORE.max_traces, tracing.STORE.max_age_seconds, tracing.STORE.max_spans)
    try:
        async with running_marketplace(settings, serve=False):
            store = tracing.STORE
            assert (store.max_traces, store.max_age_seconds, store.max_spans) == (120, 90, 4000)
    finally:
        tracing.STORE.retain(*defaults)


@pytest.mark.parametrize(
    "variable",
    ["COLONY_TRACE_STORE_TRACES", "COLONY_TRACE_STORE_AGE_SECONDS", "COLONY_TRACE_STORE_SPANS"],
)
def test_a_store_bound_that_is_not_positive_is_refused(variable: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        Settings.from_env({variable: "0"})


async def test_a_requests_trace_is_found_by_its_correlation_id(client, sampled_at) -> None:
    """Whether or not the request raised an event: a plain read is found too, by the id its
    answer carried, and its root is the gateway's span."""
    sampled_at(1.0)
    for correlation in ("read-7", None):
        headers = {"x-correlation-id": correlation} if correlation else {}
        answer = await client.get("/api/v1/listings", params={"q": "teapot"}, headers=headers)
        assert answer.status_code == 200
        given = answer.headers["x-correlation-id"]
        assert correlation is None or given == correlation

        async def found(given: str = given) -> list[Any]:
            return tracing.STORE.search(correlation_id=given)

        [summary] = await eventually(found, within=10)
        assert summary.root_name == "GET /api/v1/listings"
        assert summary.correlation_ids == [given]


async def test_the_events_a_request_raised_are_consumed_under_its_correlation_id(
    client, sampled_at
) -> None:
    sampled_at(1.0)
    seller = await sign_up(client, "seller")
    answer = await client.post(
        "/api/v1/listings",
        json={"title": "Traced kettle", "category": "home-kitchen", "price_minor": 900},
        headers={**seller.headers, "x-correlation-id": "corr-consumed"},
    )
    assert answer.status_code == 201, answer.text

    async def consumed() -> list[StoredSpan]:
        return [
            span
            for summary in tracing.STORE.search(correlation_id="corr-consumed")
            for span in tracing.STORE.trace(summary.trace_id)
            if span.kind == "consumer"
            and span.attributes.get("colony.correlation_id") == "corr-consumed"
        ]

    spans = await eventually(consumed, within=10)
    assert {span.name for span in spans} >= {"catalog.listing.created process"}
