"""Background tasks: the one way a component stops the task it started."""

from __future__ import annotations

import asyncio
import contextlib


async def cancelled(task: asyncio.Task[object] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended, so nothing it was doing runs on
    after its owner has stopped; its cancellation is not an error to the owner."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
