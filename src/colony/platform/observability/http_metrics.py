"""Rate, errors and duration of every HTTP request a process serves, by route template.

The route is the template the router matched (``/api/v1/orders/{order_id}``), never the path:
a path holds ids, and a label per id would grow without bound. A request no route matched is
counted under ``unmatched``; a method outside HTTP's own under ``_OTHER``, as OpenTelemetry's
conventions say.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colony.platform.observability.metrics import http_server_duration

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """Times each request of ``app`` into ``http_server_request_duration_seconds``."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        # Children looked up once per label set: .labels() takes a lock and builds a tuple.
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "_OTHER"
            key = (method, template, status)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = http_server_duration.labels(
                    self.service, method, template, str(status)
                )
            child.observe(elapsed)
