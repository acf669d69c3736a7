"""Bounds on what one buyer may make checkout do: how often they place orders, and how many
declined cards they may try before checkout stops asking the payment provider.

Both live in the orders service, not the gateway: every gateway replica calls the same orders
service, so a buyer spreading requests over gateways gains nothing. They live in its memory,
not its database: a placement is already a write transaction, and a second one for a counter
would halve how many orders a second one database takes. The price is that N replicas of
orders each keep their own counts, so a buyer reaching all of them gets N times the bound; as
an abuse bound (not a quota anyone is billed by) that is accepted, and a restart forgets counts.

Each is a small state machine with an injectable clock, so its tests need not wait.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from colony.platform.errors import RateLimited

PLACEMENTS_PER_MINUTE = 30.0
"""Orders a buyer may place a minute, sustained. A person checks out a few times an hour;
the load and chaos runs place under 10 a minute per buyer (one checkout in flight each)."""
PLACEMENT_BURST = 30
"""Orders a buyer may place at once after a quiet spell: a shop's scripted re-order of
many small baskets is let through; a stream of thousands a minute is not."""
DECLINES_ALLOWED = 3
"""Declined cards a buyer may try within ``DECLINE_WINDOW_SECONDS``. A person mistypes a
card once or twice and then fixes it; card testing needs hundreds of tries, and at this
bound gets about 18 cards an hour per account."""
DECLINE_WINDOW_SECONDS = 600.0
"""How long a decline counts. Long enough that waiting out the 429 costs a card tester more
than a new account would cost to make; short enough that a person locked out by typos tries
again within minutes."""
_PRUNE_EVERY = 1000


class CheckoutThrottle:
    """Admits a buyer's checkout, or refuses it with a 429 saying when to try again (never
    reaching the provider). Declines are counted by the checkout saga's payment step; an
    authorized payment forgets them."""

    def __init__(
        self,
        placements_per_minute: float = PLACEMENTS_PER_MINUTE,
        burst: int = PLACEMENT_BURST,
        declines_allowed: int = DECLINES_ALLOWED,
        decline_window_seconds: float = DECLINE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if placements_per_minute <= 0 or burst < 1 or declines_allowed < 1:
            raise ValueError("a throttle must let at least one checkout through")
        self.rate = placements_per_minute / 60.0
        self.burst = float(burst)
        self.declines_allowed = declines_allowed
        self.decline_window = decline_window_seconds
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._declines: dict[str, deque[float]] = {}
        self._since_pruning = 0

    def admit(self, buyer_id: str) -> None:
        """Take one placement for ``buyer_id``, or raise :class:`RateLimited` (taking none)."""
        now = self.clock()
        self._prune(now)
        declines = self._recent_declines(buyer_id, now)
        if declines is not None and len(declines) >= self.declines_allowed:
            wait = declines[0] + self.decline_window - now
            raise _limited("Too many declined cards; try again", wait)
        bucket = self._buckets.get(buyer_id)
        if bucket is None:
            bucket = self._buckets[buyer_id] = _Bucket(self.burst, now)
        bucket.refill(now, self.rate, self.burst)
        if bucket.tokens < 1.0:
            raise _limited("Too many orders placed", (1.0 - bucket.tokens) / self.rate)
        bucket.tokens -= 1.0

    def declined(self, buyer_id: str) -> None:
        now = self.clock()
        declines = self._recent_declines(buyer_id, now)
        if declines is None:
            declines = self._declines[buyer_id] = deque()
        declines.append(now)

    def authorized(self, buyer_id: str) -> None:
        """A card went through: the buyer is not testing cards, and starts afresh."""
        self._declines.pop(buyer_id, None)

    def _recent_declines(self, buyer_id: str, now: float) -> deque[float] | None:
        declines = self._declines.get(buyer_id)
        if declines is None:
            return None
        while declines and declines[0] <= now - self.decline_window:
            declines.popleft()
        return declines

    def _prune(self, now: float) -> None:
        """Forget buyers whose bucket has filled again and whose declines have aged out, so
        the maps hold recent buyers only."""
        self._since_pruning += 1
        if self._since_pruning < _PRUNE_EVERY:
            return
        self._since_pruning = 0
        refill_seconds = self.burst / self.rate
        self._buckets = {
            buyer: bucket
            for buyer, bucket in self._buckets.items()
            if now - bucket.at < refill_seconds
        }
        self._declines = {
            buyer: declines
            for buyer, declines in self._declines.items()
            if declines and declines[-1] > now - self.decline_window
        }


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float = field(default=0.0)

    def refill(self, now: float, rate: float, burst: float) -> None:
        self.tokens = min(burst, self.tokens + (now - self.at) * rate)
        self.at = now


def _limited(what: str, wait: float) -> RateLimited:
    seconds = max(1, math.ceil(wait))
    return RateLimited(f"{what}; try again in {seconds} s.", retry_after=seconds)
