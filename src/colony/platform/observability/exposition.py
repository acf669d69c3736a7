"""``GET /metrics``: this process's metrics in Prometheus's text format.

Served on every process's own port. On a service's port the NetworkPolicies admit only its
callers and the scraper; the gateway's port is public, so there the route answers only a
scraper on this machine, or one presenting ``COLONY_METRICS_TOKEN`` as a bearer token
(Prometheus's ``authorization.credentials_file``): the figures tell an attacker which
dependencies are failing.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import NotFound
from colony.platform.observability.metrics import REGISTRY

_process_collector: ProcessCollector | None = None


def collect_process_metrics() -> None:
    """CPU, memory and open files of this process (``process_*``), once per process."""
    global _process_collector
    if _process_collector is None:
        _process_collector = ProcessCollector(registry=REGISTRY)


def metrics_route(
    refresh: Callable[[], Awaitable[None]] | None = None,
    allowed: Callable[[Request], bool] | None = None,
    state: CollectorRegistry | None = None,
) -> Route:
    """The route: the process's :data:`REGISTRY`, then ``state`` once ``refresh`` has read
    it; ``allowed`` says whether this request may see them (otherwise 404, as if there were
    none)."""
    collect_process_metrics()

    async def metrics(request: Request) -> Response:
        if allowed is not None and not allowed(request):
            raise NotFound(f"No resource at {request.url.path}")
        body = generate_latest(REGISTRY)
        if state is not None:
            if refresh is not None:
                await refresh()
            body += generate_latest(state)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", metrics, methods=["GET"])


def bearer_matches(request: Request, token: str | None) -> bool:
    """Whether the request presents ``token`` as its bearer token (compared in constant time)."""
    if not token:
        return False
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip(), token)
