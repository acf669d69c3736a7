"""OWASP API9:2023 Improper Inventory Management, checked on the gateway: every route it serves
is in the OpenAPI document or named here as not part of the API, every documented operation
is served, and the operators' and services' routes cannot be reached from outside."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from colony.marketplace import Marketplace
from colony.services.gateway.app import create_app
from colony.services.gateway.auth import Authenticator

ELSEWHERE = "203.0.113.7"  # a documentation address: not this host's
API_PREFIX = "/api/v1/"
NOT_API = {
    # The operations console: pages for a signed-in admin (the storefront's session and CSRF)
    # that read the services through their operations endpoints; not API operations.
    "/console": "the console's service map and event catalogue, a page for admins",
    "/console/traces": "the console's trace search, a page for admins",
    "/console/traces/{trace_id}": "one trace's waterfall, a page for admins",
    "/console/sagas": "the console's sagas by state, a page for admins",
    "/console/sagas/{service}/{saga_id}": "one saga's timeline and traces, a page for admins",
    "/console/dead-letters": "the console's dead letters of every service, a page for admins",
    "/console/dead-letters/{service}/{letter_id}": "one dead letter, a page for admins",
    "/console/dead-letters/{service}/{letter_id}/replay": "an admin's replay form (CSRF)",
    "/console/outboxes": "the console's outboxes and consumers, a page for admins",
    "/console/faults": "the console's chaos reports and fault injection, a page for admins",
    "/console/faults/inject": "an admin's form injecting a fault, when injection is on (CSRF)",
    "/console/faults/heal": "an admin's form healing a fault (CSRF)",
    "/console/faults/reports/{folder}/{name}": "a chaos report, read-only, for admins",
    "/api/openapi.json": "the API's document itself",
    "/api/asyncapi.json": "the event catalogue's document (AsyncAPI): events, not operations",
    "/api/docs": "the document, rendered for people",
    "/.well-known/jwks.json": "token keys where JWT libraries look (also GET /api/v1/jwks)",
    "/health/live": "liveness probe",
    "/health/ready": "readiness probe",
    "/admin/dependencies": "operators' view of breakers, to this machine alone",
    "/metrics": "Prometheus's scrape, to this machine or a scraper holding the metrics token",
    "/internal/spans": "spans from the marketplace's processes (a service token) for the console",
    "/admin/traces": "the trace store as JSON, to this machine alone",
    "/admin/traces/{trace_id}": "one trace's spans as JSON, to this machine alone",
}
"""Routes the gateway serves that are not API operations, and what each is."""
STATIC_MOUNTS = {
    "/static": "the storefront's style sheet",
    "/api/docs/assets": "Swagger UI",
    "/console/static": "the console's style sheet and the script that keeps its pages live",
}
STOREFRONT = "colony.services.gateway.storefront."


def router_of(app: ASGIApp) -> Starlette:
    """The Starlette app inside the gateway's middleware."""
    while not isinstance(app, Starlette):
        app = app.app  # type: ignore[attr-defined]
    return app


def served(app: ASGIApp) -> tuple[dict[str, set[str]], dict[str, BaseRoute]]:
    """The gateway's routes: path -> methods (HEAD, which comes with GET, left out), and
    its mounts by prefix."""
    routes: dict[str, set[str]] = {}
    mounts: dict[str, BaseRoute] = {}
    for route in router_of(app).routes:
        if isinstance(route, Mount):
            mounts[route.path] = route
        elif isinstance(route, Route):
            routes.setdefault(route.path, set()).update((route.methods or set()) - {"HEAD"})
    return routes, mounts


def storefront_paths(app: ASGIApp) -> set[str]:
    return {
        route.path
        for route in router_of(app).routes
        if isinstance(route, Route) and route.endpoint.__module__.startswith(STOREFRONT)
    }


async def documented(client: httpx.AsyncClient) -> dict[str, set[str]]:
    document = (await client.get("/api/openapi.json")).json()
    return {path: {m.upper() for m in item} for path, item in document["paths"].items()}


async def test_every_route_is_documented_or_named_as_not_api(client, marketplace):
    routes, mounts = served(marketplace.app)
    document = await documented(client)
    pages = storefront_paths(marketplace.app)
    assert len(pages) >= 10 and len(document) >= 20  # the walks found something at all
    for path, methods in routes.items():
        if path.startswith(API_PREFIX):
            assert document.get(path) == methods, f"{path}: served {methods}, documented"
        elif path in pages:
            assert not path.startswith("/api/"), f"a storefront page inside the API: {path}"
        else:
            assert path in NOT_API, f"{sorted(methods)} {path} is neither API nor named here"
    assert set(mounts) == set(STATIC_MOUNTS)
    for path, methods in document.items():
        assert routes.get(path) == methods, f"{path}: documented {methods}, served"
    assert set(NOT_API) <= set(routes)  # nothing listed here that is gone


async def test_every_documented_operation_answers_and_nothing_else_does(client):
    """Each documented path answers its methods with something other than 404/405, and a
    method it does not document with a 405 naming those it does."""
    document = await documented(client)
    for path, methods in document.items():
        concrete = path.replace("{", "").replace("}", "")
        for method in methods:
            answer = await client.request(method, concrete)
            assert answer.status_code != 405, (method, path)
            if answer.status_code == 404:  # no such thing, but not no such route
                assert not answer.json()["detail"].startswith("No resource at"), (method, path)
        undeclared = {"GET", "POST", "PUT", "PATCH", "DELETE"} - methods
        for method in sorted(undeclared):
            answer = await client.request(method, concrete)
            assert answer.status_code == 405, (method, path, answer.text)
            allowed = {m.strip() for m in answer.headers["allow"].split(",")} - {"HEAD"}
            assert allowed == methods, (method, path)


def gateway(market: Marketplace, **overrides: Any) -> ASGIApp:
    settings = msgspec.structs.replace(market.runtime.settings, **overrides)
    return create_app(market.backends, settings, Authenticator(market.backends.identity))


def client_at(app: ASGIApp, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://colony.test")


INTERNAL = [
    ("GET", "/admin/dependencies"),
    ("GET", "/admin/faults"),
    ("DELETE", "/admin/faults"),
    ("POST", "/rpc/catalog/search"),
    ("POST", "/rpc/identity/register"),
]
PROXIED = [
    {"x-forwarded-for": "198.51.100.9"},
    {"forwarded": "for=198.51.100.9"},
    {"x-real-ip": "198.51.100.9"},
    {"x-forwarded-proto": "https"},
]


@pytest.mark.parametrize(("method", "path"), INTERNAL)
async def test_internal_routes_are_not_there_for_outsiders(marketplace, method, path):
    app = gateway(marketplace, fault_injection=True)  # as in a chaos run, its widest
    async with client_at(app, ELSEWHERE) as outside, client_at(app, "127.0.0.1") as local:
        answer = await outside.request(method, path)
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        # Through a proxy on this host, every client looks local: what it forwarded says not.
        for forwarded in PROXIED:
            assert (await local.request(method, path, headers=forwarded)).status_code == 404
        if path.startswith("/admin/"):  # an operator on this machine still gets them
            assert (await local.request(method, path)).status_code == 200
        else:  # services' own routes are on their own ports, never on the gateway
            assert (await local.request(method, path)).status_code == 404


async def test_no_route_of_the_services_is_served_by_the_gateway(marketplace):
    routes, mounts = served(gateway(marketplace, fault_injection=True))
    assert not [p for p in [*routes, *mounts] if p.startswith("/rpc")]
    internal = [p for p in routes if p.startswith("/admin/")]
    assert internal and all(p in NOT_API or p.startswith("/admin/faults") for p in internal)
