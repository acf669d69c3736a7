"""The storefront: server-rendered pages for buyers and sellers.

Plain HTML forms over the same services and the same validation (the API's msgspec Structs)
as the JSON API; no JavaScript is needed (an order's page keeps itself current with a meta
refresh). One module per area of the site.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from colony.platform.config import Settings
from colony.services.gateway.auth import Authenticator
from colony.services.gateway.backends import Backends
from colony.services.gateway.storefront import (
    account,
    browse,
    cart,
    checkout,
    notifications,
    orders,
    sales,
    seller,
)
from colony.services.gateway.storefront.site import Site


def storefront_routes(
    backends: Backends, auth: Authenticator, settings: Settings
) -> list[BaseRoute]:
    site = Site(backends, auth, settings)
    return [
        *browse.routes(site),
        *account.routes(site),
        *cart.routes(site),
        *checkout.routes(site),
        *orders.routes(site),
        *seller.routes(site),
        *sales.routes(site),
        *notifications.routes(site),
    ]
