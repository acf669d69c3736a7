"""The trace store: bounded by traces, by age (on its own clock) and by spans, each trace's
summary kept up to date as its spans arrive, and searches that look up an order or a
correlation id rather than read every trace."""

from __future__ import annotations

import itertools

import pytest

from colony.platform.observability.trace_store import (
    CORRELATION_ID,
    ORDER_ID,
    StoredSpan,
    TraceStore,
)
from fake_clock import FakeClock

BASE = 1_750_000_000 * 10**9
_ids = itertools.count(1)


def span(
    trace_id: str,
    *,
    parent: str | None = None,
    name: str = "work",
    service: str = "orders",
    start_ms: float = 0,
    duration_ms: float = 1,
    status: str = "unset",
    **attributes: str | int | float | bool,
) -> StoredSpan:
    start = BASE + int(start_ms * 1e6)
    return StoredSpan(
        trace_id=trace_id,
        span_id=f"{next(_ids):016x}",
        parent_span_id=parent,
        name=name,
        kind="internal",
        service=service,
        process=f"{service}-1",
        start_unix_nano=start,
        end_unix_nano=start + int(duration_ms * 1e6),
        status=status,
        attributes=dict(attributes),
    )


def trace_id(n: int) -> str:
    return f"{n:032x}"


def a_trace(n: int, spans: int = 1, **attributes: str | int | float | bool) -> list[StoredSpan]:
    root = span(trace_id(n), name=f"root {n}", **attributes)
    children = [
        span(trace_id(n), parent=root.span_id, start_ms=i, **attributes) for i in range(1, spans)
    ]
    return [root, *children]


def found(store: TraceStore, **criteria: object) -> list[str]:
    return [summary.trace_id for summary in store.search(**criteria)]  # type: ignore[arg-type]


# --- the bounds ------------------------------------------------------------------------------


def test_the_newest_traces_are_kept_up_to_max_traces() -> None:
    store = TraceStore(max_traces=3)
    for n in range(1, 6):
        store.add(a_trace(n, spans=2))
    assert len(store) == 3
    assert found(store) == [trace_id(5), trace_id(4), trace_id(3)]
    assert store.trace(trace_id(2)) == [] and store.trace(trace_id(1)) == []
    assert store.span_count == 6
    # A span arriving for a kept trace does not make it newer, nor push another out.
    store.add([span(trace_id(3), start_ms=5)])
    assert found(store) == [trace_id(5), trace_id(4), trace_id(3)]


def test_a_trace_expires_max_age_after_its_last_span_arrived() -> None:
    clock = FakeClock()
    store = TraceStore(max_age_seconds=60, clock=clock)
    store.add(a_trace(1))
    clock.advance(30)
    store.add(a_trace(2))
    clock.advance(29)
    store.add([span(trace_id(1), start_ms=1)])  # a late span: trace 1 is young again
    clock.advance(40)  # trace 2 last heard of 69 s ago, trace 1 40 s ago
    # Nothing was added since: reads alone forget what expired.
    assert found(store) == [trace_id(1)]
    assert len(store) == 1 and store.trace(trace_id(2)) == []
    assert len(store.trace(trace_id(1))) == 2
    clock.advance(20.5)
    assert len(store) == 0 and store.span_count == 0 and found(store) == []
    assert store.recent(0) == []


def test_age_is_counted_on_the_stores_clock_not_the_spans_timestamps() -> None:
    """A span stamped long ago (a process whose clock is behind) is kept as long as any."""
    clock = FakeClock()
    store = TraceStore(max_age_seconds=60, clock=clock)
    stamped_in_1970 = StoredSpan(
        trace_id=trace_id(1),
        span_id="00f067aa0ba902b7",
        name="payments/capture",
        kind="server",
        service="payments",
        process="payments-1",
        start_unix_nano=1,
        end_unix_nano=2,
    )
    store.add([stamped_in_1970])
    clock.advance(59)
    assert store.trace(trace_id(1)) == [stamped_in_1970]
    clock.advance(2)
    assert store.trace(trace_id(1)) == []


def test_the_spans_of_every_trace_together_stay_under_max_spans() -> None:
    store = TraceStore(max_spans=10)
    for n in range(1, 4):
        store.add(a_trace(n, spans=4))  # 12 spans in all
    assert store.span_count <= 10
    assert found(store) == [trace_id(3), trace_id(2)]  # the oldest went
    assert len(store.trace(trace_id(3))) == 4
    # A trace still growing is never the one dropped for its own spans.
    store.add([span(trace_id(2), start_ms=9) for _ in range(3)])
    assert found(store) == [trace_id(2)]
    assert len(store.trace(trace_id(2))) == 7 and store.span_count == 7


def test_one_trace_keeps_at_most_max_spans_per_trace_and_never_more_than_max_spans() -> None:
    store = TraceStore(max_spans_per_trace=3)
    store.add(a_trace(1, spans=5))
    assert len(store.trace(trace_id(1))) == 3
    (summary,) = store.search()
    assert summary.span_count == 3 and summary.root_name == "root 1"
    small = TraceStore(max_spans=4)
    small.add(a_trace(1, spans=9))
    assert len(small.trace(trace_id(1))) == 4 and small.span_count == 4


def test_retaining_less_drops_the_oldest_at_once_and_holds_from_then_on() -> None:
    clock = FakeClock()
    store = TraceStore(clock=clock)
    for n in range(1, 6):
        store.add(a_trace(n, spans=3))
        clock.advance(10)
    store.retain(max_traces=3, max_age_seconds=35, max_spans=8)
    # Trace 1 arrived 50 s ago (past 35 s); of the rest, 3 traces of 3 spans are 9 > 8.
    assert found(store) == [trace_id(5), trace_id(4)]
    assert store.span_count == 6
    store.add(a_trace(6, spans=3))
    assert found(store) == [trace_id(6), trace_id(5)]
    clock.advance(36)
    assert found(store) == []


@pytest.mark.parametrize(
    "bounds",
    [
        {"max_traces": 0, "max_age_seconds": 1, "max_spans": 1},
        {"max_traces": 1, "max_age_seconds": 0, "max_spans": 1},
        {"max_traces": 1, "max_age_seconds": 1, "max_spans": 0},
    ],
)
def test_retained_bounds_are_positive(bounds: dict[str, float]) -> None:
    store = TraceStore()
    with pytest.raises(ValueError):
        store.retain(**bounds)  # type: ignore[arg-type]
    assert store.max_traces == 10_000


@pytest.mark.parametrize(
    "bounds",
    [{"max_traces": 0}, {"max_spans": 0}, {"max_spans_per_trace": 0}, {"max_age_seconds": 0}],
)
def test_a_bound_is_positive(bounds: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TraceStore(**bounds)  # type: ignore[arg-type]


# --- the indexes ------------------------------------------------------------------------------


def test_a_dropped_trace_leaves_nothing_in_the_indexes() -> None:
    clock = FakeClock()
    store = TraceStore(max_traces=2, max_spans=5, max_age_seconds=60, clock=clock)
    shared = {ORDER_ID: "order-shared"}
    store.add(a_trace(1, **shared, **{CORRELATION_ID: "corr-1"}))
    store.add(a_trace(2, **shared, **{CORRELATION_ID: "corr-2"}))
    store.add(a_trace(3, **{ORDER_ID: "order-3", CORRELATION_ID: "corr-3"}))  # by count
    assert found(store, order_id="order-shared") == [trace_id(2)]
    assert found(store, correlation_id="corr-1") == []
    assert set(store._by_order) == {"order-shared", "order-3"}
    assert set(store._by_correlation) == {"corr-2", "corr-3"}
    store.add(a_trace(4, spans=5, **{ORDER_ID: "order-4"}))  # 2 by count, then 3 by spans
    assert found(store) == [trace_id(4)]
    assert store._by_order == {"order-4": {trace_id(4)}}
    assert store._by_correlation == {}
    clock.advance(61)  # by age
    assert found(store, order_id="order-4") == []
    assert store._by_order == {} and store._by_correlation == {}


def test_many_orders_through_a_small_store_leave_no_index_behind() -> None:
    store = TraceStore(max_traces=10)
    for n in range(1000):
        store.add(a_trace(n, **{ORDER_ID: f"o{n}", CORRELATION_ID: f"c{n}"}))
    assert len(store._by_order) == len(store._by_correlation) == 10
    assert found(store, order_id="o999") == [trace_id(999)]


# --- searching --------------------------------------------------------------------------------


@pytest.fixture
def stocked() -> TraceStore:
    """Ten traces, trace 1 the oldest: odd ones for order A, every third failing, the
    service and the duration growing with the number."""
    store = TraceStore()
    for n in range(1, 11):
        order = "order-A" if n % 2 else f"order-{n}"
        store.add(
            [
                span(trace_id(n), name=f"POST {n}", service="gateway", duration_ms=n * 10),
                span(
                    trace_id(n),
                    service="payments" if n > 5 else "orders",
                    status="error" if n % 3 == 0 else "ok",
                    **{ORDER_ID: order, CORRELATION_ID: f"corr-{n % 4}"},
                ),
            ]
        )
    return store


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"order_id": "order-A"}, [9, 7, 5, 3, 1]),
        ({"order_id": "order-A", "limit": 2}, [9, 7]),
        ({"order_id": "order-4"}, [4]),
        ({"order_id": "order-none"}, []),
        ({"correlation_id": "corr-1"}, [9, 5, 1]),
        ({"correlation_id": "corr-1", "order_id": "order-A"}, [9, 5, 1]),
        ({"correlation_id": "corr-2", "order_id": "order-A"}, []),
        ({"service": "payments"}, [10, 9, 8, 7, 6]),
        ({"service": "payments", "limit": 3}, [10, 9, 8]),
        ({"service": "nobody"}, []),
        ({"error": True}, [9, 6, 3]),
        ({"error": False, "limit": 4}, [10, 8, 7, 5]),
        ({"min_duration_ms": 75}, [10, 9, 8]),
        ({"min_duration_ms": 30, "error": True, "order_id": "order-A"}, [9, 3]),
        ({"service": "orders", "error": True}, [3]),
        ({"limit": 4}, [10, 9, 8, 7]),
        ({"limit": 0}, []),
    ],
)
def test_a_search_finds_the_matching_traces_newest_first(
    stocked: TraceStore, criteria: dict[str, object], expected: list[int]
) -> None:
    assert found(stocked, **criteria) == [trace_id(n) for n in expected]


def test_a_summary_says_what_the_traces_spans_say(stocked: TraceStore) -> None:
    (summary,) = stocked.search(order_id="order-A", limit=1)
    assert summary.trace_id == trace_id(9)
    assert summary.root_name == "POST 9"
    assert summary.services == ["gateway", "payments"]
    assert summary.processes == ["gateway-1", "payments-1"]
    assert summary.span_count == 2
    assert summary.start_unix_nano == BASE
    assert summary.duration_ms == 90.0
    assert summary.error is True
    assert summary.order_ids == ["order-A"] and summary.correlation_ids == ["corr-1"]


def test_a_span_arriving_later_updates_its_traces_summary() -> None:
    store = TraceStore()
    tid = trace_id(1)
    child = span(tid, parent="00000000000000aa", name="orders/place", start_ms=5)
    store.add([child])
    (before,) = store.search()
    assert before.root_name == "orders/place"  # the root is not here yet
    assert found(store, error=True) == [] and found(store, order_id="order-late") == []
    root = StoredSpan(
        trace_id=tid,
        span_id="00000000000000aa",
        name="POST /api/v1/orders",
        kind="server",
        service="gateway",
        process="gateway-1",
        start_unix_nano=BASE,
        end_unix_nano=BASE + 50_000_000,
    )
    failed = span(
        tid,
        parent=root.span_id,
        service="payments",
        start_ms=10,
        status="error",
        **{ORDER_ID: "order-late", CORRELATION_ID: "corr-late"},
    )
    store.add([root, failed])
    (after,) = store.search(error=True)
    assert after.root_name == "POST /api/v1/orders"
    assert after.services == ["gateway", "orders", "payments"]
    assert (after.span_count, after.duration_ms, after.start_unix_nano) == (3, 50.0, BASE)
    assert found(store, order_id="order-late") == [tid]
    assert found(store, correlation_id="corr-late") == [tid]
    assert found(store, min_duration_ms=50) == [tid]


def test_recent_gives_the_spans_that_ended_since_newest_traces_first() -> None:
    store = TraceStore()
    store.add([span(trace_id(1), start_ms=0, duration_ms=1)])
    store.add([span(trace_id(2), start_ms=10, duration_ms=1)])
    late = span(trace_id(2), start_ms=20, duration_ms=1)
    store.add([late])
    assert [s.trace_id for s in store.recent(BASE)] == [trace_id(2), trace_id(2), trace_id(1)]
    assert store.recent(BASE + 15_000_000) == [late]
    assert len(store.recent(BASE, max_spans=2)) == 2
