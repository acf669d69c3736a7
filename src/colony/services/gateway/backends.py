"""The services behind the gateway, as clients bound by the runtime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from colony.services.cart.api import CartApi
from colony.services.catalog.api import CatalogApi
from colony.services.delivery.api import DeliveryApi
from colony.services.identity.api import IdentityApi
from colony.services.inventory.api import InventoryApi
from colony.services.notifications.api import NotificationsApi
from colony.services.orders.api import OrdersApi
from colony.services.payments.api import PaymentsApi
from colony.services.recommendations.api import RecommendationsApi


@dataclass(frozen=True)
class Backends:
    identity: IdentityApi
    catalog: CatalogApi
    inventory: InventoryApi
    cart: CartApi
    orders: OrdersApi
    payments: PaymentsApi
    delivery: DeliveryApi
    notifications: NotificationsApi
    recommendations: RecommendationsApi
    health: Callable[[], Awaitable[dict[str, bool]]]
    dependencies: Callable[[], list[dict[str, Any]]] = list
    """The state of the gateway's calls to each service: breakers, budgets, bulkheads."""
