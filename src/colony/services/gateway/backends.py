"""The services behind the gateway, as clients bound by the runtime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from colony.platform.observability.trace_store import TraceStore
from colony.platform.runtime.operations import OperationsApi
from colony.platform.runtime.topology import Topology
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
    traces: TraceStore = field(default_factory=TraceStore)
    """The spans the console shows: the trace store of the gateway's process."""
    operations: Callable[[str], OperationsApi] | None = None
    """Each service's operations endpoint (outbox, consumer, dead letters, sagas) by the
    service's name, asked as the gateway for an admin; None leaves the console without them."""
    topology: Topology = field(default_factory=Topology.one_process)
    """Where each service runs: in this process, or at the URLs of its replicas."""
