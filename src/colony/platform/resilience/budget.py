"""A retry budget: retries may add at most a fraction of the calls made recently, plus a small
floor, so that during an outage the load retries add stays bounded however many callers retry.

Finagle's budget (20 % of requests plus 10 retries/s over a 10 s window) is the model; Envoy
and gRPC bound retries the same way. Counting is done in one-second buckets over the window,
which is exact enough for a bound and costs two integer additions per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    ratio: float = 0.2
    min_per_second: float = 10.0
    window_seconds: int = 10

    def __post_init__(self) -> None:
        if self.ratio < 0 or self.min_per_second < 0 or self.window_seconds < 1:
            raise ValueError("a retry budget needs ratio ≥ 0, min_per_second ≥ 0, window ≥ 1")


class RetryBudget:
    def __init__(
        self, policy: BudgetPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or BudgetPolicy()
        self._clock = clock
        size = self.policy.window_seconds
        self._calls = [0] * size
        self._retries = [0] * size
        self._stamp = [-1] * size
        self.refused = 0
        """Retries this budget refused, since the start."""

    def _slot(self) -> int:
        second = int(self._clock())
        slot = second % len(self._stamp)
        if self._stamp[slot] != second:
            self._stamp[slot] = second
            self._calls[slot] = 0
            self._retries[slot] = 0
        return slot

    def _in_window(self, counts: list[int]) -> int:
        now = int(self._clock())
        oldest = now - len(self._stamp) + 1
        return sum(c for c, s in zip(counts, self._stamp, strict=True) if s >= oldest)

    def record_call(self) -> None:
        """A first attempt was made: it earns the budget a fraction of a retry."""
        self._calls[self._slot()] += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (and nothing taken) when it is spent."""
        slot = self._slot()
        policy = self.policy
        allowed = policy.ratio * self._in_window(self._calls) + (
            policy.min_per_second * policy.window_seconds
        )
        if self._in_window(self._retries) + 1 > allowed:
            self.refused += 1
            return False
        self._retries[slot] += 1
        return True
