"""The tunable faults: the current behaviour, the dice it rolls, and what the faults did.

Every random choice comes from one ``random.Random`` seeded from the behaviour, so a test that
sets a seed sees the same declines, errors, timeouts and latencies on every run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields
from typing import Literal

from colony.payment_provider.api import BadAnswer, Behaviour

# z-score of the 99th percentile of a standard normal distribution.
_Z99 = 2.3263478740408408
# Bounds the lognormal tail, so one unlucky draw cannot stall a request for minutes.
_TAIL_CAP = 10.0

TimeoutPhase = Literal["before", "after"]


class Dice:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.set(behaviour or Behaviour())

    def set(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self._rng = random.Random(behaviour.seed)

    def chance(self, rate: float) -> bool:
        return self._rng.random() < rate

    def latency_seconds(self) -> float:
        p50, p99 = self.behaviour.latency.p50_ms, self.behaviour.latency.p99_ms
        if p50 == 0:
            return 0.0
        sigma = math.log(p99 / p50) / _Z99
        sample = p50 * math.exp(sigma * self._rng.gauss(0.0, 1.0))
        return min(sample, p99 * _TAIL_CAP) / 1000

    def error_status(self) -> int | None:
        """500 or 503 for a request the behaviour fails, else None."""
        if not self.chance(self.behaviour.error_rate):
            return None
        return self._rng.choice((500, 503))

    def timeout(self) -> TimeoutPhase | None:
        """Whether a request hangs, and whether before or after its effect (half each)."""
        if not self.chance(self.behaviour.timeout_rate):
            return None
        return "after" if self._rng.random() < 0.5 else "before"

    def bad_answer(self) -> BadAnswer | None:
        """How a successful answer is spoiled, if it is. One draw, and none while no bad
        answer is set, so a seed chosen for the other faults keeps its sequence."""
        rates = self.behaviour.bad_answer_rates()
        if not any(rates.values()):
            return None
        draw = self._rng.random()
        for kind, rate in rates.items():
            if draw < rate:
                return kind
            draw -= rate
        return None


@dataclass
class Counters:
    """What happened since start or the last reset (money is counted from the ledger)."""

    requests: int = 0
    replays: int = 0
    outage_rejections: int = 0
    injected_errors: int = 0
    timeouts_before_effect: int = 0
    timeouts_after_effect: int = 0
    bad_answers: int = 0
    audit_requests: int = 0
    """Requests marked as a marketplace's audit (``x-colony-purpose: audit``), in ``requests``
    too: checking, not paying, so load tests can tell the two apart."""

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)
