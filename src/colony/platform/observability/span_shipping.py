"""Spans from every process to the one trace store, the gateway's.

Each process takes its finished spans once a second. The gateway's process adds them to its
store; any other sends them to the gateway's ``POST /internal/spans`` in batches small enough
for the gateway's body limit, with a service token like any call between processes. Colony's
own format (the store's), not OTLP: the store needs no protobuf decoder, and a span sent here
is already what the console shows. A span that cannot be sent is dropped, never retried into
a backlog: traces are for looking, the durable record is in the databases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import InvalidInput, Unauthorized
from colony.platform.http_client import HttpClient
from colony.platform.logging import get_logger
from colony.platform.observability import tracing
from colony.platform.observability.trace_store import StoredSpan, TraceStore
from colony.platform.tasks import cancelled
from colony.platform.trust import TokenIssuer, TokenVerifier

SPANS_PATH = "/internal/spans"
BATCH = 60
"""Spans per request: about 40 KB of JSON, under the gateway's 64 KB body limit."""
INTERVAL_SECONDS = 1.0
_log = get_logger("traces")
_decode = msgspec.json.Decoder(list[StoredSpan]).decode
_encode = msgspec.json.Encoder().encode


Deliver = Callable[[list[StoredSpan]], Awaitable[None]]


class SpanShipper:
    """Once a second, this process's finished spans to ``deliver``."""

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="span-shipper")

    async def stop(self) -> None:
        await cancelled(self._task)
        self._task = None
        await self.flush()

    async def flush(self) -> None:
        spans = tracing.finished_spans()
        if not spans:
            return
        try:
            await self._deliver(spans)
        except Exception as exc:
            _log.debug("spans dropped", count=len(spans), error=repr(exc))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_SECONDS)
            await self.flush()


def into_store(store: TraceStore) -> Deliver:
    async def deliver(spans: list[StoredSpan]) -> None:
        store.add(spans)

    return deliver


def to_gateway(http: HttpClient, url: str, issuer: TokenIssuer | None) -> Deliver:
    """POST to the gateway at ``url`` in batches, signed by ``issuer`` (None: unsigned, which
    only a gateway on the same machine accepts)."""

    async def deliver(spans: list[StoredSpan]) -> None:
        for start in range(0, len(spans), BATCH):
            headers = {"content-type": "application/json"}
            if issuer is not None:
                headers["authorization"] = "Bearer " + issuer.token("gateway")
            body = _encode(spans[start : start + BATCH])
            answer = await http.request(
                "traces", url, "POST", SPANS_PATH, body=body, headers=headers
            )
            if answer.status != 204:
                raise ConnectionError(f"the gateway answered {answer.status}")

    return deliver


def spans_route(
    store: TraceStore,
    verifier: TokenVerifier,
    from_this_machine: Callable[[Request], bool],
    max_spans: int = 500,
) -> Route:
    """``POST /internal/spans``: spans from a process of this marketplace (a valid service
    token, any identity) or from one on this machine (the payment-provider simulator)."""

    async def receive(request: Request) -> Response:
        if not from_this_machine(request):
            token = _bearer(request.headers.get("authorization"))
            if token is None:
                raise Unauthorized("Spans are taken from Colony's processes alone.")
            verifier.verify(token)
        try:
            spans: Sequence[StoredSpan] = _decode(await request.body())
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidInput(f"not a list of spans: {exc}") from None
        if len(spans) > max_spans:
            raise InvalidInput(f"at most {max_spans} spans at once")
        store.add(spans)
        return Response(status_code=204)

    return Route(SPANS_PATH, receive, methods=["POST"])


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
