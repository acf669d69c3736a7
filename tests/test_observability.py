"""A correlation id follows a request through calls and into the events it causes."""

from __future__ import annotations

import json
import uuid

import httpx
import structlog

from colony.marketplace import running_marketplace
from colony.platform.logging import configure_logging
from conftest import settings_for, sign_up


async def test_correlation_id_reaches_the_outbox(client, marketplace):
    seller = await sign_up(client, "seller")
    correlation = uuid.uuid4().hex
    response = await client.post(
        "/api/v1/listings",
        json={"title": "Traced teapot", "category": "home-kitchen", "price_minor": 100},
        headers={**seller.headers, "x-correlation-id": correlation},
    )
    assert response.headers["x-correlation-id"] == correlation
    row = await marketplace.runtime.databases["catalog"].fetch_one(
        "SELECT headers FROM outbox WHERE topic = 'catalog.listing.created'"
        " ORDER BY seq DESC LIMIT 1"
    )
    assert json.loads(row[0])["correlation_id"] == correlation


async def test_problems_carry_the_correlation_id(client):
    response = await client.get("/api/v1/listings/missing", headers={"x-correlation-id": "c-42"})
    assert response.json()["correlation_id"] == "c-42"


async def test_access_log_lines_carry_status_and_correlation(tmp_path):
    settings = settings_for(tmp_path, access_log=True)
    async with running_marketplace(settings, serve=False) as market:
        transport = httpx.ASGITransport(app=market.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            configure_logging("info", json=True)
            try:
                with structlog.testing.capture_logs() as logs:
                    await client.get("/api/v1/listings/nope", headers={"x-correlation-id": "c-7"})
            finally:
                configure_logging("warning", json=True)
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["status"] == 404 and line["correlation_id"] == "c-7"
    assert line["path"] == "/api/v1/listings/nope" and line["duration_ms"] >= 0
