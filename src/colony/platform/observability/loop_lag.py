"""How late the event loop runs: one number that says a process is overloaded or blocked.

Every second a sleep of one second is timed; what it overshoots is the time a callback ready
to run waited for the loop (a blocking call, a long synchronous stretch, or too much work).
"""

from __future__ import annotations

import asyncio

from colony.platform.observability.metrics import event_loop_lag
from colony.platform.tasks import cancelled

INTERVAL_SECONDS = 1.0


async def watch_event_loop(service: str) -> None:
    """Sample the lag into ``colony_event_loop_lag_seconds`` until cancelled."""
    gauge = event_loop_lag.labels(service)
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(INTERVAL_SECONDS)
        gauge.set(max(0.0, loop.time() - started - INTERVAL_SECONDS))


def start_watching(service: str) -> asyncio.Task[None]:
    return asyncio.create_task(watch_event_loop(service), name=f"event-loop-lag-{service}")


async def stop_watching(task: asyncio.Task[None] | None) -> None:
    await cancelled(task)
