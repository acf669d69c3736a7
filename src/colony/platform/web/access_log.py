"""One structured log line per request, when ``COLONY_ACCESS_LOG`` asks for it.

Off by default: on this class of machine an access log costs about a quarter of a small
request's time, and the correlation id already ties errors to their requests.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colony.platform.logging import get_logger

_log = get_logger("access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        correlation = ""

        async def record(message: Message) -> None:
            nonlocal status, correlation
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"x-correlation-id":
                        correlation = value.decode()
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            _log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                correlation_id=correlation or None,
            )
