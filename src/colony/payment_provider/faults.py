"""Injecting the faults around the payment API: outage, latency, errors, timeouts and bad
answers.

An ASGI middleware, so the handlers stay plain. Admin routes are never faulted; an outage
refuses everything else (``/health`` included) with a quick 503. Latency, errors and timeouts
apply to ``/v1``. An injected 5xx is answered before the handler runs, so it never has an
effect. A timeout hangs for ``hang_seconds`` (30 s) or until the client disconnects, whichever
comes first: for half of them *after* the handler's effect is committed (the response is then
sent late, or never if the client left), for the other half *before* the handler runs (no
effect ever; a client still waiting after the hang gets a 504). Both are what a client sees as
a timeout, and only asking the provider about its Idempotency-Key tells them apart.

A bad answer spoils a success (a 2xx) on its way out, *after* the handler's effect is
committed and its true result stored under the Idempotency-Key: the body replaced by one that
is not JSON, an amount or a status that is not the intent's, the right JSON padded to
``OVERSIZE_BYTES``, or half the body and then a hang as above. What the provider did is only
what asking it again tells. Refusals and errors are never spoiled: a bad answer is a lie
about a success, and the test it serves is whether a client believes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colony.payment_provider.api import BadAnswer
from colony.payment_provider.behaviour import Counters, Dice
from colony.platform.errors import ColonyError, ServiceUnavailable
from colony.platform.logging import get_logger
from colony.platform.web.problems import problem_response

HANG_SECONDS = 30.0
OVERSIZE_BYTES = 1024 * 1024
GARBAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
# The status a wrong_state answer names instead of the true one.
_OTHER_STATE = {
    "authorized": "captured",
    "declined": "authorized",
    "captured": "refunded",
    "voided": "authorized",
    "refunded": "captured",
    "succeeded": "pending",
}
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
        bad = self.dice.bad_answer()
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
        if bad is not None:
            await self._answer_badly(bad, scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _answer_badly(
        self, bad: BadAnswer, scope: Scope, receive: Receive, send: Send
    ) -> None:
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        start, body = held[0], b"".join(m.get("body", b"") for m in held[1:])
        if not 200 <= start["status"] < 300:
            for message in held:
                await send(message)
            return
        self.counters.bad_answers += 1
        _log.info("simulated bad answer", path=scope.get("path"), bad=bad)
        content_type = b"application/json"
        if bad == "garbage":
            body, content_type = GARBAGE, b"text/html"
        elif bad in ("wrong_amount", "wrong_state"):
            body = _misstated(body, bad)
        elif bad == "oversize":
            body += b" " * (OVERSIZE_BYTES - len(body))
        headers = [
            (name, value)
            for name, value in start.get("headers", [])
            if name not in (b"content-length", b"content-type")
        ]
        headers += [(b"content-length", str(len(body)).encode()), (b"content-type", content_type)]
        await send({**start, "headers": headers})
        if bad == "slow_body":
            half = len(body) // 2
            await send({"type": "http.response.body", "body": body[:half], "more_body": True})
            if await self._hang(receive):
                return
            body = body[half:]
        await send({"type": "http.response.body", "body": body})

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


def _misstated(body: bytes, bad: BadAnswer) -> bytes:
    answer: dict[str, Any] = msgspec.json.decode(body)
    if bad == "wrong_amount":
        answer["amount"] += 1
    else:
        answer["status"] = _OTHER_STATE[answer["status"]]
    return msgspec.json.encode(answer)
