"""Outboxes and consumers, per service: the outbox rows committed and not yet published (and
how long the oldest has waited), the consumer's topics and open dead letters, and the
messages JetStream holds for it and has not delivered yet, where the broker can say (in one
process events are delivered in-process, with no queue to measure).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.runtime.operations import ConsumerState, OperationsApi, OutboxState
from colony.platform.security import Actor
from colony.services.gateway.console.site import Console

STALE_AFTER_SECONDS = 30.0
"""An outbox row older than this is late: the relay publishes within a second or so."""
LIVE_SECONDS = 5


@dataclass(frozen=True)
class Row:
    service: str
    outbox: OutboxState
    consumer: ConsumerState
    in_process: bool
    """Events are delivered in-process (no NATS configured): no broker queue to measure."""

    @property
    def broker_pending(self) -> int | None:
        pending = self.consumer.jetstream_pending
        return None if pending is None else sum(pending.values())


def routes(console: Console) -> list[Route]:
    @console.page
    async def outboxes(request: Request, actor: Actor) -> Response:
        async def ask(operations: OperationsApi) -> tuple[OutboxState, ConsumerState]:
            return await asyncio.gather(
                operations.outbox(actor, STALE_AFTER_SECONDS), operations.consumers(actor)
            )

        answers = await console.ask_each(ask)
        # Without a NATS server configured, events go through the in-process broker.
        in_process = not console.settings.nats_url
        rows = [Row(name, *found, in_process) for name, found in sorted(answers.found.items())]
        return await console.render(
            request,
            "console/outboxes.html",
            {
                "rows": rows,
                "missing": answers.missing,
                "stale_after": STALE_AFTER_SECONDS,
                "pending": sum(row.outbox.pending for row in rows),
                "dead": sum(row.consumer.dead_letters_open for row in rows),
            },
            live=LIVE_SECONDS,
        )

    return [Route("/console/outboxes", outboxes, methods=["GET"])]
