"""Every HTTP request the gateway serves: timed into its metrics, and the root of its trace.

The route is the template the router matched (``/api/v1/orders/{order_id}``), never the path:
a path holds ids, and a label per id would grow without bound. A request no route matched is
counted under ``unmatched``; a method outside HTTP's own under ``_OTHER``, as OpenTelemetry's
conventions say.

A request starts a new trace: the gateway is the public edge, and a ``traceparent`` from the
internet would let anyone decide what is sampled (or fill the store). A request that was not
sampled and ends in a 5xx is recorded all the same, after the fact.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from time import perf_counter

from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colony.platform.context import CORRELATION_HEADER
from colony.platform.observability import tracing
from colony.platform.observability.histogram import HistogramChild
from colony.platform.observability.metrics import http_server_duration
from colony.platform.observability.recorder import RecordedSpan
from colony.platform.observability.trace_store import CORRELATION_ID

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNTRACED = ("/health/", "/metrics", "/static/", "/internal/", "/admin/")
"""Probes, scrapes, files, spans arriving and operators' reads: measured, never traced (a trace
per probe would crowd the store with nothing)."""


class RequestTelemetry:
    """Times each request of ``app`` into ``http_server_request_duration_seconds`` and opens
    its trace's root span."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        # Children looked up once per label set, not built from the labels on every request.
        self._children: dict[tuple[str, str, int], HistogramChild] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        root: RecordedSpan | None = None
        ids = 0  # probes, scrapes and files: measured, never traced
        if not scope["path"].startswith(UNTRACED):
            drawn = tracing.new_root(SpanKind.SERVER, self.service)
            if isinstance(drawn, RecordedSpan):
                root = drawn
            else:
                ids = drawn
        status = 500
        correlation: str | None = None

        def record(message: Message) -> Awaitable[None]:
            # A plain function handing back send's awaitable: no coroutine of its own per send.
            nonlocal status, correlation
            if message["type"] == "http.response.start":
                status = message["status"]
                if status >= 500 or root is not None:
                    # Its trace is found by the id the answer carried (set inside, where the
                    # request entered its call context), when it is recorded.
                    correlation = _correlation_of(message)
            return send(message)

        if root is not None:
            with root:
                try:
                    await self.app(scope, receive, record)
                finally:
                    method, template = self._observe(scope, status, perf_counter() - started)
                    tracing.name_server_span(root, method, template, status, scope["path"])
                    if correlation is not None:
                        root.set_attribute(CORRELATION_ID, correlation)
            return
        # Not sampled, as nine requests in ten: the trace's ids are carried for its logs and
        # calls, and nothing is built for a span unless the answer is a 5xx.
        token = tracing.UNSAMPLED.set(ids) if ids else None
        try:
            await self.app(scope, receive, record)
        finally:
            elapsed = perf_counter() - started
            method, template = self._observe(scope, status, elapsed)
            if token is not None:
                if status >= 500:
                    # Kept, though not sampled, with the ids its log lines and calls carried.
                    ended = time.time_ns()
                    tracing.record_after(
                        f"{method} {template}",
                        ended - int(elapsed * 1e9),
                        ended,
                        SpanKind.SERVER,
                        self.service,
                        {
                            "http.request.method": method,
                            "url.path": scope["path"],
                            "http.route": template,
                            "http.response.status_code": status,
                            **({CORRELATION_ID: correlation} if correlation else {}),
                        },
                        f"answered {status}",
                    )
                tracing.UNSAMPLED.reset(token)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> tuple[str, str]:
        """Count the request under its method and route template, and say what those are."""
        method = scope["method"]
        if method not in KNOWN_METHODS:
            method = "_OTHER"
        template = getattr(scope.get("route"), "path", None) or "unmatched"
        key = (method, template, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = http_server_duration.labels(
                self.service, method, template, str(status)
            )
        child.observe(elapsed)
        return method, template


def _correlation_of(start: Message) -> str | None:
    for name, value in start.get("headers", ()):
        if name == _CORRELATION:
            return bytes(value).decode("latin-1")
    return None


_CORRELATION = CORRELATION_HEADER.encode()
