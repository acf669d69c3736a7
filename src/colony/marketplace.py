"""The whole marketplace assembled: the runtime with every service, and the gateway in front."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp

from colony.composition import service_definitions
from colony.distributed.plan import GATEWAY
from colony.platform.config import Settings
from colony.platform.errors import ColonyError
from colony.platform.messaging.asyncapi import asyncapi_document
from colony.platform.observability import tracing
from colony.platform.observability.span_shipping import spans_route
from colony.platform.observability.trace_api import trace_routes
from colony.platform.runtime import Runtime, Topology
from colony.platform.trust import TokenVerifier
from colony.platform.web.server import HttpServer
from colony.services.cart.api import CartApi
from colony.services.catalog.api import CatalogApi
from colony.services.delivery.api import DeliveryApi
from colony.services.gateway.app import create_app, may_scrape
from colony.services.gateway.auth import Authenticator
from colony.services.gateway.backends import Backends
from colony.services.identity.api import IdentityApi
from colony.services.inventory.api import InventoryApi
from colony.services.notifications.api import NotificationsApi
from colony.services.orders.api import OrdersApi
from colony.services.payments.api import PaymentsApi
from colony.services.recommendations.api import RecommendationsApi


@dataclass
class Marketplace:
    runtime: Runtime
    backends: Backends
    app: ASGIApp
    server: HttpServer | None = None

    @property
    def url(self) -> str:
        return self.server.url if self.server else ""


async def _health(runtime: Runtime) -> dict[str, bool]:
    """Whether each service answers, all asked at once within the readiness bound: the
    probe takes as long as the slowest answer or the bound, never the sum of them."""
    names = list(runtime.definitions)
    timeout = runtime.settings.ready_timeout_seconds
    answers = await asyncio.gather(
        *(runtime.ping(name, timeout) for name in names), return_exceptions=True
    )
    for answer in answers:
        if isinstance(answer, BaseException) and not isinstance(answer, ColonyError):
            raise answer
    return {name: answer is None for name, answer in zip(names, answers, strict=True)}


@contextlib.asynccontextmanager
async def running_marketplace(
    settings: Settings,
    topology: Topology | None = None,
    serve: bool = True,
    interpose: Callable[[str, Any], Any] | None = None,
) -> AsyncIterator[Marketplace]:
    """Start every service the topology places here, and the gateway (served if ``serve``).
    ``interpose`` wraps every client the runtime hands out, the gateway's included (see
    :class:`Runtime`): where a fault-injection harness stands between callers and callees."""
    # The runtime's own calls are the gateway's: it calls every service for the people it serves.
    runtime = Runtime(
        settings, service_definitions(), topology, interpose=interpose, identity=GATEWAY
    )
    await runtime.start()
    try:
        backends = Backends(
            identity=runtime.client(IdentityApi),
            catalog=runtime.client(CatalogApi),
            inventory=runtime.client(InventoryApi),
            cart=runtime.client(CartApi),
            orders=runtime.client(OrdersApi),
            payments=runtime.client(PaymentsApi),
            delivery=runtime.client(DeliveryApi),
            notifications=runtime.client(NotificationsApi),
            recommendations=runtime.client(RecommendationsApi),
            health=lambda: _health(runtime),
            dependencies=runtime.resilience.snapshot,
            traces=tracing.STORE,
            operations=runtime.operations,
            topology=runtime.topology,
        )
        auth = Authenticator(backends.identity)
        await auth.refresh()
        catalogue = asyncapi_document(runtime.definitions.values())
        process_routes = [
            runtime.metrics_route(lambda request: may_scrape(request, settings.metrics_token)),
            spans_route(
                tracing.STORE,
                TokenVerifier(GATEWAY, runtime.keys),
                lambda request: may_scrape(request, None),
            ),
            *trace_routes(tracing.STORE),
        ]
        app = create_app(
            backends, settings, auth, event_catalogue=catalogue, process_routes=process_routes
        )
        marketplace = Marketplace(runtime, backends, app)
        if serve:
            marketplace.server = HttpServer(marketplace.app, settings.host, settings.port)
            await marketplace.server.start()
        try:
            yield marketplace
        finally:
            if marketplace.server:
                await marketplace.server.stop()
    finally:
        await runtime.stop()
