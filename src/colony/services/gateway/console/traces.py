"""Traces: a search of the trace store (by order, correlation id, service, status and
duration), and one trace as a waterfall: each span a bar placed by its start and length,
indented under its parent, coloured by its service, with its attributes, its events and the
log lines written inside it (span events named ``log``, with their ``level`` and ``event``).

A search with a malformed filter is answered with the form again, saying what is wrong (422);
a trace the store does not hold (never recorded, pushed out by newer ones, or expired) is a
404 page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import NotFound
from colony.platform.observability.trace_store import (
    CORRELATION_ID,
    ORDER_ID,
    SpanEvent,
    StoredSpan,
    TraceSummary,
)
from colony.platform.security import Actor
from colony.services.gateway.console.site import Console
from colony.services.gateway.storefront.session import redirect

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_VISIBLE = re.compile(r"^[\x21-\x7e]{1,200}$")
"""An order or correlation id: visible ASCII, no spaces, at most 200 characters."""
_SERVICE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
STATUSES = {"": None, "ok": False, "error": True}
LIMITS = (20, 50, 100, 200)
MAX_MIN_MS = 3_600_000.0
MAX_DEPTH = 15
"""Deeper spans are drawn at this indentation (the bars still say where they belong)."""
BAR_UNITS = 1000.0


@dataclass(frozen=True)
class Query:
    order_id: str = ""
    correlation_id: str = ""
    service: str = ""
    status: str = ""
    min_ms: str = ""
    limit: int = 50

    @property
    def active(self) -> bool:
        return any((self.order_id, self.correlation_id, self.service, self.status, self.min_ms))


def read_query(params: Mapping[str, str]) -> tuple[Query, dict[str, str]]:
    """The search's filters as typed, and what is wrong with them, by field."""
    errors: dict[str, str] = {}
    values = {name: params.get(name, "").strip() for name in Query.__dataclass_fields__}
    for name, label in (("order_id", "Order id"), ("correlation_id", "Correlation id")):
        if values[name] and not _VISIBLE.match(values[name]):
            errors[name] = f"{label} is at most 200 letters, digits or punctuation, no spaces."
    if values["service"] and not _SERVICE.match(values["service"]):
        errors["service"] = "Service is a service's name, like orders."
    if values["status"] not in STATUSES:
        errors["status"] = "Status is ok or error."
    if values["min_ms"]:
        try:
            minimum = float(values["min_ms"])
        except ValueError:
            minimum = -1.0
        if not 0 <= minimum <= MAX_MIN_MS:
            errors["min_ms"] = (
                f"Minimum duration is a number of milliseconds, 0 to {MAX_MIN_MS:,.0f}."
            )
    limit = 50
    if values["limit"]:
        try:
            limit = int(values["limit"])
        except ValueError:
            limit = -1
        if limit not in LIMITS:
            errors["limit"] = f"Show is one of {', '.join(map(str, LIMITS))}."
            limit = 50
    query = Query(
        order_id=values["order_id"],
        correlation_id=values["correlation_id"],
        service=values["service"],
        status=values["status"],
        min_ms=values["min_ms"],
        limit=limit,
    )
    return query, errors


def search_url(**filters: str) -> str:
    return "/console/traces?" + urlencode({k: v for k, v in filters.items() if v})


def trace_url(trace_id: str) -> str:
    return "/console/traces/" + quote(trace_id, safe="")


# --- the waterfall ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRow:
    name: str
    at_ms: float
    """From the trace's start."""
    level: str
    text: str
    attributes: dict[str, str | int | float | bool]


@dataclass
class Row:
    span: StoredSpan
    depth: int
    offset: float
    width: float
    orphan: bool
    """Its parent is not in the store (not sampled, not arrived, or in another process
    that has not reported yet)."""
    start_ms: float
    events: list[EventRow] = field(default_factory=list)

    @property
    def indent(self) -> int:
        return min(self.depth, MAX_DEPTH)


@dataclass
class Waterfall:
    trace_id: str
    rows: list[Row]
    start_unix_nano: int
    duration_ms: float
    services: list[str]
    processes: list[str]
    errors: int
    order_ids: list[str]
    correlation_ids: list[str]


def waterfall(trace_id: str, spans: list[StoredSpan]) -> Waterfall:
    """The spans of one trace in the order they are read: each after its parent, siblings by
    start; a span whose parent is missing starts a tree of its own."""
    start = min(span.start_unix_nano for span in spans)
    end = max(span.end_unix_nano for span in spans)
    total = max(end - start, 1)
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[StoredSpan]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        if parent == span.span_id:
            parent = None
        children.setdefault(parent, []).append(span)
    for group in children.values():
        group.sort(key=lambda span: (span.start_unix_nano, span.name))
    rows: list[Row] = []
    seen: set[str] = set()
    pending = [(span, 0) for span in reversed(children.get(None, []))]
    while pending:
        span, depth = pending.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        offset = (span.start_unix_nano - start) / total * BAR_UNITS
        width = min(
            max((span.end_unix_nano - span.start_unix_nano) / total * BAR_UNITS, 2.0),
            BAR_UNITS - min(offset, BAR_UNITS - 2.0),
        )
        rows.append(
            Row(
                span=span,
                depth=depth,
                offset=min(offset, BAR_UNITS - 2.0),
                width=width,
                orphan=span.parent_span_id is not None and span.parent_span_id not in ids,
                start_ms=(span.start_unix_nano - start) / 1e6,
                events=[_event(event, start) for event in span.events],
            )
        )
        pending.extend((child, depth + 1) for child in reversed(children.get(span.span_id, [])))
    # Spans in a cycle of parents (never written by the SDK, but the store takes what it is
    # sent) are shown at the end rather than lost.
    for span in spans:
        if span.span_id not in seen:
            seen.add(span.span_id)
            offset = (span.start_unix_nano - start) / total * BAR_UNITS
            rows.append(Row(span, 0, min(offset, BAR_UNITS - 2.0), 2.0, True, offset))
    return Waterfall(
        trace_id=trace_id,
        rows=rows,
        start_unix_nano=start,
        duration_ms=total / 1e6,
        services=sorted({span.service for span in spans}),
        processes=sorted({span.process for span in spans}),
        errors=sum(1 for span in spans if span.status == "error"),
        order_ids=_values(spans, ORDER_ID),
        correlation_ids=_values(spans, CORRELATION_ID),
    )


def _event(event: SpanEvent, start: int) -> EventRow:
    attributes = dict(event.attributes)
    level, text = "", ""
    if event.name == "log":
        level = str(attributes.pop("level", ""))
        text = str(attributes.pop("event", ""))
    return EventRow(event.name, (event.time_unix_nano - start) / 1e6, level, text, attributes)


def _values(spans: list[StoredSpan], attribute: str) -> list[str]:
    return sorted({str(s.attributes[attribute]) for s in spans if attribute in s.attributes})


# --- the pages -------------------------------------------------------------------------------


def routes(console: Console) -> list[Route]:
    store = console.backends.traces

    @console.page
    async def search(request: Request, actor: Actor) -> Response:
        wanted = request.query_params.get("trace_id", "").strip().lower()
        if wanted:
            if TRACE_ID.match(wanted):
                return redirect(trace_url(wanted))
            return await _search_page(
                request, Query(), {"trace_id": "A trace id is 32 hexadecimal digits."}, [], 422
            )
        query, errors = read_query(request.query_params)
        if errors:
            return await _search_page(request, query, errors, [], 422)
        found = store.search(
            order_id=query.order_id or None,
            correlation_id=query.correlation_id or None,
            service=query.service or None,
            error=STATUSES[query.status],
            min_duration_ms=float(query.min_ms) if query.min_ms else None,
            limit=query.limit,
        )
        return await _search_page(request, query, {}, found)

    async def _search_page(
        request: Request,
        query: Query,
        errors: dict[str, str],
        found: list[TraceSummary],
        status: int = 200,
    ) -> Response:
        return await console.render(
            request,
            "console/traces.html",
            {
                "query": query,
                "errors": errors,
                "found": found,
                "stored": len(store),
                "limits": LIMITS,
                "services": [*sorted(console.catalogue.nodes)],
                "trace_url": trace_url,
                "search_url": search_url,
                "trace_id_typed": request.query_params.get("trace_id", ""),
            },
            status=status,
            live=None if errors else 5,
            reload=False,
        )

    @console.page
    async def one(request: Request, actor: Actor) -> Response:
        trace_id = request.path_params["trace_id"].lower()
        spans = store.trace(trace_id) if TRACE_ID.match(trace_id) else []
        if not spans:
            raise NotFound(
                "The trace store holds no trace with that id: it was not sampled, or it is no"
                f" longer kept (the store keeps the newest {store.max_traces:,} traces, each"
                f" for {store.max_age_seconds / 60:,.0f} minutes after its last span arrived)."
            )
        return await console.render(
            request,
            "console/trace.html",
            {
                "trace": waterfall(trace_id, spans),
                "trace_url": trace_url,
                "search_url": search_url,
                "trace_id_pattern": TRACE_ID,
            },
        )

    return [
        Route("/console/traces", search, methods=["GET"]),
        Route("/console/traces/{trace_id}", one, methods=["GET"]),
    ]
