"""Injecting the faults around the payment API: outage, latency, errors and timeouts.

An ASGI middleware, so the handlers stay plain. Admin routes are never faulted; an outage
refuses everything else (``/health`` included) with a quick 503. Latency, errors and timeouts
apply to ``/v1``. An injected 5xx is answered before the handler runs, so it never has an
effect. A timeout hangs for ``hang_seconds`` (30 s) or until the client disconnects, whichever
comes first: for half of them *after* the handler's effect is committed (the response is then
sent late, or never if the client left), for the other half *before* the handler runs (no
effect ever; a client still waiting after the hang gets a 504). Both are what a client sees as
a timeout, and only asking the provider about its Idempotency-Key tells them apart.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colony.payment_provider.behaviour import Counters, Dice
from colony.platform.errors import ColonyError, ServiceUnavailable
from colony.platform.logging import get_logger
from colony.platform.web.problems import problem_response

HANG_SECONDS = 30.0
_log = get_logger("payment-provider")


class ProviderTimedOut(ColonyError):
    status = 504
    slug = "provider-timeout"
    title = "The payment provider did not answer in time"


class FaultInjector:
    def __init__(
        self, app: ASGIApp, dice: Dice, counters: Counters, hang_seconds: float = HANG_SECONDS
    ) -> None:
        self.app = app
        self.dice = dice
        self.counters = counters
        self.hang_seconds = hang_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/admin/"):
            await self.app(scope, receive, send)
            return
        self.counters.requests += 1
        if (b"x-colony-purpose", b"audit") in scope["headers"]:
            self.counters.audit_requests += 1
        if self.dice.behaviour.outage:
            self.counters.outage_rejections += 1
            response = problem_response(
                ServiceUnavailable("The payment provider is down (simulated outage)."), path
            )
            response.headers["retry-after"] = "1"
            await response(scope, receive, send)
            return
        if not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        # Every draw happens up front and in one order, so a seed fixes the whole sequence.
        delay = self.dice.latency_seconds()
        error = self.dice.error_status()
        timeout = self.dice.timeout()
        if delay:
            await asyncio.sleep(delay)
        if error is not None:
            self.counters.injected_errors += 1
            fault = (
                ServiceUnavailable("Simulated unavailability.")
                if error == 503
                else ColonyError("Simulated internal error.")
            )
            await problem_response(fault, path)(scope, receive, send)
            return
        if timeout == "before":
            self.counters.timeouts_before_effect += 1
            _log.info("simulated timeout before the effect", path=path)
            if not await self._hang(receive):
                late = ProviderTimedOut("Simulated timeout; the request had no effect.")
                await problem_response(late, path)(scope, receive, send)
            return
        if timeout == "after":
            self.counters.timeouts_after_effect += 1
            _log.info("simulated timeout after the effect", path=path)
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await self.app(scope, receive, hold)
            if not await self._hang(receive):
                for message in held:
                    await send(message)
            return
        await self.app(scope, receive, send)

    async def _hang(self, receive: Receive) -> bool:
        """Sleep past any sane client timeout; True if the client disconnected meanwhile."""
        try:
            await asyncio.wait_for(_disconnected(receive), self.hang_seconds)
        except TimeoutError:
            return False
        return True


async def _disconnected(receive: Receive) -> None:
    try:
        # Reads (and drops) any body not read yet; then the server reports the disconnect.
        while (await receive())["type"] != "http.disconnect":
            pass
    except ColonyError:
        # An oversize body stops the reading, not the hang.
        await asyncio.Event().wait()
