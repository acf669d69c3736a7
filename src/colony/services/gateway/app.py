"""The gateway's ASGI app: the REST API, its documentation and the event catalogue's,
health, and the storefront."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Awaitable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import openapi_ui_bundles
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from colony.platform import faults
from colony.platform.config import Settings
from colony.platform.errors import NotFound
from colony.platform.observability.exposition import bearer_matches
from colony.platform.observability.http_telemetry import RequestTelemetry
from colony.platform.web.access_log import AccessLog
from colony.platform.web.api import openapi_document
from colony.platform.web.cors import CrossOrigin
from colony.platform.web.deadline import RequestDeadline
from colony.platform.web.limits import BodySizeLimit
from colony.platform.web.problems import (
    PublicProblems,
    install_problem_handlers,
    problem_response,
)
from colony.platform.web.routing import indexed_app
from colony.platform.web.security_headers import LOCAL_PROXIES, SecurityHeaders
from colony.services.gateway.api_orders import add_order_routes
from colony.services.gateway.api_v1 import build_api
from colony.services.gateway.auth import Authenticator
from colony.services.gateway.backends import Backends
from colony.services.gateway.console import console_routes
from colony.services.gateway.edge import EDGE_ERRORS, protect
from colony.services.gateway.storefront import storefront_routes

API_DESCRIPTION = (
    "Colony's public API. Errors are RFC 9457 problem details. Every POST accepts an"
    " Idempotency-Key header. Authenticate with a bearer token from POST /api/v1/tokens."
)
# validatorUrl null: Swagger UI would otherwise show a badge fetched from swagger.io.
_DOCS_SCRIPT = 'SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#docs", validatorUrl: null});'
_DOCS_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Colony API</title>
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script>
<script>{_DOCS_SCRIPT}</script>
</body></html>"""
_DOCS_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_DOCS_SCRIPT.encode()).digest()).decode()
DOCS_POLICY = (
    f"default-src 'none'; script-src 'self' 'sha256-{_DOCS_SCRIPT_HASH}';"
    " style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self';"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
"""The API docs page runs Swagger UI: its bundle from here, its one inline script by hash, its
requests to this API alone. Inline styles are allowed: Swagger UI sets style attributes."""
INTERNAL_PATHS = ("/admin/", "/rpc/")
"""Operators' and services' paths: answered to this machine alone, and never to a request a
proxy forwarded (behind a proxy on this host every client would look local)."""
_FORWARDED = (b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-real-ip")
CRITICAL_SERVICES = frozenset(
    {"identity", "catalog", "inventory", "cart", "orders", "payments", "delivery"}
)
"""What the gateway needs to keep the brief's promise that a buyer can sign in, browse and
buy: identity signs in; catalog and inventory show listings and what is left; cart, orders
and the checkout saga's steps (inventory, payments, delivery) take an order to the end, and
without any of them every checkout would be cancelled. Recommendations and notifications
have fallbacks (a buyer browses and buys while they are down), so they only ever make the
gateway degraded, never unready; so does a service added later until it is judged here."""


def create_app(
    backends: Backends,
    settings: Settings,
    auth: Authenticator,
    cors_origins: Collection[str] = (),
    trusted_proxies: Collection[str] = LOCAL_PROXIES,
    event_catalogue: Mapping[str, Any] | None = None,
    process_routes: Sequence[BaseRoute] = (),
) -> ASGIApp:
    """The gateway. ``cors_origins``: the origins (``https://shop.example``) whose pages may
    call the API from a browser, none by default. ``trusted_proxies``: the addresses whose
    ``X-Forwarded-Proto`` is believed, this host's by default. ``event_catalogue``: the
    AsyncAPI document of the events between the services, served at /api/asyncapi.json
    when given (the gateway cannot build it: it knows the services by their interfaces
    alone, not what each consumes). ``process_routes``: the process's own (``/metrics``,
    which answers a scraper :func:`may_scrape` admits, and ``/internal/spans``)."""
    api = build_api(backends, auth, settings.search_stale_seconds)
    add_order_routes(api, backends, settings.recommendations_timeout_seconds)
    openapi = msgspec.json.encode(
        openapi_document([api], "Colony", "1.0.0", API_DESCRIPTION, EDGE_ERRORS)
    )

    async def openapi_json(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    asyncapi = msgspec.json.encode(event_catalogue) if event_catalogue is not None else None

    async def asyncapi_json(request: Request) -> Response:
        return Response(asyncapi, media_type="application/json")

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
        # Only operators on this machine get here (see LocalOnly below).
        return Response(msgspec.json.encode(backends.dependencies()), media_type="application/json")

    routes: list[BaseRoute] = [
        *api.routes(),
        Route("/api/openapi.json", openapi_json),
        *([Route("/api/asyncapi.json", asyncapi_json)] if asyncapi is not None else []),
        Route("/api/docs", docs),
        Mount("/api/docs/assets", StaticFiles(directory=openapi_ui_bundles.swagger_ui.static_path)),
        Route("/.well-known/jwks.json", jwks),
        Route("/health/live", live),
        Route("/health/ready", ready),
        Route("/admin/dependencies", dependencies),
        *(faults.admin_routes() if settings.fault_injection else []),
        *process_routes,
        Mount(
            "/static",
            StaticFiles(directory=Path(__file__).parent / "storefront" / "static"),
            name="static",
        ),
        *storefront_routes(backends, auth, settings),
        *console_routes(backends, auth, settings, event_catalogue),
    ]
    app = indexed_app(routes)
    install_problem_handlers(app)
    # Reads answer within 5 s or not at all; writes (a checkout) get the whole budget.
    reads = ("GET", "/", min(5.0, settings.request_deadline_seconds))
    bounded = RequestDeadline(
        BodySizeLimit(app, settings.max_body_bytes), settings.request_deadline_seconds, [reads]
    )
    limited = protect(LocalOnly(bounded, INTERNAL_PATHS), settings, auth)
    edge = SecurityHeaders(
        CrossOrigin(PublicProblems(limited), cors_origins),
        policies=[("/api/docs", DOCS_POLICY)],
        trusted_proxies=trusted_proxies,
    )
    measured = RequestTelemetry(edge, "gateway")
    return AccessLog(measured) if settings.access_log else measured


def may_scrape(request: Request, token: str | None) -> bool:
    """Whether a request may read the gateway's ``/metrics``: a scraper on this machine, or
    one presenting the configured token (the gateway's port is public)."""
    return _from_this_machine(request.scope) or bearer_matches(request, token)


class LocalOnly:
    """``app``, where paths under ``prefixes`` are a 404 to anyone but this machine."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.prefixes = prefixes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function handing back the app's awaitable: no coroutine of its own per
        # request.
        if (
            scope["type"] == "http"
            and scope["path"].startswith(self.prefixes)
            and not _from_this_machine(scope)
        ):
            error = NotFound(f"No resource at {scope['path']}")
            return problem_response(error, scope["path"])(scope, receive, send)
        return self.app(scope, receive, send)


def _from_this_machine(scope: Scope) -> bool:
    if any(name in _FORWARDED for name, _ in scope["headers"]):
        return False
    client = scope.get("client")
    host = client[0] if client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
