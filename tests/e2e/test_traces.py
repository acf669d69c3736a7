"""A checkout from two sellers is one trace in every topology: in the multi-process ones, with
spans from at least eight processes (the gateway, orders, inventory, payments, the provider,
delivery, notifications and cart), the far side of JetStream included, all in the console's
store in the gateway."""

from __future__ import annotations

from typing import Any

import httpx

from checkout_helpers import add_to_cart, place, wait_for
from conftest import list_product, sign_up
from e2e.deployment import Deployment
from waiting import eventually

EIGHT = {
    "gateway",
    "orders",
    "inventory",
    "payments",
    "payment-provider",
    "delivery",
    "notifications",
    "cart",
}


async def test_a_checkout_from_two_sellers_is_one_trace(
    api: httpx.AsyncClient, deployment: Deployment
):
    buyer = await sign_up(api, "buyer")
    for _ in range(2):
        seller = await sign_up(api, "seller")
        await add_to_cart(api, buyer, await list_product(api, seller, stock=3))
    order_id = await place(api, buyer)
    assert (await wait_for(api, buyer, order_id, within=60))["status"] == "completed"

    async def checkout_trace() -> list[dict[str, Any]] | None:
        found = (await api.get("/admin/traces", params={"order_id": order_id})).json()
        roots = [t for t in found if t["root_name"] == "POST /api/v1/orders"]
        if not roots:
            return None
        spans = (await api.get(f"/admin/traces/{roots[0]['trace_id']}")).json()
        services = {span["service"] for span in spans}
        return spans if EIGHT - {"payment-provider"} <= services else None

    try:
        spans = await eventually(checkout_trace, within=30, every=0.5)
    except AssertionError:
        found = (await api.get("/admin/traces", params={"order_id": order_id})).json()
        raise AssertionError([(t["root_name"], t["services"]) for t in found]) from None
    assert len({span["trace_id"] for span in spans}) == 1
    ids = {span["span_id"] for span in spans}
    assert [s["name"] for s in spans if s["parent_span_id"] not in ids] == ["POST /api/v1/orders"]
    # Both sellers' shipments were made under the order's completion, across the broker.
    applied = [s for s in spans if s["name"] == "orders.order.completed process"]
    assert {s["service"] for s in applied} >= {"delivery", "notifications"}
    if not deployment.topology.distributed:
        return
    processes = {span["process"].split("/")[0] for span in spans}

    async def with_provider() -> set[str] | None:
        spans_now = (await api.get(f"/admin/traces/{spans[0]['trace_id']}")).json()
        seen = {span["process"].split("/")[0] for span in spans_now}
        return seen if seen >= EIGHT else None

    processes = await eventually(with_provider, within=15, every=0.5)
    assert len(processes) >= 8, processes
    # The far side of JetStream: a consumer in another process than the one that published.
    publisher = next(s for s in spans if s["name"].startswith("saga checkout "))["process"]
    assert any(s["kind"] == "consumer" and s["process"] != publisher for s in applied)


async def test_the_trace_store_refuses_bad_searches(api: httpx.AsyncClient):
    for params in ({"limit": "0"}, {"limit": "many"}, {"error": "maybe"}, {"colour": "red"}):
        answer = await api.get("/admin/traces", params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert (await api.get("/admin/traces/not-a-trace")).status_code == 422
    assert (await api.get("/admin/traces/" + "0" * 32)).status_code == 404
