"""Metrics that describe state rather than count events, read when Prometheus scrapes.

An outbox's depth, the dead letters waiting, the sagas open, a breaker's state: counting them
as they change would put bookkeeping on every commit; reading them per scrape (every 15 s or
so) costs a few indexed queries, and is always right. The queries run before the text is
written (:meth:`ProcessState.refresh`, awaited by the ``/metrics`` route), since
prometheus_client's collectors cannot await.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from colony.platform.clock import utc_now_iso
from colony.platform.logging import get_logger
from colony.platform.storage import Database

_log = get_logger("metrics")
BREAKER_STATES = ("closed", "open", "half_open")


@dataclass
class ServiceState:
    """One local service's figures, as of the last refresh."""

    outbox_pending: int = 0
    outbox_oldest_seconds: float = 0.0
    dead_letters_open: int = 0
    sagas_open: dict[tuple[str, str], int] = field(default_factory=dict)
    """(saga kind, status) → how many are running or compensating."""
    sagas_overdue: dict[str, int] = field(default_factory=dict)


class ProcessState(Collector):
    """The state metrics of one process: its local services' databases (outbox, dead
    letters, sagas), its broker's consumers, and its dependencies' resilience figures."""

    def __init__(
        self,
        process: str,
        databases: Callable[[], dict[str, Database]],
        with_sagas: Callable[[str], bool],
        resilience: Callable[[], list[dict[str, Any]]],
        jetstream_pending: Callable[[], Awaitable[dict[tuple[str, str], int]]] | None = None,
    ) -> None:
        self.process = process
        self._databases = databases
        self._with_sagas = with_sagas
        self._resilience = resilience
        self._jetstream_pending = jetstream_pending
        self.services: dict[str, ServiceState] = {}
        self.pending: dict[tuple[str, str], int] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        """Its own registry, not the process's: two runtimes in one process (as in tests)
        each keep theirs, where one registry would refuse the second's metric names."""
        self.registry.register(self)

    async def refresh(self) -> None:
        """Read every figure anew; a service whose database does not answer keeps none (the
        gap shows on the dashboards, and readiness says why)."""
        fresh: dict[str, ServiceState] = {}
        for name, db in self._databases().items():
            try:
                fresh[name] = await _read(db, self._with_sagas(name))
            except Exception as exc:
                _log.warning("state metrics unreadable", service=name, error=repr(exc))
        self.services = fresh
        if self._jetstream_pending is not None:
            try:
                self.pending = await self._jetstream_pending()
            except Exception as exc:
                _log.warning("JetStream consumers unreadable", error=repr(exc))
                self.pending = {}

    def collect(self) -> Iterable[Metric]:
        yield from self._services()
        yield from self._dependencies()
        pending = GaugeMetricFamily(
            "colony_jetstream_consumer_pending",
            "Messages stored in JetStream and not yet delivered to a consumer.",
            labels=["service", "consumer"],
        )
        for (service, consumer), count in sorted(self.pending.items()):
            pending.add_metric([service, consumer], count)
        yield pending

    def _services(self) -> Iterator[Metric]:
        outbox = GaugeMetricFamily(
            "colony_outbox_pending",
            "Outbox rows committed and not yet published.",
            labels=["service"],
        )
        oldest = GaugeMetricFamily(
            "colony_outbox_oldest_pending_seconds",
            "How long the oldest unpublished outbox row has waited (0 when none waits).",
            labels=["service"],
        )
        dead = GaugeMetricFamily(
            "colony_dead_letters_open",
            "Dead letters not yet replayed.",
            labels=["service"],
        )
        sagas = GaugeMetricFamily(
            "colony_sagas",
            "Sagas open, by state (running or compensating); finished ones are counted by"
            " colony_sagas_finished_total.",
            labels=["service", "saga", "state"],
        )
        overdue = GaugeMetricFamily(
            "colony_sagas_overdue",
            "Sagas still open past their deadline.",
            labels=["service", "saga"],
        )
        for name, state in sorted(self.services.items()):
            outbox.add_metric([name], state.outbox_pending)
            oldest.add_metric([name], state.outbox_oldest_seconds)
            dead.add_metric([name], state.dead_letters_open)
            for (kind, status), count in sorted(state.sagas_open.items()):
                sagas.add_metric([name, kind, status], count)
            for kind, count in sorted(state.sagas_overdue.items()):
                overdue.add_metric([name, kind], count)
        yield from (outbox, oldest, dead, sagas, overdue)

    def _dependencies(self) -> Iterator[Metric]:
        """Per kind of dependency: a service's replicas each keep their endpoint label (a
        bounded set, fixed by the deployment); sellers' webhook hosts, which are not bounded,
        are added up under their kind with the endpoint ``*``."""
        labels = ["service", "dependency"]
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "calls": CounterMetricFamily(
                "colony_dependency_calls", "Calls made to a dependency.", labels=labels
            ),
            "failures": CounterMetricFamily(
                "colony_dependency_failures", "Calls to a dependency that failed.", labels=labels
            ),
            "retries": CounterMetricFamily(
                "colony_retries", "Attempts made again after a failure.", labels=labels
            ),
            "retries_refused": CounterMetricFamily(
                "colony_retries_refused",
                "Retries the retry budget refused (an outage not amplified).",
                labels=labels,
            ),
            "rejected": CounterMetricFamily(
                "colony_bulkhead_rejected",
                "Calls refused because the dependency's bulkhead and its queue were full.",
                labels=labels,
            ),
            "in_flight": GaugeMetricFamily(
                "colony_bulkhead_in_flight", "Calls in flight to a dependency.", labels=labels
            ),
            "waiting": GaugeMetricFamily(
                "colony_bulkhead_waiting",
                "Calls waiting for a place in a dependency's bulkhead.",
                labels=labels,
            ),
        }
        breakers = GaugeMetricFamily(
            "colony_breaker_state",
            "Circuit breakers of a dependency in each state (for a single breaker, 1 for its"
            " state and 0 for the others).",
            labels=["service", "dependency", "endpoint", "state"],
        )
        totals: dict[str, Tally[str]] = {key: Tally() for key in families}
        states: dict[tuple[str, str], Tally[str]] = {}
        for snapshot in self._resilience():
            kind, _, instance = snapshot["name"].partition(":")
            for key in families:
                totals[key][kind] += snapshot[key]
            for endpoint, endpoint_state in snapshot["endpoints"].items():
                where = "*" if instance else endpoint
                states.setdefault((kind, where), Tally())[endpoint_state["state"]] += 1
        for key, family in families.items():
            for kind, value in sorted(totals[key].items()):
                family.add_metric([self.process, kind], value)
            yield family
        for (kind, where), tally in sorted(states.items()):
            for state in BREAKER_STATES:
                breakers.add_metric([self.process, kind, where, state], tally[state])
        yield breakers


async def _read(db: Database, with_sagas: bool) -> ServiceState:
    now = utc_now_iso()
    async with db.snapshot() as moment:
        pending = await db.fetch_value("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        oldest = await db.fetch_value(
            "SELECT min(created_at) FROM outbox WHERE published_at IS NULL"
        )
        dead = await db.fetch_value("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
        state = ServiceState(outbox_pending=int(pending), dead_letters_open=int(dead))
        if oldest is not None:
            waited = moment - datetime.fromisoformat(oldest)
            state.outbox_oldest_seconds = max(0.0, waited.total_seconds())
        if with_sagas:
            for row in await db.fetch_all(
                "SELECT kind, status, count(*) AS n FROM saga_instances"
                " WHERE status IN ('running', 'compensating') GROUP BY kind, status"
            ):
                state.sagas_open[(row["kind"], row["status"])] = int(row["n"])
            for row in await db.fetch_all(
                "SELECT kind, count(*) AS n FROM saga_instances"
                " WHERE status IN ('running', 'compensating') AND deadline_at < ? GROUP BY kind",
                (now,),
            ):
                state.sagas_overdue[row["kind"]] = int(row["n"])
    return state
