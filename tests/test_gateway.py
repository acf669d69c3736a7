"""The gateway's own surface: OpenAPI document, API docs page, health and JWKS."""

from __future__ import annotations

import httpx
from openapi_spec_validator import validate

from colony.composition import SERVICE_NAMES


async def test_openapi_document_is_valid_and_complete(client, marketplace):
    document = (await client.get("/api/openapi.json")).json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert ("GET", "/api/v1/listings") in operations
    assert ("POST", "/api/v1/cart/items") in operations
    post = document["paths"]["/api/v1/listings"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    assert "422" in post["responses"] and "413" in post["responses"]
    search = document["paths"]["/api/v1/listings"]["get"]
    assert {p["name"] for p in search["parameters"]} >= {"q", "category", "page", "page_size"}


async def test_docs_page_and_its_assets_are_served(client):
    page = await client.get("/api/docs")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    script = await client.get("/api/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000


async def test_liveness_and_readiness(client):
    assert (await client.get("/health/live")).json() == {"status": "alive"}
    ready = (await client.get("/health/ready")).json()
    assert ready["status"] == "ready"
    assert set(ready["services"]) == set(SERVICE_NAMES)


async def test_jwks_is_published(client):
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert keys and all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and "d" not in k for k in keys)


async def test_the_gateway_shows_its_dependencies_to_this_machine_alone(client, marketplace):
    await client.get("/api/v1/categories")
    shown = await client.get("/admin/dependencies")
    assert shown.status_code == 200
    names = {dependency["name"] for dependency in shown.json()}
    if marketplace.runtime.topology.placement("catalog").binding == "http":
        assert "catalog" in names  # each with its breakers' state
        catalog = next(d for d in shown.json() if d["name"] == "catalog")
        assert catalog["state"] == "closed" and catalog["calls"] >= 1
    elsewhere = httpx.ASGITransport(app=marketplace.app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=elsewhere, base_url="http://colony.test") as outside:
        assert (await outside.get("/admin/dependencies")).status_code == 404
