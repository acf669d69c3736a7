"""The platform's client for third parties over HTTP (the payment provider, sellers' webhooks).

A service never opens an aiohttp session of its own: it asks this client, naming the
dependency, and the call goes through that dependency's policy pipeline (deadline, breaker,
bulkhead, budgeted retries; :mod:`colony.platform.resilience`) on one shared keep-alive pool.
What a failure means for the request's effect is kept apart, because callers act on it:
:class:`NotSent` (refused before anything was sent: no effect), :class:`TimeoutError` and
:class:`ConnectionError` (sent, answer lost: the effect is unknown), and
:class:`~colony.platform.errors.ServiceUnavailable` from an open breaker or a full bulkhead
(not sent).

A URL a user gave (a seller's webhook) is sent with a ``guard``
(:mod:`colony.platform.outbound_addresses`): its host is checked before the call, its name is
looked up once and refused if any address is inside, and the connection goes to an address
so checked, on a pool of its own (a kept connection to the payment provider on this host is
never lent to it). A refusal is :class:`~colony.platform.outbound_addresses.ForbiddenDestination`,
before anything is sent; it counts against no breaker, and is not retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver
from opentelemetry.trace import SpanKind, StatusCode

from colony.platform.observability import tracing
from colony.platform.outbound_addresses import ForbiddenDestination, GuardedResolver, OutboundGuard
from colony.platform.resilience import NotSent, Resilience

UNTIMED = aiohttp.ClientTimeout(total=None)
"""For a request inside the pipeline, which already runs each attempt under a timer of its
own: a second one in aiohttp would cost another timer per call (~4 µs), for nothing."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    headers: Mapping[str, str]


class HttpClient:
    def __init__(self, resilience: Resilience, resolver: AbstractResolver | None = None) -> None:
        self.resilience = resilience
        self.resolver = resolver
        """Looks up the names of guarded requests before the guard checks their addresses
        (None: the system's resolver). Set it before the first guarded request: the seam
        where tests put names of their own."""
        self._sessions: dict[OutboundGuard | None, aiohttp.ClientSession] = {}
        self._resolvers: dict[OutboundGuard, GuardedResolver] = {}

    def _http(self, guard: OutboundGuard | None = None) -> aiohttp.ClientSession:
        session = self._sessions.get(guard)
        if session is None or session.closed:
            # aiohttp sets TCP_NODELAY; a bound per host so one slow host cannot take the pool;
            # idle connections dropped after 5 s, before a server tired of waiting for the next
            # request (10 s for Colony's own, the provider simulator's) closes one in our hands.
            resolver = None
            if guard is not None:
                # A connector closes only the resolvers it made itself: this one is ours.
                resolver = self._resolvers[guard] = GuardedResolver(guard, self.resolver)
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=64, keepalive_timeout=5, resolver=resolver
            )
            session = self._sessions[guard] = aiohttp.ClientSession(connector=connector)
        return session

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        resolvers, self._resolvers = list(self._resolvers.values()), {}
        for session in sessions:
            await session.close()
        for resolver in resolvers:
            await resolver.close()

    async def request(
        self,
        dependency: str,
        base_url: str,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        repeatable: bool = False,
        guard: OutboundGuard | None = None,
        propagate: bool = False,
    ) -> HttpResponse:
        """``method`` ``base_url + path`` as a call to ``dependency``. Answers of 5xx count
        against the dependency (and are retried when ``repeatable``); the last answer is
        returned whatever its status, for the caller to read. Redirects are never followed:
        a third party that moved is its owner's to update, not ours to chase (and a
        redirect would take a guarded request wherever the answer said).

        With ``guard``, for a URL a user gave, a destination inside raises
        :class:`ForbiddenDestination` and nothing is sent. With ``propagate``, the call
        carries the trace's context (``traceparent``): for a party of ours, such as the
        payment-provider simulator, never for sellers' receivers."""
        base = base_url.rstrip("/")
        if guard is not None:
            why = guard.refusal(base + path)
            if why is not None:
                raise ForbiddenDestination(f"{dependency}: the URL {why}")
        target = self.resilience.dependency(dependency, [base])
        if base not in target.endpoints:
            raise ValueError(f"{dependency} is at {target.endpoints}, not {base}")

        async def send(endpoint: str, seconds: float) -> HttpResponse:
            try:
                async with self._http(guard).request(
                    method,
                    endpoint + path,
                    data=body,
                    headers=headers,
                    params=params,
                    allow_redirects=False,
                    timeout=UNTIMED,
                ) as response:
                    return HttpResponse(response.status, await response.read(), response.headers)
            except aiohttp.ClientConnectorError as exc:
                raise NotSent(f"{dependency}: {exc}") from exc
            except aiohttp.ClientError as exc:
                raise ConnectionError(f"{dependency}: {exc.__class__.__name__}: {exc}") from exc

        calling = (
            tracing.child(
                f"{method} {dependency}",
                SpanKind.CLIENT,
                {"http.request.method": method, "server.address": dependency},
            )
            if tracing.recording()
            else tracing.NO_SPAN
        )
        with calling:
            if propagate:
                headers = dict(headers or {})
                tracing.inject(headers)
            answer = await target.call(
                send, repeatable=repeatable, failed=lambda r: r.status >= 500
            )
            if tracing.records(calling):
                calling.set_attribute("http.response.status_code", answer.status)
                if answer.status >= 500:
                    calling.set_status(StatusCode.ERROR, f"answered {answer.status}")
            return answer
