"""The composition root: every service of the marketplace, as the runtime sees it.

The only module that imports service internals; placement comes from the topology.
"""

from __future__ import annotations

from pathlib import Path

from colony.platform.eventsourcing import EVENT_STORE_MIGRATIONS
from colony.platform.runtime import ServiceDefinition
from colony.platform.saga import SAGA_MIGRATIONS
from colony.services.cart.api import CartApi
from colony.services.cart.service import CartService
from colony.services.catalog.api import CatalogApi, ListingCreated, ListingDelisted, ListingUpdated
from colony.services.catalog.service import CatalogService
from colony.services.delivery.api import DeliveryApi, ShipmentStatusChanged
from colony.services.delivery.service import DeliveryService
from colony.services.identity.api import AccountRegistered, IdentityApi
from colony.services.identity.service import IdentityService
from colony.services.inventory.api import InventoryApi
from colony.services.inventory.service import InventoryService
from colony.services.notifications.api import NotificationsApi
from colony.services.notifications.dispatcher import DeliveryGaveUp
from colony.services.notifications.service import NotificationsService
from colony.services.orders.api import OrderCancelled, OrderCompleted, OrderRefunded, OrdersApi
from colony.services.orders.service import OrdersService
from colony.services.payments.api import PaymentsApi
from colony.services.payments.service import PaymentsService
from colony.services.recommendations.api import RecommendationsApi
from colony.services.recommendations.service import RecommendationsService

_SERVICES = Path(__file__).parent / "services"


def _migrations(name: str) -> Path:
    return _SERVICES / name / "migrations"


def service_definitions() -> list[ServiceDefinition]:
    """Each service with what it consumes (the runtime checks it against the service's
    subscriptions): the event catalogue, ``/api/asyncapi.json``, is built from it."""
    return [
        ServiceDefinition(
            "identity", IdentityApi, IdentityService, _migrations("identity"), consumes=()
        ),
        ServiceDefinition(
            "catalog", CatalogApi, CatalogService, _migrations("catalog"), consumes=()
        ),
        ServiceDefinition(
            "inventory",
            InventoryApi,
            InventoryService,
            _migrations("inventory"),
            depends_on=("catalog",),
            consumes=(ListingCreated,),
        ),
        ServiceDefinition(
            "cart",
            CartApi,
            CartService,
            _migrations("cart"),
            depends_on=("catalog", "inventory"),
            consumes=(ListingDelisted, ListingUpdated),
        ),
        ServiceDefinition(
            "payments",
            PaymentsApi,
            PaymentsService,
            _migrations("payments"),
            consumes=(ShipmentStatusChanged,),
        ),
        ServiceDefinition(
            "delivery",
            DeliveryApi,
            DeliveryService,
            _migrations("delivery"),
            consumes=(OrderCompleted, OrderCancelled),
        ),
        ServiceDefinition(
            "orders",
            OrdersApi,
            OrdersService,
            _migrations("orders"),
            depends_on=("catalog", "inventory", "cart", "payments", "delivery"),
            components=(("eventsourcing", EVENT_STORE_MIGRATIONS), ("saga", SAGA_MIGRATIONS)),
            consumes=(),
        ),
        ServiceDefinition(
            "notifications",
            NotificationsApi,
            NotificationsService,
            _migrations("notifications"),
            # DeliveryGaveUp is its own: what a dead delivery's dead letter carries, applied
            # when the letter is replayed, never published.
            consumes=(
                AccountRegistered,
                OrderCompleted,
                OrderCancelled,
                OrderRefunded,
                ShipmentStatusChanged,
                DeliveryGaveUp,
            ),
        ),
        ServiceDefinition(
            "recommendations",
            RecommendationsApi,
            RecommendationsService,
            _migrations("recommendations"),
            consumes=(OrderCompleted,),
        ),
    ]


SERVICE_NAMES = (
    "identity",
    "catalog",
    "inventory",
    "cart",
    "payments",
    "delivery",
    "orders",
    "notifications",
    "recommendations",
)

OPERATOR_IDENTITIES = ("verify", "seed", "cli")
"""The operator's commands that call services (``colony verify``, ``colony seed``, the rest of
the CLI), each an identity of its own in the services' lists of allowed callers."""
IDENTITIES = (*SERVICE_NAMES, "gateway", *OPERATOR_IDENTITIES)
"""Every identity that signs calls, and so has a key in a keys directory."""
