"""``/metrics``: what a checkout leaves in the Prometheus text every process serves, that
labels stay bounded (route templates, never ids), and that the gateway's figures are for a
scraper it admits alone."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request

from checkout_helpers import add_to_cart, place, wait_for
from colony.services.gateway.app import may_scrape
from conftest import list_product, sign_up


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v
        for n, have, v in samples(text)
        if n == name and all(have.get(k) == want for k, want in labels.items())
    )


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text


async def test_a_checkout_shows_in_every_family(client, marketplace) -> None:
    before = await scrape(client)
    seller = await sign_up(client, "seller")
    buyer = await sign_up(client, "buyer")
    listing = await list_product(client, seller, stock=5)
    await add_to_cart(client, buyer, listing)
    order_id = await place(client, buyer)
    assert (await wait_for(client, buyer, order_id))["status"] == "completed"
    after = await scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # The edge: the checkout's route by its template, with its status.
    assert (
        grew(
            "http_server_request_duration_seconds_count",
            service="gateway",
            http_request_method="POST",
            http_route="/api/v1/orders",
            http_response_status_code="201",
        )
        == 1
    )
    # Events: published by orders, applied by delivery.
    assert grew("messaging_client_published_messages_total", service="orders") >= 1
    assert (
        grew(
            "messaging_process_duration_seconds_count",
            service="delivery",
            messaging_destination_name="orders.order.completed",
            outcome="ok",
        )
        >= 1
    )
    # The saga, step by step, and its end.
    assert grew("colony_sagas_finished_total", saga="checkout", outcome="completed") == 1
    assert (
        grew("colony_saga_step_duration_seconds_count", saga="checkout", direction="forward") >= 3
    )
    # Calls between services, as served (in either binding) and, over HTTP, as made.
    assert (
        grew(
            "rpc_server_call_duration_seconds_count",
            service="payments",
            rpc_method="capture",
            rpc_caller="orders",
            outcome="ok",
        )
        >= 1
    )
    if marketplace.runtime.topology.placement("payments").binding == "http":
        made = grew(
            "rpc_client_call_duration_seconds_count",
            service="orders",
            rpc_peer="payments",
            rpc_method="capture",
            outcome="ok",
        )
        assert made >= 1
    # The provider's answers.
    assert grew("colony_payment_provider_outcomes_total", operation="authorize", outcome="ok") == 1
    assert grew("colony_payment_provider_outcomes_total", operation="capture", outcome="ok") == 1
    # State read at the scrape: every local service's outbox, the provider's breaker.
    names = {name for name, _, _ in samples(after)}
    for name in (
        "colony_outbox_pending",
        "colony_outbox_oldest_pending_seconds",
        "colony_dead_letters_open",
        "colony_breaker_state",
        "colony_dependency_calls_total",
        "process_cpu_seconds_total",
    ):
        assert name in names, name
    outboxes = {
        labels["service"] for n, labels, _ in samples(after) if n == "colony_outbox_pending"
    }
    assert {"orders", "payments", "inventory", "delivery"} <= outboxes
    closed = value(after, "colony_breaker_state", dependency="payment-provider", state="closed")
    assert closed >= 1


async def test_labels_name_routes_never_ids(client) -> None:
    ids = [uuid.uuid4().hex for _ in range(3)]
    for listing_id in ids:
        await client.get(f"/api/v1/listings/{listing_id}")
    await client.get(f"/no/such/page/{ids[0]}")
    text = await scrape(client)
    assert not any(listing_id in text for listing_id in ids)
    assert (
        value(
            text,
            "http_server_request_duration_seconds_count",
            http_route="/api/v1/listings/{listing_id}",
            http_response_status_code="404",
        )
        >= 3
    )
    assert value(text, "http_server_request_duration_seconds_count", http_route="unmatched") >= 1


def request_from(host: str, headers: dict[str, str] | None = None) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/metrics",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (host, 40000),
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("host", "headers", "token", "admitted"),
    [
        ("127.0.0.1", {}, None, True),
        ("::1", {}, None, True),
        ("203.0.113.9", {}, None, False),
        ("203.0.113.9", {"authorization": "Bearer s3cret-scrape"}, "s3cret-scrape", True),
        ("203.0.113.9", {"authorization": "Bearer wrong"}, "s3cret-scrape", False),
        ("203.0.113.9", {"authorization": "Bearer "}, None, False),
        # Forwarded by a proxy on this machine: the client is not this machine.
        ("127.0.0.1", {"x-forwarded-for": "203.0.113.9"}, None, False),
    ],
)
def test_the_gateway_admits_a_scraper_on_this_machine_or_with_the_token(
    host: str, headers: dict[str, str], token: str | None, admitted: bool
) -> None:
    assert may_scrape(request_from(host, headers), token) is admitted


async def test_a_scraper_the_gateway_does_not_admit_gets_a_404(marketplace) -> None:
    transport = httpx.ASGITransport(app=marketplace.app, client=("203.0.113.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as client:
        response = await client.get("/metrics")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "colony_" not in response.text


def test_the_lock_free_histogram_counts_as_prometheus_reads_it() -> None:
    """A value on a bound falls in that bound's bucket (``le``), buckets are cumulative,
    ``_count`` is the +Inf bucket and ``_sum`` the total; a wrong number of labels is refused."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from colony.platform.observability.histogram import Histogram

    registry = CollectorRegistry()
    family = Histogram("waits_seconds", "Waits.", ["service"], (0.1, 1.0, 0.01), registry)
    child = family.labels("orders")
    for value in (0.005, 0.01, 0.5, 1.0, 7.0):
        child.observe(value)
    assert family.labels("orders") is child
    (parsed,) = text_string_to_metric_families(generate_latest(registry).decode())
    samples = {(s.name, s.labels.get("le")): s.value for s in parsed.samples}
    assert samples[("waits_seconds_bucket", "0.01")] == 2
    assert samples[("waits_seconds_bucket", "0.1")] == 2
    assert samples[("waits_seconds_bucket", "1.0")] == 4
    assert samples[("waits_seconds_bucket", "+Inf")] == 5
    assert samples[("waits_seconds_count", None)] == 5
    assert samples[("waits_seconds_sum", None)] == pytest.approx(8.515)
    with pytest.raises(ValueError):
        family.labels("orders", "extra")
