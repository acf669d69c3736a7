"""Recommendations: "bought together", learned from completed orders."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from colony.platform.clock import utc_now_iso
from colony.platform.config import Settings
from colony.platform.errors import InvalidInput
from colony.platform.ids import new_id
from colony.platform.messaging import Message
from colony.platform.messaging.consumer import list_dead_letters
from colony.platform.runtime import Runtime, ServiceDefinition, Topology
from colony.platform.web.server import free_port
from colony.services.orders.api import OrderCompleted, OrderLine
from colony.services.recommendations.api import Recommendation, RecommendationsApi
from colony.services.recommendations.service import BOUGHT_TOGETHER_SQL, RecommendationsService
from trust_support import AllowedCaller

MIGRATIONS = Path(inspect.getfile(RecommendationsService)).parent / "migrations"


@pytest.fixture(params=["inprocess", "http"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    topology = (
        Topology.one_process()
        if request.param == "inprocess"
        else Topology.local_over_http({"recommendations": free_port()})
    )
    runtime = Runtime(
        Settings(data_dir=tmp_path),
        [
            ServiceDefinition(
                "recommendations", RecommendationsApi, RecommendationsService, MIGRATIONS
            )
        ],
        topology,
    )
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def order_completed(*listings: str) -> OrderCompleted:
    lines = [
        OrderLine(
            listing_id=listing,
            seller_id="s1",
            title=listing,
            quantity=1,
            unit_price_minor=100,
            line_total_minor=100,
        )
        for listing in listings
    ]
    return OrderCompleted(
        order_id=new_id(), buyer_id="b1", lines=lines, total_minor=100 * len(lines), currency="EUR"
    )


async def publish(runtime: Runtime, event: OrderCompleted, message_id: str | None = None) -> None:
    message = Message(
        id=message_id or new_id(),
        topic=event.topic,
        key=event.order_id,
        payload=msgspec.Raw(msgspec.json.encode(event)),
        created_at=utc_now_iso(),
        source="orders",
    )
    await runtime.consumers["recommendations"].deliver(message)


def pairs(recommendations: list[Recommendation]) -> list[tuple[str, int]]:
    return [(r.listing_id, r.score) for r in recommendations]


async def test_learns_from_completed_orders(runtime: Runtime):
    api = AllowedCaller(runtime, RecommendationsApi)
    assert await api.bought_together("lamp") == []
    await publish(runtime, order_completed("lamp", "desk", "chair"))
    await publish(runtime, order_completed("lamp", "desk"))
    # A listing alone in an order, or twice in one, pairs with nothing new.
    await publish(runtime, order_completed("lamp"))
    await publish(runtime, order_completed("rug", "rug"))
    assert pairs(await api.bought_together("lamp")) == [("desk", 2), ("chair", 1)]
    assert pairs(await api.bought_together("desk")) == [("lamp", 2), ("chair", 1)]
    assert pairs(await api.bought_together("chair")) == [("desk", 1), ("lamp", 1)]
    assert await api.bought_together("rug") == []
    assert await list_dead_letters(runtime.databases["recommendations"]) == []


async def test_a_redelivered_order_counts_once(runtime: Runtime):
    api = AllowedCaller(runtime, RecommendationsApi)
    event, message_id = order_completed("a", "b"), new_id()
    await publish(runtime, event, message_id)
    await publish(runtime, event, message_id)
    assert pairs(await api.bought_together("a")) == [("b", 1)]


async def test_best_first_ties_by_listing_and_the_limit(runtime: Runtime):
    api = AllowedCaller(runtime, RecommendationsApi)
    for others in (["x3", "x1", "x2", "x4", "x5"], ["x2", "x4"], ["x2"]):
        await publish(runtime, order_completed("hub", *others))
    assert pairs(await api.bought_together("hub", limit=20)) == [
        ("x2", 3),
        ("x4", 2),
        ("x1", 1),
        ("x3", 1),
        ("x5", 1),
    ]
    assert pairs(await api.bought_together("hub")) == [("x2", 3), ("x4", 2), ("x1", 1), ("x3", 1)]
    assert pairs(await api.bought_together("hub", limit=1)) == [("x2", 3)]
    for limit in (0, 21):
        with pytest.raises(InvalidInput):
            await api.bought_together("hub", limit=limit)


async def test_the_lookup_is_one_index_range(runtime: Runtime):
    plan = await runtime.databases["recommendations"].fetch_all(
        "EXPLAIN QUERY PLAN " + BOUGHT_TOGETHER_SQL, ("hub", 4)
    )
    detail = " ".join(row[3] for row in plan)
    assert "co_purchases_best" in detail and "TEMP B-TREE" not in detail, detail
