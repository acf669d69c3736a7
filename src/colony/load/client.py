"""The marketplace's API as the load sees it: every call ends in an ``Answer``, never an
exception, with its outcome already classified.

One aiohttp session with a bounded pool of keep-alive connections (aiohttp sets TCP_NODELAY,
so small requests are not held back by Nagle's algorithm). aiohttp's tracing tells whether a
request's headers left before it failed, which is what separates ``failed`` from ``unknown``
(see ``outcomes``). Redirects are not followed: the API does not redirect, and a redirect
followed would be two requests counted as one.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import aiohttp
import msgspec

from colony.load.outcomes import Outcome, outcome_of_error, outcome_of_status

API = "/api/v1"
SETUP_TIMEOUT_SECONDS = 30.0
"""For the calls before the load (discovery, sign-in: an Argon2 hash each), which are not
measured and should not fail because ``--timeout`` is tight."""
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    outcome: Outcome
    status: int | None = None
    body: Any = None
    error: str | None = None
    """Why it is not ok: ``"409 Conflict"``, ``"timeout"``, ``"cannot connect: ..."``."""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class _Sent:
    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


class ApiClient:
    """JSON calls to ``base_url + /api/v1``, each bounded by ``timeout`` seconds."""

    def __init__(self, base_url: str, timeout: float, connections: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.requests = 0
        """Requests attempted, for the report's request rate."""
        self._timeout = _timeout(timeout)
        tracing = aiohttp.TraceConfig()
        tracing.on_request_headers_sent.append(_mark_sent)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
            timeout=self._timeout,
            trace_configs=[tracing],
            headers={"accept": "application/json", "user-agent": "colony-load"},
        )

    async def close(self) -> None:
        await self._session.close()

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str | int] | None = None,
        headers: dict[str, str] | None = None,
        within: float | None = None,
    ) -> Answer:
        """``method`` on ``/api/v1`` + ``path``; transport errors come back as an Answer.
        ``within`` (seconds) replaces the client's timeout for this call."""
        self.requests += 1
        sent = _Sent()
        data = None
        if body is not None:
            data = _encoder.encode(body)
            headers = {**(headers or {}), "content-type": "application/json"}
        try:
            async with self._session.request(
                method,
                self.base_url + API + path,
                data=data,
                params=params,
                headers=headers,
                allow_redirects=False,
                trace_request_ctx=sent,
                timeout=self._timeout if within is None else _timeout(within),
            ) as response:
                raw = await response.read()
                status = response.status
                reason = response.reason or ""
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            outcome, error = outcome_of_error(exc, sent.sent)
            return Answer(outcome=outcome, error=error)
        outcome = outcome_of_status(status)
        try:
            parsed = _decoder.decode(raw) if raw else None
        except msgspec.DecodeError:
            parsed = None
        if outcome == "ok":
            return Answer(outcome=outcome, status=status, body=parsed)
        error = f"{status} {reason}".strip()
        return Answer(outcome=outcome, status=status, body=parsed, error=error)


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    # A timeout is a timeout to the millisecond: no rounding up to whole seconds.
    return aiohttp.ClientTimeout(total=seconds, ceil_threshold=float("inf"))


async def _mark_sent(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    if isinstance(context.trace_request_ctx, _Sent):
        context.trace_request_ctx.sent = True
