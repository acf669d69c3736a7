"""Load shedding at the edge: at most ``limit`` requests inside the app at once, a 503 past it.

What it guarantees: never more than ``limit`` requests are being handled at once, and never
more than ``queue`` wait for a slot, each for at most ``wait_seconds``; any other request is
refused at once with a 503 problem (``/problems/overloaded``) and ``Retry-After: 1``. An
overloaded server that queues without bound answers everyone late, after their callers gave up,
and so does no useful work at all; one that sheds answers most requests in time and tells the
rest to come back. A slot freed while requests wait goes to the one that has waited longest.

The wait is meant to be a few milliseconds or none: long enough to ride out a burst that ends as
slots free up, short enough that a refused request has not lost its caller's patience. Paths
under ``exempt_paths`` (health, static files) neither take a slot nor are refused, so an
orchestrator still sees a shedding process alive.

Written here rather than taken from a library: Starlette has no such middleware, and the ASGI
servers' own caps (uvicorn's ``limit_concurrency``; granian has none) cannot exempt health
checks. It is the gateway-wide counterpart of the per-dependency bulkhead in
``platform/resilience``: one counter and a queue of futures, with no await on the fast path.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque

from starlette.types import ASGIApp, Receive, Scope, Send

from colony.platform.errors import Overloaded
from colony.platform.web.problems import problem_response


class ConcurrencyLimit:
    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        queue: int = 0,
        wait_seconds: float = 0.0,
        exempt_paths: tuple[str, ...] = (),
    ) -> None:
        if limit < 1 or queue < 0:
            raise ValueError("a concurrency limit needs limit ≥ 1 and queue ≥ 0")
        if not (math.isfinite(wait_seconds) and wait_seconds >= 0):
            raise ValueError("wait_seconds must be a finite number ≥ 0")
        self.app = app
        self.limit = limit
        self.queue = queue if wait_seconds > 0 else 0
        self.wait_seconds = wait_seconds
        self.exempt_paths = exempt_paths
        self.active = 0
        self.shed = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_paths):
            await self.app(scope, receive, send)
            return
        if self.active < self.limit:
            self.active += 1
        elif not await self._wait():
            self.shed += 1
            await self._refuse(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _wait(self) -> bool:
        """Wait for a slot handed over by a finishing request; False when none came in time
        or the queue is full."""
        if len(self._waiters) >= self.queue:
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.wait_seconds):
                await waiter
            return True
        except TimeoutError:
            # A slot handed over just as the wait ran out is ours all the same.
            return waiter.done() and not waiter.cancelled()
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot, then cancelled: pass it on
            raise
        finally:
            if not waiter.done() or waiter.cancelled():
                with contextlib.suppress(ValueError):  # unless _release took it off already
                    self._waiters.remove(waiter)

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to it: ``active`` stays as it is
                return
        self.active -= 1

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = Overloaded("The gateway is at capacity; try again in a second.")
        response = problem_response(error, scope.get("path"))
        response.headers["retry-after"] = "1"
        await response(scope, receive, send)
