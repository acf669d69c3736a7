"""Bounds on a request's body while it streams in: its size (413 past it) and the time it may
take to arrive (408 past it).

The time bound is for the client that sends a byte now and then to hold a connection and a
task for as long as it likes; the server's own header timeout (:mod:`server`) stops the same
client before its headers are done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colony.platform.errors import ColonyError, PayloadTooLarge
from colony.platform.web.problems import problem_response

BODY_READ_SECONDS = 5.0
"""The whole body, from the first wait for it to its last byte: 64 KiB in 5 s is 13 KB/s,
which any client that means to send it manages."""


class RequestTimeout(ColonyError):
    status = 408
    slug = "request-timeout"
    title = "The request did not arrive in time"


class BodySizeLimit:
    def __init__(
        self, app: ASGIApp, max_bytes: int, read_seconds: float = BODY_READ_SECONDS
    ) -> None:
        if read_seconds <= 0:
            raise ValueError("a body read timeout must be positive")
        self.app = app
        self.max_bytes = max_bytes
        self.read_seconds = read_seconds

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function handing back the app's awaitable: no coroutine of its own per
        # request.
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    return self._reject(scope, receive, send)
                break
        received = 0
        body_done = False
        give_up_at: float | None = None
        loop = asyncio.get_running_loop()

        async def limited_receive() -> Message:
            nonlocal received, body_done, give_up_at
            if body_done:  # later waits are for the client to hang up: not ours to bound
                return await receive()
            if give_up_at is None:
                give_up_at = loop.time() + self.read_seconds
            try:
                async with asyncio.timeout_at(give_up_at):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"The body did not arrive within {self.read_seconds:g} s."
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self._detail())
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        return self.app(scope, limited_receive, send)

    def _detail(self) -> str:
        return f"The body may be at most {self.max_bytes} bytes."

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(PayloadTooLarge(self._detail()), scope.get("path"))
        await response(scope, receive, send)
