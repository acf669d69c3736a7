"""The whole marketplace assembled: the runtime with every service, and the gateway in front."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.types import ASGIApp

from colony.composition import service_definitions
from colony.platform.config import Settings
from colony.platform.errors import ColonyError
from colony.platform.runtime import Runtime, Topology
from colony.platform.web.server import HttpServer
from colony.services.cart.api import CartApi
from colony.services.catalog.api import CatalogApi
from colony.services.delivery.api import DeliveryApi
from colony.services.gateway.app import create_app
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
    checks = {}
    for name in runtime.definitions:
        try:
            await runtime.ping(name)
            checks[name] = True
        except ColonyError:
            checks[name] = False
    return checks


@contextlib.asynccontextmanager
async def running_marketplace(
    settings: Settings, topology: Topology | None = None, serve: bool = True
) -> AsyncIterator[Marketplace]:
    """Start every service the topology places here, and the gateway (served if ``serve``)."""
    runtime = Runtime(settings, service_definitions(), topology)
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
        )
        auth = Authenticator(backends.identity)
        await auth.refresh()
        marketplace = Marketplace(runtime, backends, create_app(backends, settings, auth))
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
