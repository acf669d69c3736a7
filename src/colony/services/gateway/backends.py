"""The services behind the gateway, as clients bound by the runtime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from colony.services.cart.api import CartApi
from colony.services.catalog.api import CatalogApi
from colony.services.identity.api import IdentityApi
from colony.services.inventory.api import InventoryApi


@dataclass(frozen=True)
class Backends:
    identity: IdentityApi
    catalog: CatalogApi
    inventory: InventoryApi
    cart: CartApi
    health: Callable[[], Awaitable[dict[str, bool]]]
