"""Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
Jitter"): the wait is uniform between zero and an exponentially growing ceiling, so callers
that failed together do not come back together."""

from __future__ import annotations

import random


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """The wait before retry number ``attempt`` (1 for the first retry)."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0, ceiling)
