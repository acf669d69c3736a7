"""Colony's own trace store: the spans of the most recent traces, kept in memory, so the
console shows traces with nothing installed.

Every process sends its finished spans here (in one process directly; in the others through
the gateway's ``/internal/spans``, see :mod:`colony.platform.observability.tracing`). The
store keeps whole traces, the newest of them, bounded by their number, their age and their
spans all together (see :class:`TraceStore`): memory stays bounded however busy the
marketplace is and whatever its traces look like. A search reads summaries kept up to date
as spans arrive, never the spans themselves: the console answers at once with the store full.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

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


ORDER_ID = "colony.order_id"
"""The attribute naming the order a span worked on: what the console's search by order reads."""
CORRELATION_ID = "colony.correlation_id"


class TraceStore:
    """The newest traces, whole, within three bounds, each for its own reason:

    - ``max_traces`` (10,000) is how far back the console can look: searches and pages stay
      fast however long the marketplace has run;
    - ``max_age_seconds`` (an hour) lets a quiet marketplace forget: an idle store does not go
      on showing what happened yesterday. A trace's age is counted on this store's clock from
      the last span it received for it, not from the spans' own timestamps, which come from
      other processes' clocks (one running behind would have its traces dropped on arrival)
      and are whatever a sender wrote. Spans are shipped every second, so on machines whose
      clocks agree the two differ by about that;
    - ``max_spans`` (250,000) keeps memory bounded whatever the shape of the traces (a few
      hundred bytes to a kilobyte a span): ten thousand traces of a few spans are cheap, ten
      thousand of a thousand spans are not. ``max_spans_per_trace`` (2,000) keeps one runaway
      trace from pushing out every other: its later spans are not kept.

    The oldest traces (by their first span's arrival) are dropped first, by whichever bound
    is reached; an expired trace is dropped on the next add or read, so none is ever shown.

    A trace's summary is kept up to date as its spans arrive, with indexes from order id and
    correlation id to its traces: a search by either looks the traces up, and the other
    filters walk the summaries, newest first, until ``limit`` are found; no span is read.

    Added to from the event loop (the span shipper, ``/internal/spans``) and read by the
    console; the lock also makes it safe to add from another thread."""

    def __init__(
        self,
        max_traces: int = 10_000,
        max_spans_per_trace: int = 2000,
        *,
        max_age_seconds: float = 3600.0,
        max_spans: int = 250_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_spans_per_trace < 1:
            raise ValueError("a trace store's bounds are positive")
        self.max_spans_per_trace = max_spans_per_trace
        self._clock = clock
        self._traces: OrderedDict[str, _Trace] = OrderedDict()
        """By their first span's arrival, oldest first: the order searches list them in."""
        self._arrivals: OrderedDict[str, _Trace] = OrderedDict()
        """By their last span's arrival, oldest first: the order they expire in."""
        self._by_order: dict[str, set[str]] = {}
        self._by_correlation: dict[str, set[str]] = {}
        self._spans = 0
        self._sequence = 0
        self._lock = threading.Lock()
        self.retain(max_traces, max_age_seconds, max_spans)

    def retain(self, max_traces: int, max_age_seconds: float, max_spans: int) -> None:
        """Change the bounds (from settings, at start); a store already past the new ones is
        brought within them at once, oldest traces first."""
        if min(max_traces, max_spans) < 1 or not max_age_seconds > 0:
            raise ValueError("a trace store's bounds are positive")
        with self._lock:
            self.max_traces = max_traces
            self.max_age_seconds = max_age_seconds
            self.max_spans = max_spans
            self._per_trace = min(self.max_spans_per_trace, max_spans)
            self._expire()
            while self._traces and (len(self._traces) > max_traces or self._spans > max_spans):
                self._drop(next(iter(self._traces.values())))

    @property
    def span_count(self) -> int:
        """The spans held, of every trace."""
        with self._lock:
            self._expire()
            return self._spans

    def add(self, spans: Iterable[StoredSpan]) -> None:
        with self._lock:
            now = self._clock()
            self._expire(now)
            entry: _Trace | None = None
            for span in spans:
                if entry is None or entry.trace_id != span.trace_id:
                    entry = self._arrived(span.trace_id, now)
                if len(entry.spans) >= self._per_trace:
                    continue
                if self._spans >= self.max_spans:
                    self._drop_oldest(but=entry)
                entry.add(span)
                self._spans += 1
                attributes = span.attributes
                if attributes:
                    order_id = attributes.get(ORDER_ID)
                    if order_id is not None and order_id not in entry.order_ids:
                        _index(self._by_order, entry.order_ids, order_id, entry.trace_id)
                    correlation_id = attributes.get(CORRELATION_ID)
                    if correlation_id is not None and correlation_id not in entry.correlation_ids:
                        _index(
                            self._by_correlation,
                            entry.correlation_ids,
                            correlation_id,
                            entry.trace_id,
                        )

    def trace(self, trace_id: str) -> list[StoredSpan]:
        """Every span of one trace, earliest first (empty if the store has none)."""
        with self._lock:
            self._expire()
            entry = self._traces.get(trace_id)
            spans = list(entry.spans) if entry is not None else []
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
        found: list[TraceSummary] = []
        if limit < 1:
            return found
        min_nanos = None if min_duration_ms is None else min_duration_ms * 1e6
        with self._lock:
            self._expire()
            candidates: Iterable[_Trace]
            if order_id is not None or correlation_id is not None:
                candidates = self._indexed(order_id, correlation_id)
            else:
                candidates = reversed(self._traces.values())
            for entry in candidates:
                if service is not None and service not in entry.services:
                    continue
                if error is not None and entry.error != error:
                    continue
                if min_nanos is not None and entry.end - entry.start < min_nanos:
                    continue
                found.append(entry.summary())
                if len(found) >= limit:
                    break
        return found

    def __len__(self) -> int:
        with self._lock:
            self._expire()
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
            self._expire()
            for entry in reversed(self._traces.values()):
                if entry.start < oldest_start:
                    break
                found.extend(span for span in entry.spans if span.end_unix_nano >= since_unix_nano)
                if len(found) >= max_spans:
                    break
        return found[:max_spans]

    # --- keeping the bounds and the indexes (under the lock) ---------------------------------

    def _arrived(self, trace_id: str, now: float) -> _Trace:
        """The trace a span arrived for, opened if it is new, and young again."""
        entry = self._traces.get(trace_id)
        if entry is None:
            self._sequence += 1
            entry = _Trace(trace_id, self._sequence, now)
            self._traces[trace_id] = entry
            self._arrivals[trace_id] = entry
            while len(self._traces) > self.max_traces:
                self._drop(next(iter(self._traces.values())))
        elif entry.seen != now:
            entry.seen = now
            self._arrivals.move_to_end(trace_id)
        return entry

    def _expire(self, now: float | None = None) -> None:
        """Drop the traces that received no span for ``max_age_seconds``: the oldest arrivals
        first, stopping at the first one still young (usually at once)."""
        cutoff = (self._clock() if now is None else now) - self.max_age_seconds
        arrivals = self._arrivals
        while arrivals:
            oldest = next(iter(arrivals.values()))
            if oldest.seen >= cutoff:
                return
            self._drop(oldest)

    def _drop_oldest(self, but: _Trace) -> None:
        """Drop the oldest trace other than ``but`` (the one being added to, which alone is
        never over the bound: at most ``max_spans`` spans are kept of one trace)."""
        for entry in self._traces.values():
            if entry is not but:
                self._drop(entry)
                return

    def _drop(self, entry: _Trace) -> None:
        del self._traces[entry.trace_id]
        del self._arrivals[entry.trace_id]
        self._spans -= len(entry.spans)
        _unindex(self._by_order, entry.order_ids, entry.trace_id)
        _unindex(self._by_correlation, entry.correlation_ids, entry.trace_id)

    def _indexed(self, order_id: str | None, correlation_id: str | None) -> list[_Trace]:
        """The traces of an order and/or a correlation id, newest first."""
        ids: set[str] | None = None
        for index, key in ((self._by_order, order_id), (self._by_correlation, correlation_id)):
            if key is not None:
                found = index.get(key, set())
                ids = found if ids is None else ids & found
        entries = [self._traces[trace_id] for trace_id in ids or ()]
        return sorted(entries, key=lambda entry: entry.sequence, reverse=True)


class _Trace:
    """One stored trace: its spans, as they arrived, and what its summary says, kept up to
    date span by span (the summary itself is written out only for a trace a search lists)."""

    __slots__ = (
        "correlation_ids",
        "earliest",
        "end",
        "error",
        "order_ids",
        "processes",
        "root",
        "seen",
        "sequence",
        "services",
        "spans",
        "start",
        "trace_id",
    )

    def __init__(self, trace_id: str, sequence: int, seen: float) -> None:
        self.trace_id = trace_id
        self.sequence = sequence
        """Its place in the order traces arrived in: searches list the highest first."""
        self.seen = seen
        """The store's clock when its last span arrived."""
        self.spans: list[StoredSpan] = []
        self.root: StoredSpan | None = None
        """The earliest span without a parent, once one is here."""
        self.earliest: StoredSpan | None = None
        self.services: set[str] = set()
        self.processes: set[str] = set()
        self.start = 0
        self.end = 0
        self.error = False
        self.order_ids: set[str] = set()
        self.correlation_ids: set[str] = set()

    def add(self, span: StoredSpan) -> None:
        self.spans.append(span)
        start = span.start_unix_nano
        if self.earliest is None:
            self.earliest = span
            self.start, self.end = start, span.end_unix_nano
        else:
            if start < self.start:
                self.start = start
                self.earliest = span
            if span.end_unix_nano > self.end:
                self.end = span.end_unix_nano
        if span.parent_span_id is None and (self.root is None or start < self.root.start_unix_nano):
            self.root = span
        self.services.add(span.service)
        self.processes.add(span.process)
        if span.status == "error":
            self.error = True

    def summary(self) -> TraceSummary:
        first = self.root or self.earliest
        return TraceSummary(
            trace_id=self.trace_id,
            root_name=first.name if first is not None else "",
            services=sorted(self.services),
            processes=sorted(self.processes),
            span_count=len(self.spans),
            start_unix_nano=self.start,
            duration_ms=(self.end - self.start) / 1e6,
            error=self.error,
            order_ids=sorted(self.order_ids),
            correlation_ids=sorted(self.correlation_ids),
        )


def _index(index: dict[str, set[str]], ids: set[str], value: object, trace_id: str) -> None:
    """Index ``trace_id`` under ``value`` (an attribute's, written as text), once."""
    key = str(value)
    if key not in ids:
        ids.add(key)
        index.setdefault(key, set()).add(trace_id)


def _unindex(index: dict[str, set[str]], keys: set[str], trace_id: str) -> None:
    for key in keys:
        traces = index.get(key)
        if traces is not None:
            traces.discard(trace_id)
            if not traces:
                del index[key]
