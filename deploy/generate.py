"""The deployment files made from others, so that none can drift from its source:

- Grafana's dashboards (grafana/dashboards/*.json): the overview, one per Colony process
  made from one template (a new service gets its dashboard by being in
  ``colony.composition.SERVICE_NAMES``), and the checkout saga's;
- the Prometheus Operator's PrometheusRule (kubernetes/monitoring/prometheus-rule.yaml):
  prometheus/rules/colony.rules.yml, wrapped.

    .venv/bin/python deploy/generate.py           # write them
    .venv/bin/python deploy/generate.py --check   # exit 1 if a committed file differs

tests/test_observability_deploy.py fails when a committed file is not what this writes.
Every query names only metrics of src/colony/platform/observability/metrics.py, the
recording rules of colony.rules.yml and Prometheus's ``up``, and every panel reads the
datasource that grafana/provisioning provisions (uid ``prometheus``, as kube-prometheus-stack
names its own, so the dashboards import there unchanged).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from colony.composition import SERVICE_NAMES

DEPLOY = Path(__file__).resolve().parent
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
RULES = DEPLOY / "prometheus" / "rules" / "colony.rules.yml"
PROMETHEUS_RULE = DEPLOY / "kubernetes" / "monitoring" / "prometheus-rule.yaml"

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"
"""Grafana's window for rate(): at least four scrape intervals, whatever the zoom."""
BUYERS = 'http_route!~"/metrics|/health/.*"'
"""The gateway's requests that are people's, not probes' or Prometheus's (as in the SLO's
recording rules)."""


# --------------------------------------------------------------------------- building blocks


@dataclass
class Dashboard:
    """A dashboard whose panels flow left to right in rows of 24 columns, each with a
    unique id."""

    uid: str
    title: str
    description: str
    panels: list[dict[str, Any]] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _row_height: int = 0

    def row(self, title: str) -> None:
        self._newline()
        self._add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self._newline()

    def timeseries(
        self,
        title: str,
        description: str,
        queries: list[tuple[str, str]],
        unit: str,
        width: int = 8,
        stack: bool = False,
    ) -> None:
        """``queries``: (PromQL, legend) pairs."""
        custom: dict[str, Any] = {"fillOpacity": 10, "showPoints": "never"}
        if stack:
            custom["stacking"] = {"mode": "normal", "group": "A"}
        self._add(
            {
                "type": "timeseries",
                "title": title,
                "description": description,
                "datasource": DATASOURCE,
                "fieldConfig": {"defaults": {"unit": unit, "custom": custom}, "overrides": []},
                "options": {
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"},
                },
                "targets": _targets(queries),
            },
            width,
            8,
        )

    def stat(
        self,
        title: str,
        description: str,
        queries: list[tuple[str, str]],
        unit: str,
        width: int = 4,
        thresholds: tuple[float, float] | None = None,
    ) -> None:
        """A number now; ``thresholds`` (amber, red) colour it."""
        steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
        if thresholds is not None:
            steps += [
                {"color": "orange", "value": thresholds[0]},
                {"color": "red", "value": thresholds[1]},
            ]
        self._add(
            {
                "type": "stat",
                "title": title,
                "description": description,
                "datasource": DATASOURCE,
                "fieldConfig": {
                    "defaults": {
                        "unit": unit,
                        "thresholds": {"mode": "absolute", "steps": steps},
                    },
                    "overrides": [],
                },
                "options": {
                    "colorMode": "background",
                    "graphMode": "none",
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "textMode": "value_and_name",
                },
                "targets": _targets(queries),
            },
            width,
            4,
        )

    def json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["colony"],
            "editable": False,
            "graphTooltip": 1,
            "refresh": "30s",
            "schemaVersion": 39,
            "version": 1,
            "time": {"from": "now-1h", "to": "now"},
            "timezone": "browser",
            "annotations": {"list": []},
            "templating": {"list": []},
            "links": [
                {
                    "title": "Colony",
                    "type": "dashboards",
                    "tags": ["colony"],
                    "asDropdown": True,
                    "keepTime": True,
                    "includeVars": False,
                }
            ],
            "panels": self.panels,
        }

    def _add(self, panel: dict[str, Any], width: int, height: int) -> None:
        if self._x + width > 24:
            self._newline()
        panel = {"id": len(self.panels) + 1, **panel}
        panel["gridPos"] = {"h": height, "w": width, "x": self._x, "y": self._y}
        self.panels.append(panel)
        self._x += width
        self._row_height = max(self._row_height, height)

    def _newline(self) -> None:
        if self._x:
            self._y += self._row_height
        self._x, self._row_height = 0, 0


def _targets(queries: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
        for i, (expr, legend) in enumerate(queries)
    ]


def rate(selector: str, by: str = "") -> str:
    """``sum by (by) (rate(selector[window]))``; ``sum(...)`` when ``by`` is empty."""
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}(rate({selector}[{RATE}]))"


def share(part: str, whole: str, by: str = "") -> str:
    """The share of ``whole``'s rate that ``part`` is, per ``by``."""
    return f"{rate(part, by)} / {rate(whole, by)}"


def quantile(q: float, histogram: str, matchers: str, by: str = "") -> str:
    grouping = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, {rate(f'{histogram}_bucket{{{matchers}}}', grouping)})"


# --------------------------------------------------------------------------- the dashboards


def overview() -> Dashboard:
    d = Dashboard(
        "colony-overview",
        "Colony / Overview",
        "Every service at a glance: the gateway's SLOs, each service's rate, errors and"
        " duration, events and the outbox, dead letters, breakers, sagas and the processes.",
    )
    gateway = f'service="gateway",{BUYERS}'
    http = "http_server_request_duration_seconds"
    rpc = "rpc_server_call_duration_seconds"

    d.row("The gateway: what buyers see")
    d.stat(
        "Availability, 1 h",
        "Share of the gateway's requests answered without a 5xx over the last hour (SLO 99.9 %).",
        [("1 - colony:gateway_http_errors:ratio_rate1h", "")],
        "percentunit",
    )
    d.stat(
        "Error budget burn, 1 h",
        "How fast the availability SLO's budget burns: 1 spends it in exactly 30 days; 14.4 pages.",
        [("colony:gateway_http_errors:ratio_rate1h / 0.001", "")],
        "none",
        thresholds=(1, 14.4),
    )
    d.stat(
        "Within 0.5 s, 1 h",
        "Share of the gateway's requests answered within 0.5 s over the last hour (SLO 99 %).",
        [("1 - colony:gateway_http_slow:ratio_rate1h", "")],
        "percentunit",
    )
    d.stat(
        "Latency budget burn, 1 h",
        "How fast the latency SLO's budget burns: 1 spends it in exactly 30 days; 14.4 pages.",
        [("colony:gateway_http_slow:ratio_rate1h / 0.01", "")],
        "none",
        thresholds=(1, 14.4),
    )
    d.stat(
        "Processes up",
        "Colony processes Prometheus scrapes, and how many answer.",
        [('sum(up{job="colony"})', "up"), ('count(up{job="colony"})', "scraped")],
        "none",
        width=8,
    )
    d.timeseries(
        "Requests by status",
        "The gateway's requests per second, by status code.",
        [
            (
                rate(f"{http}_count{{{gateway}}}", "http_response_status_code"),
                "{{http_response_status_code}}",
            )
        ],
        "reqps",
        stack=True,
    )
    d.timeseries(
        "Errors and slow requests",
        "Share of the gateway's requests answered with a 5xx, and slower than 0.5 s"
        " (5-minute windows of the SLO's recording rules).",
        [
            ("colony:gateway_http_errors:ratio_rate5m", "5xx"),
            ("colony:gateway_http_slow:ratio_rate5m", "slower than 0.5 s"),
        ],
        "percentunit",
    )
    d.timeseries(
        "Latency",
        "The gateway's request duration: median, 95th and 99th percentiles.",
        [
            (quantile(0.5, http, gateway), "p50"),
            (quantile(0.95, http, gateway), "p95"),
            (quantile(0.99, http, gateway), "p99"),
        ],
        "s",
    )

    d.row("Services: rate, errors, duration of the calls they serve")
    d.timeseries(
        "Calls served",
        "Interface calls each service served per second, in-process or over HTTP.",
        [(rate(f"{rpc}_count", "service"), "{{service}}")],
        "ops",
        stack=True,
    )
    d.timeseries(
        "Failed calls",
        "Share of each service's calls that raised an error (any outcome but ok).",
        [(share(f'{rpc}_count{{outcome!="ok"}}', f"{rpc}_count", "service"), "{{service}}")],
        "percentunit",
    )
    d.timeseries(
        "Call duration, p99",
        "99th percentile of each service's call duration.",
        [(quantile(0.99, rpc, "", "service"), "{{service}}")],
        "s",
    )

    d.row("Events: the outbox, consumers, dead letters")
    d.timeseries(
        "Oldest event waiting in the outbox",
        "Age of each service's oldest unpublished event; over a minute for five alerts.",
        [("max by (service) (colony_outbox_oldest_pending_seconds)", "{{service}}")],
        "s",
    )
    d.timeseries(
        "Events published",
        "Events each service's outbox relay published per second.",
        [(rate("messaging_client_published_messages_total", "service"), "{{service}}")],
        "ops",
        stack=True,
    )
    d.timeseries(
        "Events consumed, by outcome",
        "Events applied per second by each service's consumers: ok, duplicate (already"
        " applied), retry, dead_letter.",
        [
            (
                rate("messaging_process_duration_seconds_count", "service, outcome"),
                "{{service}} {{outcome}}",
            )
        ],
        "ops",
    )
    d.timeseries(
        "Dead letters open",
        "Events parked after their retries, not yet replayed (colony dlq list).",
        [("max by (service) (colony_dead_letters_open)", "{{service}}")],
        "short",
    )
    d.timeseries(
        "Dead letters recorded",
        "Events consumers gave up on, per 15 minutes.",
        [
            (
                "sum by (service, messaging_destination_name)"
                " (increase(colony_dead_letters_recorded_total[15m]))",
                "{{service}} {{messaging_destination_name}}",
            )
        ],
        "short",
    )
    d.timeseries(
        "Redeliveries",
        "Messages JetStream delivered again per second (not acknowledged in time, or refused).",
        [(rate("colony_jetstream_redeliveries_total", "service"), "{{service}}")],
        "ops",
    )

    d.row("Resilience: breakers, failures, retries")
    d.timeseries(
        "Breakers not closed",
        "Circuit breakers open or half-open, by caller and dependency (0 when all are closed).",
        [
            (
                'sum by (service, dependency) (colony_breaker_state{state=~"open|half_open"})',
                "{{service}} → {{dependency}}",
            )
        ],
        "short",
    )
    d.timeseries(
        "Dependency failures",
        "Share of calls to each dependency that failed, by caller.",
        [
            (
                share(
                    "colony_dependency_failures_total",
                    "colony_dependency_calls_total",
                    "service, dependency",
                ),
                "{{service}} → {{dependency}}",
            )
        ],
        "percentunit",
    )
    d.timeseries(
        "Retries, and retries the budget refused",
        "Retries per second by caller, and those the retry budget refused.",
        [
            (rate("colony_retries_total", "service"), "{{service}} retried"),
            (rate("colony_retries_refused_total", "service"), "{{service}} refused"),
        ],
        "ops",
    )

    d.row("Sagas")
    d.timeseries(
        "Sagas in flight",
        "Sagas running or compensating, by saga and state.",
        [
            (
                "max by (saga, state) (colony_sagas)",
                "{{saga}} {{state}}",
            )
        ],
        "short",
    )
    d.timeseries(
        "Sagas past their deadline",
        "Sagas still running or compensating after their deadline; above 0 for two minutes pages.",
        [("max by (saga) (colony_sagas_overdue)", "{{saga}}")],
        "short",
    )
    d.timeseries(
        "Sagas finished",
        "Sagas completed and cancelled (compensated) per second.",
        [(rate("colony_sagas_finished_total", "saga, outcome"), "{{saga}} {{outcome}}")],
        "ops",
    )

    d.row("Processes")
    d.timeseries(
        "Event loop lag",
        "How late each process's event loop runs a callback due now.",
        [("max by (service) (colony_event_loop_lag_seconds)", "{{service}}")],
        "s",
    )
    d.timeseries(
        "CPU",
        "CPU each Colony process uses, in cores.",
        [
            (
                rate('process_cpu_seconds_total{job="colony"}', "instance"),
                "{{instance}}",
            )
        ],
        "short",
    )
    d.timeseries(
        "Memory",
        "Resident memory of each Colony process.",
        [('process_resident_memory_bytes{job="colony"}', "{{instance}}")],
        "bytes",
    )
    return d


def service(name: str) -> Dashboard:
    """One process's dashboard: what it serves, what it calls, its events, the process."""
    d = Dashboard(
        f"colony-{name}",
        f"Colony / {name}",
        f"The {name} {'edge' if name == 'gateway' else 'service'}: the requests or calls it"
        " serves, the calls it makes and their breakers, its events, its processes.",
    )
    own = f'service="{name}"'
    http = "http_server_request_duration_seconds"
    rpc = "rpc_server_call_duration_seconds"
    client = "rpc_client_call_duration_seconds"
    consume = "messaging_process_duration_seconds"

    # The gateway is timed per HTTP route (the public API); a service per interface method,
    # whether it is called in-process or over HTTP.
    if name == "gateway":
        d.row("HTTP requests served")
        d.timeseries(
            "Requests by route",
            "Requests per second, by route template and status code.",
            [
                (
                    rate(f"{http}_count{{{own}}}", "http_route, http_response_status_code"),
                    "{{http_route}} {{http_response_status_code}}",
                )
            ],
            "reqps",
        )
        d.timeseries(
            "5xx share",
            "Share of requests answered with a 5xx.",
            [
                (
                    share(
                        f'{http}_count{{{own},http_response_status_code=~"5.."}}',
                        f"{http}_count{{{own}}}",
                    ),
                    "5xx",
                )
            ],
            "percentunit",
        )
        d.timeseries(
            "Request duration by route, p99",
            "99th percentile of each route's request duration.",
            [(quantile(0.99, http, own, "http_route"), "{{http_route}}")],
            "s",
        )
    else:
        d.row("Interface calls served")
        d.timeseries(
            "Calls by method",
            "Calls per second, by method and outcome (ok, or the error's class).",
            [(rate(f"{rpc}_count{{{own}}}", "rpc_method, outcome"), "{{rpc_method}} {{outcome}}")],
            "ops",
        )
        d.timeseries(
            "Calls by caller",
            "Calls per second, by the identity that made them.",
            [(rate(f"{rpc}_count{{{own}}}", "rpc_caller"), "{{rpc_caller}}")],
            "ops",
            stack=True,
        )
        d.timeseries(
            "Call duration by method, p99",
            "99th percentile of each method's duration.",
            [(quantile(0.99, rpc, own, "rpc_method"), "{{rpc_method}}")],
            "s",
        )

    d.row("Calls made to other services and dependencies")
    d.timeseries(
        "Calls made, by peer and outcome",
        "Interface calls to other services per second, as this one saw them.",
        [(rate(f"{client}_count{{{own}}}", "rpc_peer, outcome"), "{{rpc_peer}} {{outcome}}")],
        "ops",
    )
    d.timeseries(
        "Call duration by peer, p99",
        "99th percentile of the calls' duration, retries and waiting included.",
        [(quantile(0.99, client, own, "rpc_peer"), "{{rpc_peer}}")],
        "s",
    )
    d.timeseries(
        "Dependency failures",
        "Share of calls to each dependency that failed.",
        [
            (
                share(
                    f"colony_dependency_failures_total{{{own}}}",
                    f"colony_dependency_calls_total{{{own}}}",
                    "dependency",
                ),
                "{{dependency}}",
            )
        ],
        "percentunit",
    )
    d.timeseries(
        "Breakers not closed",
        "Circuit breakers open or half-open, by dependency and endpoint.",
        [
            (
                "max by (dependency, endpoint, state)"
                f' (colony_breaker_state{{{own},state=~"open|half_open"}})',
                "{{dependency}} {{endpoint}} {{state}}",
            )
        ],
        "short",
        width=6,
    )
    d.timeseries(
        "Breaker transitions",
        "Breakers' changes of state per 15 minutes, by dependency and the state entered.",
        [
            (
                "sum by (dependency, state)"
                f" (increase(colony_breaker_transitions_total{{{own}}}[15m]))",
                "{{dependency}} → {{state}}",
            )
        ],
        "short",
        width=6,
    )
    d.timeseries(
        "Retries",
        "Retries per second by dependency, and those the retry budget refused.",
        [
            (rate(f"colony_retries_total{{{own}}}", "dependency"), "{{dependency}} retried"),
            (
                rate(f"colony_retries_refused_total{{{own}}}", "dependency"),
                "{{dependency}} refused",
            ),
        ],
        "ops",
        width=6,
    )
    d.timeseries(
        "Bulkheads",
        "Calls in flight and waiting for a slot, by dependency; refused per second.",
        [
            (
                f"sum by (dependency) (colony_bulkhead_in_flight{{{own}}})",
                "{{dependency}} in flight",
            ),
            (f"sum by (dependency) (colony_bulkhead_waiting{{{own}}})", "{{dependency}} waiting"),
            (
                rate(f"colony_bulkhead_rejected_total{{{own}}}", "dependency"),
                "{{dependency}} rejected/s",
            ),
        ],
        "short",
        width=6,
    )

    d.row("Events")
    d.timeseries(
        "Published",
        "Events the outbox relay published per second, by topic.",
        [
            (
                rate(
                    f"messaging_client_published_messages_total{{{own}}}",
                    "messaging_destination_name",
                ),
                "{{messaging_destination_name}}",
            )
        ],
        "ops",
    )
    d.timeseries(
        "Consumed, by outcome",
        "Events applied per second, by topic and outcome (ok, duplicate, retry, dead_letter).",
        [
            (
                rate(f"{consume}_count{{{own}}}", "messaging_destination_name, outcome"),
                "{{messaging_destination_name}} {{outcome}}",
            )
        ],
        "ops",
    )
    d.timeseries(
        "Consumer duration, p99",
        "99th percentile of applying one event (its handler and inbox row), by topic.",
        [
            (
                quantile(0.99, consume, own, "messaging_destination_name"),
                "{{messaging_destination_name}}",
            )
        ],
        "s",
    )
    d.timeseries(
        "Outbox",
        "Events waiting to be published, and the age of the oldest.",
        [
            (f"max(colony_outbox_pending{{{own}}})", "waiting"),
            (f"max(colony_outbox_oldest_pending_seconds{{{own}}})", "oldest (s)"),
        ],
        "short",
    )
    d.timeseries(
        "Dead letters",
        "Dead letters open (not replayed), and recorded per 15 minutes by topic.",
        [
            (f"max(colony_dead_letters_open{{{own}}})", "open"),
            (
                "sum by (messaging_destination_name)"
                f" (increase(colony_dead_letters_recorded_total{{{own}}}[15m]))",
                "recorded {{messaging_destination_name}}",
            ),
        ],
        "short",
    )
    d.timeseries(
        "Broker",
        "Messages waiting in each JetStream consumer, and redeliveries per second by topic.",
        [
            (
                f"max by (consumer) (colony_jetstream_consumer_pending{{{own}}})",
                "{{consumer}} pending",
            ),
            (
                rate(f"colony_jetstream_redeliveries_total{{{own}}}", "messaging_destination_name"),
                "{{messaging_destination_name}} redelivered/s",
            ),
        ],
        "short",
    )

    d.row("Processes")
    d.stat(
        "Processes up",
        "This service's processes that answer Prometheus, and how many it scrapes.",
        [(f'sum(up{{job="colony",{own}}})', "up"), (f'count(up{{job="colony",{own}}})', "scraped")],
        "none",
        width=6,
    )
    d.timeseries(
        "Event loop lag",
        "How late the event loop runs a callback due now, per process.",
        [(f"colony_event_loop_lag_seconds{{{own}}}", "{{instance}}")],
        "s",
        width=6,
    )
    d.timeseries(
        "CPU",
        "CPU of each process, in cores (where each service has processes of its own).",
        [(f"rate(process_cpu_seconds_total{{{own}}}[{RATE}])", "{{instance}}")],
        "short",
        width=6,
    )
    d.timeseries(
        "Memory",
        "Resident memory of each process (where each service has processes of its own).",
        [(f"process_resident_memory_bytes{{{own}}}", "{{instance}}")],
        "bytes",
        width=6,
    )
    return d


def checkout() -> Dashboard:
    d = Dashboard(
        "colony-checkout",
        "Colony / Checkout saga",
        "The checkout saga in orders: how many run, how they end, how long each step and"
        " compensation takes, and what the payment provider answers.",
    )
    saga = 'service="orders",saga="checkout"'
    step = "colony_saga_step_duration_seconds"

    d.row("Sagas")
    d.stat(
        "Running",
        "Checkouts running now.",
        [(f'max(colony_sagas{{{saga},state="running"}}) or vector(0)', "")],
        "short",
    )
    d.stat(
        "Compensating",
        "Checkouts undoing their steps now.",
        [(f'max(colony_sagas{{{saga},state="compensating"}}) or vector(0)', "")],
        "short",
        thresholds=(1, 10),
    )
    d.stat(
        "Past their deadline",
        "Checkouts still running or compensating after their deadline (pages after 2 minutes).",
        [(f"max(colony_sagas_overdue{{{saga}}}) or vector(0)", "")],
        "short",
        thresholds=(1, 1),
    )
    d.stat(
        "Cancelled, 1 h",
        "Share of the checkouts that ended in the last hour that were cancelled.",
        [
            (
                f'sum(increase(colony_sagas_finished_total{{{saga},outcome="cancelled"}}[1h]))'
                f" / sum(increase(colony_sagas_finished_total{{{saga}}}[1h]))",
                "",
            )
        ],
        "percentunit",
        thresholds=(0.05, 0.2),
    )
    d.stat(
        "Placed, 1 h",
        "Checkouts placed through the gateway in the last hour (POST /api/v1/orders, 201).",
        [
            (
                'sum(increase(http_server_request_duration_seconds_count{service="gateway",'
                'http_request_method="POST",http_route="/api/v1/orders",'
                'http_response_status_code="201"}[1h]))',
                "",
            )
        ],
        "short",
        width=8,
    )
    d.timeseries(
        "Completed and cancelled",
        "Checkouts that ended per second: completed, or cancelled with every step compensated.",
        [(rate(f"colony_sagas_finished_total{{{saga}}}", "outcome"), "{{outcome}}")],
        "ops",
        width=12,
        stack=True,
    )
    d.timeseries(
        "In flight",
        "Checkouts running and compensating, and those past their deadline.",
        [
            (f'max by (state) (colony_sagas{{{saga},state=~"running|compensating"}})', "{{state}}"),
            (f"max(colony_sagas_overdue{{{saga}}})", "past deadline"),
        ],
        "short",
        width=12,
    )

    d.row("Steps")
    d.timeseries(
        "Step duration, p50",
        "Median duration of each forward step, its retries included.",
        [(quantile(0.5, step, f'{saga},direction="forward"', "step"), "{{step}}")],
        "s",
        width=12,
    )
    d.timeseries(
        "Step duration, p99",
        "99th percentile of each forward step's duration, its retries included.",
        [(quantile(0.99, step, f'{saga},direction="forward"', "step"), "{{step}}")],
        "s",
        width=12,
    )
    d.timeseries(
        "Steps by outcome",
        "Forward steps finished per second, by step and outcome.",
        [
            (
                rate(f'{step}_count{{{saga},direction="forward"}}', "step, outcome"),
                "{{step}} {{outcome}}",
            )
        ],
        "ops",
        width=12,
    )
    d.timeseries(
        "Compensations",
        "Compensations finished per second by step and outcome, and their p99 duration.",
        [
            (
                rate(f'{step}_count{{{saga},direction="compensate"}}', "step, outcome"),
                "{{step}} {{outcome}}",
            ),
            (quantile(0.99, step, f'{saga},direction="compensate"', "step"), "{{step}} p99 (s)"),
        ],
        "short",
        width=12,
    )

    d.row("The payment provider")
    d.timeseries(
        "Provider answers",
        "The payment provider's answers per second, by operation and outcome: ok, declined,"
        " refused, unknown (no well-formed answer) or unavailable.",
        [
            (
                rate(
                    'colony_payment_provider_outcomes_total{service="payments"}',
                    "operation, outcome",
                ),
                "{{operation}} {{outcome}}",
            )
        ],
        "ops",
        width=12,
    )
    d.timeseries(
        "Payments' breakers not closed",
        "Payments' circuit breakers open or half-open (the provider's among them).",
        [
            (
                "max by (dependency, state)"
                ' (colony_breaker_state{service="payments",state=~"open|half_open"})',
                "{{dependency}} {{state}}",
            )
        ],
        "short",
        width=12,
    )
    return d


def dashboards() -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, dashboard) for every dashboard."""
    yield "overview.json", overview().json()
    for name in (*SERVICE_NAMES, "gateway"):
        yield f"service-{name}.json", service(name).json()
    yield "checkout-saga.json", checkout().json()


# --------------------------------------------------------------------------- PrometheusRule


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line expressions as literal blocks, as in the rules file.
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    )


_Dumper.add_representer(str, _text)


def prometheus_rule() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "colony",
            "labels": {
                "app.kubernetes.io/name": "colony",
                "app.kubernetes.io/component": "monitoring",
                "app.kubernetes.io/part-of": "colony",
            },
        },
        "spec": {"groups": groups},
    }
    header = (
        "# Generated by deploy/generate.py from deploy/prometheus/rules/colony.rules.yml (read\n"
        "# the comments there): edit that file, then run `.venv/bin/python deploy/generate.py`.\n"
    )
    body: str = yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return header + body


# --------------------------------------------------------------------------- writing


def generated() -> dict[Path, str]:
    """Every generated file and its content."""
    files = {
        DASHBOARDS / name: json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
        for name, dashboard in dashboards()
    }
    files[PROMETHEUS_RULE] = prometheus_rule()
    return files


def main(argv: list[str]) -> int:
    check = argv[1:] == ["--check"]
    stale = []
    for path, content in generated().items():
        if path.exists() and path.read_text() == content:
            continue
        stale.append(path)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    for path in stale:
        print(f"{'differs' if check else 'wrote'}: {path.relative_to(DEPLOY.parent)}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
