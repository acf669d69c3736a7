"""The gateway's own surface: OpenAPI document, API docs page, health and JWKS."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

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


def string_schemas(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, list):
        for item in node:
            yield from string_schemas(item)
    elif isinstance(node, dict):
        if node.get("type") == "string":
            yield node
        for value in node.values():
            yield from string_schemas(value)


def request_parts(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """What a client sends: every schema of the API's components and parameters (the problem
    schema, which only answers, left out)."""
    for name, schema in document["components"]["schemas"].items():
        if name != "Problem":
            yield schema
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                yield parameter["schema"]


async def test_the_document_says_text_may_not_hold_nul(client):
    document = (await client.get("/api/openapi.json")).json()
    texts = [s for s in string_schemas(list(request_parts(document))) if "enum" not in s]
    assert len(texts) > 30
    for text in texts:
        # Requests with NUL anywhere are refused (PostgreSQL's text cannot hold it).
        assert "pattern" in text or "format" in text, text
        assert "pattern" not in text or re.search(text["pattern"], "a\x00b") is None, text


DIALECT_DEPENDENT = re.compile(r"\\[sSdDwWbB]")
"""Classes whose members differ between ECMA-262 (the document's regular expressions) and
Python's re (which validates requests): \\s alone differs on \\x1c-\\x1f, \\x85, \\ufeff."""


async def test_the_document_patterns_mean_what_the_code_checks(client):
    document = (await client.get("/api/openapi.json")).json()
    patterns = [s["pattern"] for s in string_schemas(document) if "pattern" in s]
    assert patterns
    for pattern in patterns:
        assert not DIALECT_DEPENDENT.search(pattern), pattern


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
