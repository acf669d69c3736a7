"""Calls to best-effort services, bounded so that their trouble never becomes the caller's."""

from __future__ import annotations

import asyncio

from colony.platform.logging import get_logger
from colony.services.recommendations.api import Recommendation, RecommendationsApi

_log = get_logger("gateway")


async def recommendations_or_none(
    recommendations: RecommendationsApi, listing_id: str, limit: int, budget: float
) -> list[Recommendation]:
    """Bought-together listings, or an empty list when recommendations is down or slower
    than ``budget`` seconds: a product page renders without them."""
    try:
        async with asyncio.timeout(budget):
            return await recommendations.bought_together(listing_id, limit)
    except Exception as exc:  # any failure of a best-effort dependency is the same to us
        _log.debug("recommendations left out", listing_id=listing_id, error=repr(exc))
        return []
