"""The storefront: server-rendered pages for buyers and sellers."""

from __future__ import annotations

from starlette.routing import BaseRoute

from colony.platform.config import Settings
from colony.services.gateway.auth import Authenticator
from colony.services.gateway.backends import Backends


def storefront_routes(backends: Backends, auth: Authenticator, settings: Settings) -> list[BaseRoute]:
    return []
