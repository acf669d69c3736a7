"""Every metric Colony exports, in one place: the Prometheus names dashboards and alert rules
are written against.

Names follow OpenTelemetry's semantic conventions where one exists, written the Prometheus
way (``http.server.request.duration`` in seconds is ``http_server_request_duration_seconds``);
Colony's own carry the ``colony_`` prefix. Labels are bounded sets: a service, a route
template, a method, a topic, a dependency, a state, an outcome, never an id. Every metric
has a ``service`` label (the service, or ``gateway``) because one process may host several.

Two kinds live here. Those counted on the hot path (durations, outcomes) are counters of
``prometheus_client`` and histograms of :mod:`~colony.platform.observability.histogram`
(lock-free: see there), each ``.labels(...)`` child looked up once and kept by its caller
where calls are frequent. Those that describe state (outbox depth, dead letters,
breakers, bulkheads, sagas by state) are read when Prometheus scrapes, by the collectors of
:mod:`colony.platform.observability.state`, and cost nothing in between.

prometheus_client rather than OpenTelemetry's metrics SDK: its counters cost a third of a
microsecond, a tenth of the SDK's, and its text exposition is what Prometheus reads without
a collector in between.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from colony.platform.observability.histogram import Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
"""This process's metrics (``/metrics`` serves it); the process collector is added by
:func:`colony.platform.observability.exposition.serve_process_metrics`."""

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""From an in-process call (tens of µs, all in the first bucket) through a hop over HTTP
(1 to 10 ms) and a checkout's answer (50 to 500 ms) to the deadlines: 5 s for reads, 10 s for a
request, 30 s for the longest saga step's patience slice."""

SAGA_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
"""A step waits for a dependency that is down for up to its patience (120 s)."""

# --- requests and calls (RED: rate, errors, duration) -----------------------------------------

http_server_duration = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP requests served, by route template and status code.",
    ["service", "http_request_method", "http_route", "http_response_status_code"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)

rpc_server_duration = Histogram(
    "rpc_server_call_duration_seconds",
    "Duration of interface calls served, by method and outcome ('ok' or the error's class).",
    ["service", "rpc_method", "rpc_caller", "outcome"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)

rpc_client_duration = Histogram(
    "rpc_client_call_duration_seconds",
    "Duration of interface calls made to another service, as the caller saw them.",
    ["service", "rpc_peer", "rpc_method", "outcome"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)

# --- events -----------------------------------------------------------------------------------

messaging_published = Counter(
    "messaging_client_published_messages",
    "Events published to the broker by the outbox relay.",
    ["service", "messaging_destination_name"],
    registry=REGISTRY,
)

messaging_process_duration = Histogram(
    "messaging_process_duration_seconds",
    "Duration of applying one event in a consumer (its handler and inbox row), by outcome:"
    " 'ok', 'duplicate' (already applied), 'retry' (an attempt failed), 'dead_letter'.",
    ["service", "messaging_consumer_group_name", "messaging_destination_name", "outcome"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)

dead_lettered = Counter(
    "colony_dead_letters_recorded",
    "Events a consumer gave up on and parked as dead letters.",
    ["service", "messaging_destination_name"],
    registry=REGISTRY,
)

jetstream_redeliveries = Counter(
    "colony_jetstream_redeliveries",
    "Messages JetStream delivered again (not acknowledged in time, or refused).",
    ["service", "messaging_destination_name"],
    registry=REGISTRY,
)

# --- resilience -------------------------------------------------------------------------------

breaker_transitions = Counter(
    "colony_breaker_transitions",
    "Circuit breaker state changes, by dependency and the state entered.",
    ["service", "dependency", "state"],
    registry=REGISTRY,
)

# --- sagas ------------------------------------------------------------------------------------

saga_step_duration = Histogram(
    "colony_saga_step_duration_seconds",
    "Duration of a saga step or compensation, its retries included, by outcome.",
    ["service", "saga", "step", "direction", "outcome"],
    buckets=SAGA_STEP_BUCKETS,
    registry=REGISTRY,
)

sagas_finished = Counter(
    "colony_sagas_finished",
    "Sagas that reached an end: 'completed' or 'cancelled' (compensated).",
    ["service", "saga", "outcome"],
    registry=REGISTRY,
)

# --- third parties ----------------------------------------------------------------------------

payment_provider_outcomes = Counter(
    "colony_payment_provider_outcomes",
    "Answers of the payment provider, by operation and outcome (approved, declined, unknown"
    " when no well-formed answer came).",
    ["service", "operation", "outcome"],
    registry=REGISTRY,
)

# --- the process ------------------------------------------------------------------------------

event_loop_lag = Gauge(
    "colony_event_loop_lag_seconds",
    "How late the event loop ran a callback scheduled to run at once, sampled each second.",
    ["service"],
    registry=REGISTRY,
)
