"""The gateway's protection at the edge, from settings: per-client rate limits outermost, then
load shedding, so a client over its limit is refused before it can take a slot from others.

Health endpoints and static files are never limited nor shed: a probe must still see a busy
gateway alive, and a page's assets are cheap files that come with a page already let in.
"""

from __future__ import annotations

from collections.abc import Hashable

from starlette.types import ASGIApp, Scope

from colony.platform.config import Settings
from colony.platform.web.rate_limit import ClientKey, RateLimit, TokenBuckets
from colony.platform.web.shedding import ConcurrencyLimit
from colony.services.gateway.auth import Authenticator

EXEMPT_PATHS = ("/health/", "/static/", "/api/docs/assets/")
EDGE_ERRORS = (429, 503)
"""What any API operation may answer here, whatever it does: rate limited, or shed."""


def protect(app: ASGIApp, settings: Settings, auth: Authenticator) -> ASGIApp:
    """``app`` behind the limits the settings ask for (a limit of 0 is none)."""
    if settings.gateway_max_concurrency:
        app = ConcurrencyLimit(
            app,
            settings.gateway_max_concurrency,
            settings.gateway_max_queue,
            settings.gateway_queue_wait_seconds,
            EXEMPT_PATHS,
        )
    if settings.rate_limit_per_second:
        exempt = frozenset(a.strip() for a in settings.rate_limit_exempt.split(",") if a.strip())
        buckets = TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst)
        app = RateLimit(app, buckets, client_key(auth, exempt), EXEMPT_PATHS)
    return app


def client_key(auth: Authenticator, exempt: frozenset[str]) -> ClientKey:
    """A request's client: the account of a bearer token the gateway has verified before, else
    the connection's address.

    Only a token already in the verifier's cache counts (a dictionary lookup, no signature
    check; the endpoint verifies it as before). So an account has one bucket whatever its
    address and however many tokens it holds, a new token's first request counts against its
    address, and made-up tokens cannot buy a fresh bucket each: they never get into the
    cache, so they all count against the address they come from. The storefront's session
    cookie is not looked at: pages count per address. Addresses in ``exempt`` (this host's,
    by default) are not limited at all.
    """
    verifier = auth.verifier

    def key(scope: Scope) -> Hashable | None:
        client = scope.get("client")
        address = client[0] if client else ""
        if address in exempt:
            return None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    actor = verifier.cached(token.strip())
                    if actor is not None:
                        return ("account", actor.id)
                break
        return address

    return key
