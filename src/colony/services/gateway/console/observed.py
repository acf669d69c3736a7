"""What the trace store shows the services doing: rate, errors and duration (RED) per service,
and the calls and deliveries actually made, over the last few minutes.

A service's work is what was handed to it: the calls it served (a ``server`` span over HTTP,
an ``internal`` one carrying ``rpc.caller`` in-process), the events it consumed (``consumer``
spans) and, for the gateway, the requests it answered. The figures come from sampled traces:
at a sampling ratio below 1 the rates are that share of the real ones (the errors and
compensations, kept whatever the ratio, weigh more than they should); Prometheus's
``/metrics`` has the exact counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from colony.platform.observability.trace_store import StoredSpan, TraceStore

WINDOW_SECONDS = 300.0
CALLER = "rpc.caller"
TOPIC = "messaging.destination.name"


@dataclass
class Red:
    """Rate, errors and duration of one service's work in the window."""

    window_seconds: float
    count: int = 0
    errors: int = 0
    durations_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def rate(self) -> float:
        return self.count / self.window_seconds

    @property
    def error_ratio(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def p50_ms(self) -> float | None:
        return _percentile(self.durations_ms, 0.50)

    @property
    def p95_ms(self) -> float | None:
        return _percentile(self.durations_ms, 0.95)


@dataclass
class Flow:
    """Calls on one edge, or deliveries of one topic to one consumer, seen in the window."""

    count: int = 0
    errors: int = 0


@dataclass
class Observed:
    window_seconds: float
    red: dict[str, Red]
    calls: dict[tuple[str, str], Flow]
    """(caller, callee) → the calls seen."""
    deliveries: dict[tuple[str, str], Flow]
    """(topic, consumer) → the events processed."""
    spans: int


MAX_SPANS = 40_000
"""The most spans one look reads (the newest): a busy store's figures are then over the
shorter time those cover, which keeps the map's answer well under 200 ms."""


def observe(
    store: TraceStore, window_seconds: float = WINDOW_SECONDS, max_spans: int = MAX_SPANS
) -> Observed:
    now = time.time_ns()
    spans = store.recent(now - int(window_seconds * 1e9), max_spans)
    if len(spans) >= max_spans:
        oldest = min(span.end_unix_nano for span in spans)
        window_seconds = max(1.0, (now - oldest) / 1e9)
    return summarize(spans, window_seconds)


def summarize(spans: Iterable[StoredSpan], window_seconds: float) -> Observed:
    red: dict[str, Red] = {}
    calls: dict[tuple[str, str], Flow] = {}
    deliveries: dict[tuple[str, str], Flow] = {}
    count = 0
    for span in spans:
        count += 1
        caller = span.attributes.get(CALLER)
        handed_over = span.kind in ("server", "consumer") or (
            span.kind == "internal" and isinstance(caller, str)
        )
        if not handed_over:
            continue
        error = span.status == "error"
        figures = red.get(span.service)
        if figures is None:
            figures = red[span.service] = Red(window_seconds)
        figures.count += 1
        figures.errors += error
        figures.durations_ms.append(span.duration_ms)
        if isinstance(caller, str):
            flow = calls.setdefault((caller, span.service), Flow())
            flow.count += 1
            flow.errors += error
        topic = span.attributes.get(TOPIC)
        if span.kind == "consumer" and isinstance(topic, str):
            flow = deliveries.setdefault((topic, span.service), Flow())
            flow.count += 1
            flow.errors += error
    return Observed(window_seconds, red, calls, deliveries, count)


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
