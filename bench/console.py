"""The console benchmark: every page of ``/console`` with 10,000 traces in the trace store.

Run by ``make bench`` (or ``.venv/bin/python -m bench --only console``). The marketplace runs
in this process (``running_marketplace(serve=False)``, as the tests run it), an admin logs
into the console through ``httpx.ASGITransport``, and the gateway's trace store is filled as
a busy hour would leave it: 10,000 traces spread over the last 50 minutes, most of them
checkouts of about 40 spans over 8 services (each with its order and correlation ids, some
declined and compensated, a few slow at the payment provider) and the rest 2-span browse
requests. The spans are built directly, as the span shipper hands them to the store.

Then each page is asked for :data:`RUNS` times after one warm-up, and its median and slowest
answer are reported against the bar: every answer within :data:`BAR_MS`. The page is
rendered in full (the transport skips only the socket). Also reported: what adding spans
costs (the shipper adds every span of the marketplace once a second) and how much the
process's resident memory grew with the store full.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import re
import resource
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec

from colony.marketplace import Marketplace, running_marketplace
from colony.platform.config import Settings
from colony.platform.logging import configure_logging
from colony.platform.observability import tracing
from colony.platform.observability.trace_store import (
    CORRELATION_ID,
    ORDER_ID,
    SpanEvent,
    StoredSpan,
    TraceStore,
)
from colony.services.identity.api import IdentityApi, Registration

COMMAND = ".venv/bin/python -m bench --only console"
TRACES = 10_000
CHECKOUT_SHARE = 0.56
ERROR_SHARE = 0.03
SLOW_SHARE = 0.02
SPREAD_SECONDS = 50 * 60
RUNS = 7
BAR_MS = 200.0
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_MS = 1_000_000


def run() -> dict:
    """The benchmark's figures (see :func:`rows` for how they are reported)."""
    print(f"Console with {TRACES:,} traces ({COMMAND})…", flush=True)
    return asyncio.run(_run())


async def _run() -> dict:
    configure_logging("warning")
    with tempfile.TemporaryDirectory(prefix="colony-bench-console-") as tmp:
        settings = Settings(data_dir=Path(tmp), password_hash_cost="fast", log_level="warning")
        async with running_marketplace(settings, serve=False) as market:
            store = tracing.STORE
            filled = fill(store, TRACES, time.time_ns())
            async with _admin(market) as web:
                pages = await _time_pages(web, filled["targets"])
    return {
        "command": COMMAND,
        "traces": len(store),
        "spans": store.span_count,
        "max_traces": store.max_traces,
        "max_spans": store.max_spans,
        "add_us_per_span": filled["add_us_per_span"],
        "rss_growth_mb": filled["rss_growth_mb"],
        "pages": pages,
    }


# --- the traces -----------------------------------------------------------------------------


class _Trace:
    """One trace being written: spans placed one after another from its start."""

    def __init__(self, rng: random.Random, start: int, attributes: dict) -> None:
        self.rng = rng
        self.trace_id = f"{rng.getrandbits(128):032x}"
        self.start = start
        self.attributes = attributes
        self.spans: list[StoredSpan] = []

    def add(
        self,
        name: str,
        kind: str,
        service: str,
        parent: StoredSpan | None,
        at_ms: float,
        took_ms: float,
        status: str = "unset",
        log: str = "",
        **attributes: str | int | float | bool,
    ) -> StoredSpan:
        start = self.start + int(at_ms * _MS)
        events = ()
        if log:
            events = (
                SpanEvent(
                    name="log",
                    time_unix_nano=start + int(took_ms * _MS) // 2,
                    attributes={"level": "error" if status == "error" else "info", "event": log},
                ),
            )
        span = StoredSpan(
            trace_id=self.trace_id,
            span_id=f"{self.rng.getrandbits(64):016x}",
            parent_span_id=parent.span_id if parent is not None else None,
            name=name,
            kind=kind,
            service=service,
            process=f"{service}/{service}-1",
            start_unix_nano=start,
            end_unix_nano=start + int(took_ms * _MS),
            status=status,
            status_message="card declined" if status == "error" else "",
            attributes={**self.attributes, **attributes},
            events=events,
        )
        self.spans.append(span)
        return span

    def call(
        self,
        caller: str,
        callee: str,
        method: str,
        parent: StoredSpan,
        at_ms: float,
        took_ms: float,
        status: str = "unset",
    ) -> StoredSpan:
        """A call between services: the caller's client span, the callee's server span and
        the callee's transaction."""
        name = f"{callee}/{method}"
        client = self.add(name, "client", caller, parent, at_ms, took_ms, status)
        server = self.add(
            name,
            "server",
            callee,
            client,
            at_ms + 0.3,
            took_ms - 0.6,
            status,
            **{"rpc.caller": caller},
        )
        self.add("db transaction", "client", callee, server, at_ms + 0.5, took_ms / 3)
        return server

    def consume(self, topic: str, consumer: str, producer: StoredSpan, at_ms: float) -> None:
        took = self.rng.uniform(1, 6)
        span = self.add(
            f"{topic} process",
            "consumer",
            consumer,
            producer,
            at_ms,
            took,
            **{"messaging.destination.name": topic},
        )
        self.add("db transaction", "client", consumer, span, at_ms + 0.2, took / 2)


CHECKOUT_STEPS = (
    ("reserve_stock", "inventory", "reserve"),
    ("price_cart", "cart", "price"),
    ("authorize_payment", "payments", "authorize"),
    ("create_shipment", "delivery", "create_shipment"),
    ("clear_cart", "cart", "clear"),
)


def checkout(rng: random.Random, start: int, failed: bool, slow: bool) -> list[StoredSpan]:
    """A checkout as the platform records one: the gateway's request, the order's saga with
    a call per step (declined at the payment, then compensated, when ``failed``), the
    order's events and their consumers; 39 to 41 spans over 8 services (29 to 31 when
    declined)."""
    order_id, correlation_id = f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(128):032x}"
    trace = _Trace(rng, start, {ORDER_ID: order_id, CORRELATION_ID: correlation_id})
    provider_ms = rng.uniform(1000, 3000) if slow else rng.uniform(5, 25)
    root = trace.add(
        "POST /api/v1/orders",
        "server",
        "gateway",
        None,
        0,
        0,  # its end is set below, once the saga's steps are placed
        **{"http.request.method": "POST", "http.route": "/api/v1/orders"},
    )
    place = trace.call("gateway", "orders", "place_order", root, 1, 6)
    at = 8.0
    for step, service, method in CHECKOUT_STEPS:
        took = rng.uniform(3, 12) + (provider_ms if service == "payments" else 0)
        declined = failed and service == "payments"
        saga = trace.add(
            f"saga checkout {step}",
            "internal",
            "orders",
            place,
            at,
            took + 1,
            "error" if declined else "unset",
            log=f"checkout {step} {'failed' if declined else 'done'}",
            **{"colony.saga": "checkout", "colony.saga_id": order_id},
        )
        server = trace.call(
            "orders", service, method, saga, at + 0.5, took, "error" if declined else "ok"
        )
        if service == "payments":
            trace.add(
                "POST /v1/authorizations",
                "client",
                "payments",
                server,
                at + 2,
                provider_ms,
                "error" if declined else "unset",
            )
            trace.add(
                "POST /v1/authorizations",
                "server",
                "payment-provider",
                trace.spans[-1],
                at + 2.2,
                provider_ms - 0.4,
                "error" if declined else "ok",
                log="card declined" if declined else "",
            )
        trace.add("db transaction", "client", "orders", saga, at + took, 0.8)  # its checkpoint
        at += took + 2
        if declined:
            compensation = trace.add(
                "saga checkout compensate reserve_stock",
                "internal",
                "orders",
                place,
                at,
                6,
                **{"colony.saga": "checkout", "colony.saga_id": order_id},
            )
            trace.call("orders", "inventory", "release", compensation, at + 0.5, 5)
            at += 8
            break
    topic = "orders.order.cancelled" if failed else "orders.order.completed"
    published = trace.add(f"{topic} publish", "producer", "orders", place, at, 1)
    trace.consume(topic, "notifications", published, at + rng.uniform(2, 20))
    if not failed:
        trace.consume(topic, "delivery", published, at + rng.uniform(2, 20))
        trace.consume(topic, "inventory", published, at + rng.uniform(2, 20))
    for _ in range(rng.randint(1, 3)):
        trace.add("db transaction", "client", "orders", place, rng.uniform(1, at), 0.5)
    trace.spans[0] = _ending(root, at + 1, 402 if failed else 201)
    return trace.spans


def browse(rng: random.Random, start: int) -> list[StoredSpan]:
    trace = _Trace(rng, start, {CORRELATION_ID: f"{rng.getrandbits(128):032x}"})
    took = rng.uniform(1, 8)
    root = trace.add(
        "GET /api/v1/listings",
        "server",
        "gateway",
        None,
        0,
        took,
        **{"http.request.method": "GET", "http.route": "/api/v1/listings"},
    )
    trace.add(
        "catalog/search", "internal", "catalog", root, 0.2, took - 0.4, **{"rpc.caller": "gateway"}
    )
    return trace.spans


def _ending(root: StoredSpan, took_ms: float, status_code: int) -> StoredSpan:
    return msgspec.structs.replace(
        root,
        end_unix_nano=root.start_unix_nano + int(took_ms * _MS),
        attributes={**root.attributes, "http.response.status_code": status_code},
    )


def fill(store: TraceStore, count: int, now: int) -> dict:
    """``count`` traces over the last :data:`SPREAD_SECONDS`, added as the shipper adds them
    (a second's worth at a time): what adding cost, how much memory the store took, and
    what to search for (the checkout in the middle, and one 45 minutes old)."""
    gc.collect()
    before = _rss_mb()
    rng = random.Random(7)
    gap = SPREAD_SECONDS * 1e9 / count
    first = now - int(SPREAD_SECONDS * 1e9)
    traces, checkouts = [], []
    for n in range(count):
        start = first + int(n * gap)
        if rng.random() < CHECKOUT_SHARE:
            failed, slow = rng.random() < ERROR_SHARE, rng.random() < SLOW_SHARE
            traces.append(checkout(rng, start, failed, slow))
            checkouts.append(traces[-1][0])
        else:
            traces.append(browse(rng, start))
    added, took = 0, 0.0
    per_second = max(1, round(count / SPREAD_SECONDS))
    for n in range(0, count, per_second):
        batch = [span for spans in traces[n : n + per_second] for span in spans]
        began = time.perf_counter()
        store.add(batch)
        took += time.perf_counter() - began
        added += len(batch)
    middle, old = checkouts[len(checkouts) // 2], checkouts[len(checkouts) // 10]
    targets = {
        "trace_id": middle.trace_id,
        "order_id": str(middle.attributes[ORDER_ID]),
        "old_trace_id": old.trace_id,
        "correlation_id": str(old.attributes[CORRELATION_ID]),
    }
    del traces, checkouts, batch, middle, old  # the store's own now
    gc.collect()
    return {
        "add_us_per_span": round(took / added * 1e6, 2),
        "rss_growth_mb": round(_rss_mb() - before, 1),
        "targets": targets,
    }


def _rss_mb() -> float:
    """This process's resident memory now (Linux), else its peak."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the pages ------------------------------------------------------------------------------


def pages(targets: dict) -> list[tuple[str, str, str]]:
    """Each page timed: what it is, its address, and a text the answer must hold (so that
    what is timed is the page asked for)."""
    traces, wanted = "/console/traces", targets["trace_id"]
    return [
        ("service map (RED from the last 5 min)", "/console", "orders calls payments"),
        ("traces: the newest 50", f"{traces}?limit=50", "50 shown of 10000"),
        ("traces: the newest 200", f"{traces}?limit=200", "200 shown of 10000"),
        ("traces by order id", f"{traces}?order_id={targets['order_id']}", wanted),
        (
            "traces by correlation id",
            f"{traces}?correlation_id={targets['correlation_id']}",
            targets["old_trace_id"],
        ),
        ("traces by service (payments)", f"{traces}?service=payments", "50 shown"),
        ("traces: errors only", f"{traces}?status=error", "50 shown"),
        ("traces: min duration 1,000 ms", f"{traces}?min_ms=1000", "50 shown"),
        ("traces: a filter nothing matches", f"{traces}?min_ms=3600000", "No stored trace"),
        ("one trace's waterfall (checkout)", f"{traces}/{wanted}", "saga checkout"),
        ("sagas", "/console/sagas", ""),
        ("dead letters", "/console/dead-letters", ""),
        ("outboxes and consumers", "/console/outboxes", ""),
        ("faults", "/console/faults", ""),
    ]


async def _time_pages(web: httpx.AsyncClient, targets: dict) -> dict:
    timed: dict[str, dict] = {}
    for label, path, expected in pages(targets):
        url = path + ("&" if "?" in path else "?") + "live=off"
        times = []
        for attempt in range(RUNS + 1):
            began = time.perf_counter()
            answer = await web.get(url)
            took = (time.perf_counter() - began) * 1000
            if answer.status_code != 200 or expected not in answer.text:
                raise RuntimeError(f"{url}: {answer.status_code}, not {expected!r} in the page")
            if attempt:  # the first one warms the templates up
                times.append(took)
        timed[label] = {
            "path": path,
            "median_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1),
            "bytes": len(answer.content),
        }
        print(f"  {label}: {timed[label]}", flush=True)
    return timed


@contextlib.asynccontextmanager
async def _admin(market: Marketplace) -> AsyncIterator[httpx.AsyncClient]:
    """A browser logged into the console as an admin, provisioned as operators do."""
    email = f"bench-admin-{random.getrandbits(32):08x}@example.com"
    await market.runtime.client(IdentityApi, caller="seed").provision(
        Registration(email=email, password=PASSWORD, name="Bench"), "admin"
    )
    transport = httpx.ASGITransport(app=market.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as web:
        page = await web.get("/login")
        token = _CSRF.search(page.text)
        if token is None:
            raise RuntimeError("the login page has no CSRF token")
        answer = await web.post(
            "/login", data={"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
        )
        if answer.status_code != 303:
            raise RuntimeError(f"logging in: {answer.status_code} {answer.text[:300]}")
        yield web


# --- the report -----------------------------------------------------------------------------


def rows(results: dict) -> list:
    """The report's rows: the store, then each page against the bar."""
    found = [
        (
            f"console: store of {results['traces']:,} traces",
            f"{results['spans']:,} spans (bounds {results['max_traces']:,} traces,"
            f" {results['max_spans']:,} spans), RSS +{results['rss_growth_mb']:,.0f} MB",
            f"{results['traces']:,} traces stored",
            results["traces"] == TRACES,
        ),
        (
            "  adding spans to it",
            f"{results['add_us_per_span']} µs a span",
            "(for reference)",
            True,
        ),
    ]
    for label, page in results["pages"].items():
        found.append(
            (
                f"  {label}",
                f"median {page['median_ms']} ms, max {page['max_ms']} ms",
                f"max < {BAR_MS:.0f} ms",
                page["max_ms"] < BAR_MS,
            )
        )
    return found
