"""Per-client rate limits at the edge: a token bucket per client, a 429 past it.

What it guarantees: a client may make ``burst`` requests at once and ``rate`` a second over
time; the request past that is refused at once with a 429 problem (``/problems/rate-limited``)
whose ``Retry-After`` says, in whole seconds and never less than 1, when a token will be there
again. Nothing waits: a refused request costs a dictionary lookup and a small response, so a
client that floods the gateway cannot make it queue work for others.

Memory stays bounded. Buckets are kept least recently used first; one that has been idle long
enough to refill is no different from a new one, so it is dropped as soon as it reaches the
front, and past ``max_clients`` the least recently used is dropped even if it is not full
(that client starts again from a full bucket: the bound is on memory, and it lets through at
most one extra burst per client evicted).

Written here rather than taken from a library: aiolimiter is a leaky bucket that paces one
caller's *outbound* calls by making it wait (one limiter, no keys, no eviction, no answer to
"when may I come back"), the opposite of refusing an inbound client at once. The bucket is a
plain state machine over an injectable clock, so its tests run on a fake clock.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

from starlette.types import ASGIApp, Receive, Scope, Send

from colony.platform.errors import RateLimited
from colony.platform.web.problems import problem_response

MAX_CLIENTS = 50_000
"""Clients tracked at once: about 12 MB of buckets at most."""

ClientKey = Callable[[Scope], Hashable | None]
"""Who a request comes from, as the key of its bucket; None: not limited."""


class TokenBuckets:
    """One token bucket per key. Tokens refill continuously at ``rate`` a second up to
    ``burst``; each request takes one."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError("a rate limit needs a finite rate above 0 requests a second")
        if burst < 1 or max_clients < 1:
            raise ValueError("a rate limit needs a burst and max_clients of at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._refill_seconds = burst / rate  # idle this long, a bucket is full again
        # key -> [tokens, when last counted]; least recently used first.
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable) -> float:
        """Take a token for ``key``: 0.0 if there was one, else the seconds until there is."""
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = [self.burst, now]
        else:
            buckets.move_to_end(key)
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        self._evict(now)
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return 0.0
        return (1.0 - bucket[0]) / self.rate

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        while len(buckets) > self.max_clients:
            buckets.popitem(last=False)
        idle_before = now - self._refill_seconds
        while buckets:
            oldest = next(iter(buckets.values()))
            if oldest[1] > idle_before:
                return
            buckets.popitem(last=False)


def client_address(scope: Scope) -> str:
    """The peer's address: the default key, one bucket per connecting host."""
    client = scope.get("client")
    return client[0] if client else ""


class RateLimit:
    """ASGI middleware: a request whose client's bucket is empty gets a 429 and goes no
    further. Paths under ``exempt_paths`` (health, static files) are never counted."""

    def __init__(
        self,
        app: ASGIApp,
        buckets: TokenBuckets,
        key: ClientKey = client_address,
        exempt_paths: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.buckets = buckets
        self.key = key
        self.exempt_paths = exempt_paths
        self.refused = 0

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function handing back the app's awaitable (or the refusal's): no coroutine
        # of its own per request.
        if scope["type"] == "http" and not scope["path"].startswith(self.exempt_paths):
            key = self.key(scope)
            if key is not None:
                wait = self.buckets.take(key)
                if wait:
                    self.refused += 1
                    return self._refuse(wait, scope, receive, send)
        return self.app(scope, receive, send)

    async def _refuse(self, wait: float, scope: Scope, receive: Receive, send: Send) -> None:
        seconds = max(1, math.ceil(wait))
        error = RateLimited(f"Too many requests from this client; try again in {seconds} s.")
        response = problem_response(error, scope.get("path"))
        response.headers["retry-after"] = str(seconds)
        await response(scope, receive, send)
