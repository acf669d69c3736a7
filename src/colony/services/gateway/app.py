"""The gateway's ASGI app: the REST API, its documentation, health, and the storefront."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import msgspec
import openapi_ui_bundles
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from colony.platform import faults
from colony.platform.config import Settings
from colony.platform.errors import NotFound
from colony.platform.web.access_log import AccessLog
from colony.platform.web.api import openapi_document
from colony.platform.web.deadline import RequestDeadline
from colony.platform.web.limits import BodySizeLimit
from colony.platform.web.problems import install_problem_handlers
from colony.services.gateway.api_orders import add_order_routes
from colony.services.gateway.api_v1 import build_api
from colony.services.gateway.auth import Authenticator
from colony.services.gateway.backends import Backends
from colony.services.gateway.edge import EDGE_ERRORS, protect
from colony.services.gateway.storefront import storefront_routes

API_DESCRIPTION = (
    "Colony's public API. Errors are RFC 9457 problem details. Every POST accepts an"
    " Idempotency-Key header. Authenticate with a bearer token from POST /api/v1/tokens."
)
_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Colony API</title>
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#docs"});</script>
</body></html>"""
CRITICAL_SERVICES = frozenset(
    {"identity", "catalog", "inventory", "cart", "orders", "payments", "delivery"}
)
"""What the gateway needs to keep the brief's promise that a buyer can sign in, browse and
buy: identity signs in; catalog and inventory show listings and what is left; cart, orders
and the checkout saga's steps (inventory, payments, delivery) take an order to the end, and
without any of them every checkout would be cancelled. Recommendations and notifications
have fallbacks (a buyer browses and buys while they are down), so they only ever make the
gateway degraded, never unready; so does a service added later until it is judged here."""


def create_app(backends: Backends, settings: Settings, auth: Authenticator) -> ASGIApp:
    api = build_api(backends, auth, settings.search_stale_seconds)
    add_order_routes(api, backends, settings.recommendations_timeout_seconds)
    openapi = msgspec.json.encode(
        openapi_document([api], "Colony", "1.0.0", API_DESCRIPTION, EDGE_ERRORS)
    )

    async def openapi_json(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    async def docs(request: Request) -> Response:
        return HTMLResponse(_DOCS_PAGE)

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(request: Request) -> Response:
        checks = await backends.health()
        down = [name for name, up in checks.items() if not up]
        unavailable = [name for name in down if name in CRITICAL_SERVICES]
        degraded = [name for name in down if name not in CRITICAL_SERVICES]
        return JSONResponse(
            {
                "status": "not ready" if unavailable else "ready",
                "services": checks,
                "unavailable": unavailable,
                "degraded": degraded,
            },
            status_code=503 if unavailable else 200,
        )

    async def jwks(request: Request) -> Response:
        return Response(
            msgspec.json.encode(await backends.identity.jwks()), media_type="application/json"
        )

    async def dependencies(request: Request) -> Response:
        # The public edge shows its internals to operators on this machine alone.
        if not _from_this_machine(request):
            raise NotFound(f"No resource at {request.url.path}")
        return Response(msgspec.json.encode(backends.dependencies()), media_type="application/json")

    routes: list[BaseRoute] = [
        *api.routes(),
        Route("/api/openapi.json", openapi_json),
        Route("/api/docs", docs),
        Mount("/api/docs/assets", StaticFiles(directory=openapi_ui_bundles.swagger_ui.static_path)),
        Route("/.well-known/jwks.json", jwks),
        Route("/health/live", live),
        Route("/health/ready", ready),
        Route("/admin/dependencies", dependencies),
        *(faults.admin_routes() if settings.fault_injection else []),
        Mount(
            "/static",
            StaticFiles(directory=Path(__file__).parent / "storefront" / "static"),
            name="static",
        ),
        *storefront_routes(backends, auth, settings),
    ]
    app = Starlette(routes=routes)
    install_problem_handlers(app)
    # Reads answer within 5 s or not at all; writes (a checkout) get the whole budget.
    reads = ("GET", "/", min(5.0, settings.request_deadline_seconds))
    bounded = RequestDeadline(
        BodySizeLimit(app, settings.max_body_bytes), settings.request_deadline_seconds, [reads]
    )
    limited = protect(bounded, settings, auth)
    return AccessLog(limited) if settings.access_log else limited


def _from_this_machine(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
