"""Sagas: every service's sagas by state (running, compensating, completed, cancelled), each
asked through the service's operations endpoint, and one saga's page: its row (status,
step, attempts, why it turned round, deadline, lease, timings), its timeline, and its
traces.

The timeline is the order's own (the checkout saga's id is its order's id; a cancellation's
or a refund's begins with it): the steps done, skipped and compensated, each with its time,
as the orders service records them with the saga's transitions. The traces are those the
trace store holds for the order, and among their spans the saga's steps (``saga <kind>
<step>`` and ``saga <kind> compensate <step>``), one per attempt: retries show as repeats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.clock import utc_now_iso
from colony.platform.errors import ColonyError, InvalidInput, NotFound
from colony.platform.observability.trace_store import ORDER_ID, StoredSpan, TraceSummary
from colony.platform.runtime.operations import (
    SAGA_STATUSES,
    OperationsApi,
    SagaList,
    SagaRow,
    SagaStatus,
)
from colony.platform.security import Actor
from colony.services.gateway.console.site import Console
from colony.services.gateway.console.traces import search_url, trace_url
from colony.services.orders.api import Order

LIST_LIMIT = 100
"""The newest sagas shown, per service and all together."""
TRACES_SHOWN = 20
OPEN = ("running", "compensating")
_SAGA_ID = re.compile(r"^[\x21-\x7e]{1,256}$")
LIVE_SECONDS = 5


def saga_url(service: str, saga_id: str) -> str:
    return f"/console/sagas/{quote(service, safe='')}/{quote(saga_id, safe='')}"


def order_of(saga_id: str) -> str:
    """The order a saga works on: its id, up to a colon (``<order>:cancellation:<version>``)."""
    return saga_id.split(":", 1)[0]


@dataclass(frozen=True)
class StepSpan:
    span: StoredSpan
    compensation: bool
    step: str


def saga_steps(spans: list[StoredSpan], saga_id: str) -> list[StepSpan]:
    """The spans of a saga's steps and compensations, earliest first."""
    found = []
    for span in spans:
        if not span.name.startswith("saga "):
            continue
        named = span.attributes.get("colony.saga_id", span.attributes.get(ORDER_ID))
        if named != saga_id:
            continue
        words = span.name.split(" ")
        compensation = len(words) >= 4 and words[2] == "compensate"
        step = words[-1] if len(words) >= 3 else span.name
        found.append(StepSpan(span, compensation, step))
    return sorted(found, key=lambda s: s.span.start_unix_nano)


def overdue(saga: SagaRow, now: str) -> bool:
    return saga.status in OPEN and saga.deadline_at < now


def took_seconds(saga: SagaRow) -> float | None:
    try:
        begun = datetime.fromisoformat(saga.created_at)
        last = datetime.fromisoformat(saga.updated_at)
    except ValueError:
        return None
    if begun.tzinfo is None:
        begun, last = begun.replace(tzinfo=UTC), last.replace(tzinfo=UTC)
    return max(0.0, (last - begun).total_seconds())


def routes(console: Console) -> list[Route]:
    store = console.backends.traces

    @console.page
    async def listing(request: Request, actor: Actor) -> Response:
        status = request.query_params.get("status", "")
        if status and status not in SAGA_STATUSES:
            raise InvalidInput(f"A saga's status is one of {', '.join(SAGA_STATUSES)}.")

        wanted = cast(SagaStatus | None, status or None)

        async def ask(operations: OperationsApi) -> SagaList:
            return await operations.sagas(actor, wanted, LIST_LIMIT)

        answers = await console.ask_each(ask)
        sagas = sorted(
            (saga for answer in answers.found.values() for saga in answer.sagas),
            key=lambda saga: (saga.created_at, saga.id),
            reverse=True,
        )[:LIST_LIMIT]
        counts = {name: 0 for name in SAGA_STATUSES}
        for answer in answers.found.values():
            for name, count in answer.counts.items():
                counts[name] = counts.get(name, 0) + count
        return await console.render(
            request,
            "console/sagas.html",
            {
                "sagas": sagas,
                "counts": counts,
                "status": status,
                "statuses": SAGA_STATUSES,
                "missing": answers.missing,
                "now": utc_now_iso(),
                "overdue": overdue,
                "saga_url": saga_url,
                "limit": LIST_LIMIT,
            },
            live=LIVE_SECONDS,
        )

    @console.page
    async def one(request: Request, actor: Actor) -> Response:
        service = request.path_params["service"]
        saga_id = request.path_params["saga_id"]
        operations = console.operations(service)  # 404 for a name that is no service's
        if not _SAGA_ID.match(saga_id):
            raise NotFound(f"{service} has no saga {saga_id!r}.")
        saga = await operations.saga(actor, saga_id)
        order_id = order_of(saga.id)
        order, order_problem = await _order(actor, service, order_id)
        traces: list[TraceSummary] = store.search(order_id=order_id, limit=TRACES_SHOWN)
        spans = [span for summary in traces for span in store.trace(summary.trace_id)]
        return await console.render(
            request,
            "console/saga.html",
            {
                "saga": saga,
                "order_id": order_id,
                "order": order,
                "order_problem": order_problem,
                "traces": traces,
                "steps": saga_steps(spans, saga.id),
                "trace_url": trace_url,
                "search_url": search_url,
                "overdue": overdue(saga, utc_now_iso()),
                "took": took_seconds(saga),
                "start_of": traces[-1].start_unix_nano if traces else None,
            },
            live=LIVE_SECONDS if saga.status in OPEN else None,
        )

    async def _order(actor: Actor, service: str, order_id: str) -> tuple[Order | None, str]:
        """The order the saga works on, as its admin may read it; why not, if not."""
        if service != "orders":
            return None, ""
        try:
            return await console.backends.orders.get_order(actor, order_id), ""
        except NotFound:
            return None, "The orders service has no order by this saga's id."
        except ColonyError as exc:
            return None, f"The order could not be read: {exc.detail}"

    return [
        Route("/console/sagas", listing, methods=["GET"]),
        Route("/console/sagas/{service}/{saga_id}", one, methods=["GET"]),
    ]
