"""The composition root: every service of the marketplace, as the runtime sees it.

The only module that imports service internals; placement comes from the topology.
"""

from __future__ import annotations

from pathlib import Path

from colony.platform.runtime import ServiceDefinition
from colony.services.cart.api import CartApi
from colony.services.cart.service import CartService
from colony.services.catalog.api import CatalogApi
from colony.services.catalog.service import CatalogService
from colony.services.identity.api import IdentityApi
from colony.services.identity.service import IdentityService
from colony.services.inventory.api import InventoryApi
from colony.services.inventory.service import InventoryService

_SERVICES = Path(__file__).parent / "services"


def service_definitions() -> list[ServiceDefinition]:
    return [
        ServiceDefinition(
            "identity", IdentityApi, IdentityService, _SERVICES / "identity" / "migrations"
        ),
        ServiceDefinition(
            "catalog", CatalogApi, CatalogService, _SERVICES / "catalog" / "migrations"
        ),
        ServiceDefinition(
            "inventory",
            InventoryApi,
            InventoryService,
            _SERVICES / "inventory" / "migrations",
            depends_on=("catalog",),
        ),
        ServiceDefinition(
            "cart",
            CartApi,
            CartService,
            _SERVICES / "cart" / "migrations",
            depends_on=("catalog", "inventory"),
        ),
    ]


SERVICE_NAMES = ("identity", "catalog", "inventory", "cart")
