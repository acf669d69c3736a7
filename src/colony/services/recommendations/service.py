"""Recommendations' service layer: the implementation of :class:`RecommendationsApi`.

"Bought together" is item-to-item co-occurrence: for every completed order, each pair of
distinct listings in it scores one. Counts are kept in both directions so a lookup is one
range of one covering index.
"""

from __future__ import annotations

from itertools import permutations
from typing import Any

from colony.platform.errors import InvalidInput
from colony.platform.messaging.consumer import Handler
from colony.platform.runtime import ServiceContext
from colony.services.orders.api import OrderCompleted
from colony.services.recommendations.api import Recommendation

MAX_LIMIT = 20
# An order's pairs grow quadratically; a cart holds at most 50 lines, and an order beyond that
# says little about what goes together, so the rest of it is not learned from.
MAX_LISTINGS_PER_ORDER = 50
# Served from one range of the covering index co_purchases_best, already in answer order.
BOUGHT_TOGETHER_SQL = (
    "SELECT other_id, score FROM co_purchases WHERE listing_id = ?"
    " ORDER BY score DESC, other_id LIMIT ?"
)


class RecommendationsService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.db = ctx.db

    def subscriptions(self) -> dict[type[Any], Handler]:
        return {OrderCompleted: self.on_order_completed}

    async def on_order_completed(self, event: OrderCompleted) -> None:
        # Runs in the consumer's transaction, with its inbox row: a redelivery counts nothing.
        listings = list(dict.fromkeys(line.listing_id for line in event.lines))
        listings = listings[:MAX_LISTINGS_PER_ORDER]
        if len(listings) < 2:
            return
        await self.db.execute_many(
            "INSERT INTO co_purchases (listing_id, other_id, score) VALUES (?, ?, 1)"
            " ON CONFLICT (listing_id, other_id)"
            " DO UPDATE SET score = co_purchases.score + 1",
            permutations(listings, 2),
        )

    async def bought_together(self, listing_id: str, limit: int = 4) -> list[Recommendation]:
        # The binding checks the limit over HTTP; in-process calls arrive unchecked.
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"The limit must be between 1 and {MAX_LIMIT}.", field="limit")
        rows = await self.db.fetch_all(BOUGHT_TOGETHER_SQL, (listing_id, limit))
        return [Recommendation(listing_id=row[0], score=row[1]) for row in rows]
