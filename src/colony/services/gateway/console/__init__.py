"""The operations console at ``/console``, for admin accounts: the service map beside the
event catalogue, traces, sagas, dead letters, outboxes and consumers, and faults.

Server-rendered pages like the storefront's, on its session and its CSRF protection, one
module per page; they stay current by themselves (see :mod:`.site`). Everything is read
through the gateway's :class:`Backends`: the services' operations endpoints (the same ones
``colony dlq`` and ``colony verify`` ask), the trace store, the topology and this process's
breakers, so the console works the same in every topology.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from colony.platform.config import Settings
from colony.services.gateway.auth import Authenticator
from colony.services.gateway.backends import Backends
from colony.services.gateway.console import (
    dead_letters,
    faults,
    outboxes,
    sagas,
    service_map,
    traces,
)
from colony.services.gateway.console.site import HERE, Console

STATIC_PATH = "/console/static"


def console_routes(
    backends: Backends,
    auth: Authenticator,
    settings: Settings,
    event_catalogue: Mapping[str, Any] | None = None,
) -> list[BaseRoute]:
    console = Console(backends, auth, settings, event_catalogue)
    return [
        *service_map.routes(console),
        *traces.routes(console),
        *sagas.routes(console),
        *dead_letters.routes(console),
        *outboxes.routes(console),
        *faults.routes(console),
        Mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="console-static"),
    ]
