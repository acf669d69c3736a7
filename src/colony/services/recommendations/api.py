"""Recommendations' public interface: the only module other services may import.

Best effort by design: learned from completed orders, it may lag, be empty, or be down;
callers give it a short deadline and carry on without it.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Protocol

import msgspec

from colony.platform.runtime.interface import callers, repeatable


class Recommendation(msgspec.Struct, frozen=True, kw_only=True):
    listing_id: str
    score: int
    """How many completed orders held both listings."""


class RecommendationsApi(Protocol):
    service_name: ClassVar[str] = "recommendations"

    @callers("gateway")
    @repeatable
    async def bought_together(
        self, listing_id: str, limit: Annotated[int, msgspec.Meta(ge=1, le=20)] = 4
    ) -> list[Recommendation]:
        """Listings most often bought in the same order as this one, best first."""
        ...
