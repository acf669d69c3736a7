"""Colony's own trace store: the spans of the most recent traces, kept in memory, so the
console shows traces with nothing installed.

Every process sends its finished spans here (in one process directly; in the others through
the gateway's ``/internal/spans``, see :mod:`colony.platform.observability.tracing`). The
store keeps whole traces, the newest ``max_traces`` of them, and drops the oldest trace when
a new one would exceed the bound: memory stays bounded however busy the marketplace is.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

import msgspec


class SpanEvent(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    time_unix_nano: int
    attributes: dict[str, str | int | float | bool] = {}


class SpanLink(msgspec.Struct, frozen=True, kw_only=True):
    trace_id: str
    span_id: str


class StoredSpan(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One finished span, as the console shows it. Ids are lowercase hex (32 and 16 digits),
    as in W3C trace context and in every log line's ``trace_id`` / ``span_id``.

    Never tracked by the garbage collector (``gc=False``: it holds no cycle): the store keeps
    tens of thousands, and a collection would otherwise walk every one."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    name: str
    kind: str
    """``server``, ``client``, ``producer``, ``consumer`` or ``internal``."""
    service: str
    """The service (or ``gateway``, ``payment-provider``) whose code the span timed."""
    process: str
    """The process that recorded it (its service name and instance)."""
    start_unix_nano: int
    end_unix_nano: int
    status: str = "unset"
    """``ok``, ``error`` or ``unset``."""
    status_message: str = ""
    attributes: dict[str, str | int | float | bool] = {}
    events: tuple[SpanEvent, ...] = ()
    links: tuple[SpanLink, ...] = ()

    @property
    def duration_ms(self) -> float:
        return (self.end_unix_nano - self.start_unix_nano) / 1e6


class TraceSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One trace, as a search lists it."""

    trace_id: str
    root_name: str
    """The name of its root span (or of its earliest span, if the root is not here yet)."""
    services: list[str]
    processes: list[str]
    span_count: int
    start_unix_nano: int
    duration_ms: float
    error: bool
    order_ids: list[str]
    correlation_ids: list[str]


class TraceStore:
    """The newest ``max_traces`` traces, whole. Safe to add to from the exporter's thread
    while the console reads from the event loop."""

    def __init__(self, max_traces: int = 2000, max_spans_per_trace: int = 2000) -> None:
        self.max_traces = max_traces
        self.max_spans_per_trace = max_spans_per_trace
        self._traces: OrderedDict[str, list[StoredSpan]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, spans: Iterable[StoredSpan]) -> None:
        with self._lock:
            for span in spans:
                trace = self._traces.get(span.trace_id)
                if trace is None:
                    trace = self._traces[span.trace_id] = []
                    while len(self._traces) > self.max_traces:
                        self._traces.popitem(last=False)
                if len(trace) < self.max_spans_per_trace:
                    trace.append(span)

    def trace(self, trace_id: str) -> list[StoredSpan]:
        """Every span of one trace, earliest first (empty if the store has none)."""
        with self._lock:
            spans = list(self._traces.get(trace_id, ()))
        return sorted(spans, key=lambda span: span.start_unix_nano)

    def search(
        self,
        *,
        order_id: str | None = None,
        correlation_id: str | None = None,
        service: str | None = None,
        error: bool | None = None,
        min_duration_ms: float | None = None,
        limit: int = 50,
    ) -> list[TraceSummary]:
        """The newest traces matching every criterion given, newest first."""
        with self._lock:
            candidates = [(trace_id, list(spans)) for trace_id, spans in self._traces.items()]
        found: list[TraceSummary] = []
        for trace_id, spans in reversed(candidates):
            summary = _summary(trace_id, spans)
            if order_id is not None and order_id not in summary.order_ids:
                continue
            if correlation_id is not None and correlation_id not in summary.correlation_ids:
                continue
            if service is not None and service not in summary.services:
                continue
            if error is not None and summary.error != error:
                continue
            if min_duration_ms is not None and summary.duration_ms < min_duration_ms:
                continue
            found.append(summary)
            if len(found) >= limit:
                break
        return found

    def __len__(self) -> int:
        with self._lock:
            return len(self._traces)

    def recent(
        self, since_unix_nano: int, max_spans: int = 200_000, horizon_seconds: float = 900.0
    ) -> list[StoredSpan]:
        """The spans that ended at ``since_unix_nano`` or later, newest traces first, at most
        ``max_spans``: what the console's figures per service are computed from. Traces are
        kept in the order their first span arrived, so the walk stops at the first trace
        that began ``horizon_seconds`` before ``since_unix_nano``: a span added later to a
        trace older than that is not counted."""
        oldest_start = since_unix_nano - int(horizon_seconds * 1e9)
        found: list[StoredSpan] = []
        with self._lock:
            for spans in reversed(self._traces.values()):
                if spans and spans[0].start_unix_nano < oldest_start:
                    break
                found.extend(span for span in spans if span.end_unix_nano >= since_unix_nano)
                if len(found) >= max_spans:
                    break
        return found[:max_spans]


ORDER_ID = "colony.order_id"
"""The attribute naming the order a span worked on: what the console's search by order reads."""
CORRELATION_ID = "colony.correlation_id"


def _summary(trace_id: str, spans: list[StoredSpan]) -> TraceSummary:
    ids = {span.span_id for span in spans}
    roots = [
        span for span in spans if span.parent_span_id is None or span.parent_span_id not in ids
    ]
    first = min(roots or spans, key=lambda span: span.start_unix_nano)
    start = min(span.start_unix_nano for span in spans)
    end = max(span.end_unix_nano for span in spans)
    return TraceSummary(
        trace_id=trace_id,
        root_name=first.name,
        services=sorted({span.service for span in spans}),
        processes=sorted({span.process for span in spans}),
        span_count=len(spans),
        start_unix_nano=start,
        duration_ms=(end - start) / 1e6,
        error=any(span.status == "error" for span in spans),
        order_ids=sorted({str(s.attributes[ORDER_ID]) for s in spans if ORDER_ID in s.attributes}),
        correlation_ids=sorted(
            {str(s.attributes[CORRELATION_ID]) for s in spans if CORRELATION_ID in s.attributes}
        ),
    )
