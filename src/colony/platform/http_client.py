"""The platform's client for third parties over HTTP (the payment provider, sellers' webhooks).

A service never opens an aiohttp session of its own: it asks this client, naming the
dependency, and the call goes through that dependency's policy pipeline (deadline, breaker,
bulkhead, budgeted retries; :mod:`colony.platform.resilience`) on one shared keep-alive pool.
What a failure means for the request's effect is kept apart, because callers act on it:
:class:`NotSent` (refused before anything was sent: no effect), :class:`TimeoutError` and
:class:`ConnectionError` (sent, answer lost: the effect is unknown), and
:class:`~colony.platform.errors.ServiceUnavailable` from an open breaker or a full bulkhead
(not sent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

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
    def __init__(self, resilience: Resilience) -> None:
        self.resilience = resilience
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # aiohttp sets TCP_NODELAY; a bound per host so one slow host cannot take the pool.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=64, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
    ) -> HttpResponse:
        """``method`` ``base_url + path`` as a call to ``dependency``. Answers of 5xx count
        against the dependency (and are retried when ``repeatable``); the last answer is
        returned whatever its status, for the caller to read. Redirects are never followed:
        a third party that moved is its owner's to update, not ours to chase."""
        base = base_url.rstrip("/")
        target = self.resilience.dependency(dependency, [base])
        if base not in target.endpoints:
            raise ValueError(f"{dependency} is at {target.endpoints}, not {base}")

        async def send(endpoint: str, seconds: float) -> HttpResponse:
            try:
                async with self._http().request(
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

        return await target.call(send, repeatable=repeatable, failed=lambda r: r.status >= 500)
