"""The HTTP binding: a service's interface served as JSON over HTTP, and a client for it.

One route per method (``POST /rpc/<method>``) whose body is the method's parameters. The
call's context travels in headers; errors travel as RFC 9457 problems and are raised again
on the caller's side as the same exception class.
"""

from __future__ import annotations

import itertools
import time
import types
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform import context
from colony.platform.errors import ColonyError, InvalidInput, NotFound, ServiceUnavailable
from colony.platform.runtime.interface import MethodSpec, interface_methods
from colony.platform.web.problems import install_problem_handlers

CORRELATION_HEADER = "x-correlation-id"
IDEMPOTENCY_KEY_HEADER = "x-idempotency-key"
IDEMPOTENCY_FINGERPRINT_HEADER = "x-idempotency-fingerprint"
_problem_decoder = msgspec.json.Decoder(dict[str, Any])


def rpc_app(
    api: type[Any], implementation: Any, ready: Callable[[], Awaitable[str | None]] | None = None
) -> Starlette:
    """Serve ``implementation`` of ``api`` over HTTP, with liveness and readiness probes;
    ``ready`` returns why the service is not ready, or None when it is."""
    methods = interface_methods(api)

    async def call(request: Request) -> Response:
        spec = methods.get(request.path_params["method"])
        if spec is None:
            raise NotFound(f"{api.__name__} has no method {request.path_params['method']!r}")
        try:
            params = spec.params_decoder.decode(await request.body())
        except msgspec.ValidationError as exc:
            raise InvalidInput(str(exc)) from None
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"malformed parameters: {exc}") from None
        key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
        idempotency = (
            context.IdempotencyRequest(key, request.headers.get(IDEMPOTENCY_FINGERPRINT_HEADER, ""))
            if key
            else None
        )
        with context.call_context(request.headers.get(CORRELATION_HEADER), idempotency):
            kwargs = {f: getattr(params, f) for f in params.__struct_fields__}
            result = await getattr(implementation, spec.name)(**kwargs)
        if spec.result_decoder is None:
            return Response(status_code=204)
        return Response(spec.encoder.encode(result), media_type="application/json")

    async def live(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readiness(request: Request) -> Response:
        problem = await ready() if ready is not None else None
        if problem is None:
            return Response(b'{"status":"ready"}', media_type="application/json")
        body = msgspec.json.encode({"status": "unavailable", "reason": problem})
        return Response(body, status_code=503, media_type="application/json")

    app = Starlette(
        routes=[
            Route("/rpc/{method}", call, methods=["POST"]),
            Route("/health/live", live),
            Route("/health/ready", readiness),
        ]
    )
    install_problem_handlers(app)
    return app


class HttpClientFactory:
    """Clients for remote services, sharing one keep-alive connection pool."""

    def __init__(self, timeout_seconds: float = 10.0) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # aiohttp's connections set TCP_NODELAY (no Nagle + delayed-ACK stalls on loopback).
            # A bound per service, none overall: under one overall bound, idle connections
            # kept for one service took the places another needed, and the pool kept closing
            # and opening connections (seen as connect() in profiles of a busy orders replica).
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=128, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def ping(self, base_urls: Sequence[str], timeout_seconds: float | None = None) -> None:
        """Succeed if any replica answers its readiness probe, each asked with a bound of
        ``timeout_seconds`` (default: the calls' timeout)."""
        timeout = (
            self._timeout
            if timeout_seconds is None
            else aiohttp.ClientTimeout(total=timeout_seconds)
        )
        errors = []
        for base_url in base_urls:
            url = base_url.rstrip("/") + "/health/ready"
            try:
                async with self.session().get(url, timeout=timeout) as response:
                    if response.status == 200:
                        return
                    errors.append(f"{base_url} answered {response.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(f"{base_url}: {exc!r}")
        raise ServiceUnavailable("; ".join(errors))

    def client(self, api: type[Any], base_urls: Sequence[str]) -> Any:
        """An object with the interface's methods, each a POST to one of the replicas."""
        methods = interface_methods(api)
        replicas = Replicas(base_urls)
        namespace = {
            name: _remote_method(self, spec, replicas) for name, spec in methods.items()
        }
        namespace["__repr__"] = lambda self: f"<HTTP client {api.__name__} at {replicas}>"
        cls = types.new_class(f"Http{api.__name__}", (), {}, lambda ns: ns.update(namespace))
        return cls()


class Replicas:
    """Round robin over a service's replicas. A replica that refuses the connection is passed
    over for the next one (the request never reached it, so sending it elsewhere is safe
    whatever the method does) and then tried last for ``rest_seconds``, so the live ones share
    its load evenly meanwhile. Any later failure is the caller's to handle."""

    def __init__(self, base_urls: Sequence[str], rest_seconds: float = 2.0) -> None:
        if not base_urls:
            raise ValueError("a remote service needs at least one URL")
        self.base_urls = [url.rstrip("/") for url in base_urls]
        self.rest_seconds = rest_seconds
        self._turn = itertools.count()
        self._refused_until: dict[str, float] = {}

    def __repr__(self) -> str:
        return ", ".join(self.base_urls)

    def rotation(self) -> list[str]:
        """Every replica once: the live ones from the next in turn, then the resting ones."""
        if len(self.base_urls) == 1:
            return self.base_urls
        now = time.monotonic()
        live = [u for u in self.base_urls if self._refused_until.get(u, 0.0) <= now]
        resting = [u for u in self.base_urls if u not in live]
        if not live:
            return resting
        first = next(self._turn) % len(live)
        return live[first:] + live[:first] + resting

    def refused(self, base_url: str) -> None:
        self._refused_until[base_url] = time.monotonic() + self.rest_seconds


def _remote_method(factory: HttpClientFactory, spec: MethodSpec, replicas: Replicas) -> Any:
    path = "/rpc/" + spec.name

    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = spec.signature.bind(self, *args, **kwargs)
        arguments = dict(bound.arguments)
        arguments.pop(next(iter(spec.signature.parameters)))
        body = spec.encoder.encode(spec.params(**arguments))
        headers = {"content-type": "application/json"}
        if cid := context.correlation_id():
            headers[CORRELATION_HEADER] = cid
        if idem := context.idempotency_request():
            headers[IDEMPOTENCY_KEY_HEADER] = idem.key
            headers[IDEMPOTENCY_FINGERPRINT_HEADER] = idem.fingerprint
        for base_url in replicas.rotation():
            url = base_url + path
            try:
                async with factory.session().post(url, data=body, headers=headers) as response:
                    payload = await response.read()
                    status = response.status
                break
            except aiohttp.ClientConnectorError as exc:
                replicas.refused(base_url)
                refused: Exception = exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ServiceUnavailable(f"{url}: {exc.__class__.__name__}: {exc}") from exc
        else:
            raise ServiceUnavailable(f"{replicas}: {refused}") from refused
        if status >= 400:
            try:
                problem = _problem_decoder.decode(payload)
            except msgspec.DecodeError:
                raise ServiceUnavailable(f"{url} answered {status}") from None
            raise ColonyError.from_problem(problem)
        if spec.result_decoder is None:
            return None
        return spec.result_decoder.decode(payload)

    method.__name__ = spec.name
    return method
