"""The HTTP binding: a service's interface served as JSON over HTTP, and a client for it.

One route per method (``POST /rpc/<method>``) whose body is the method's parameters. The
call's context travels in headers; errors travel as RFC 9457 problems and are raised again
on the caller's side as the same exception class.
"""

from __future__ import annotations

import types
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


def rpc_app(api: type[Any], implementation: Any) -> Starlette:
    """Serve ``implementation`` of ``api`` over HTTP."""
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

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    app = Starlette(
        routes=[Route("/rpc/{method}", call, methods=["POST"]), Route("/health", health)]
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
            connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def ping(self, base_url: str) -> None:
        try:
            async with self.session().get(base_url.rstrip("/") + "/health") as response:
                if response.status != 200:
                    raise ServiceUnavailable(f"{base_url} answered {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServiceUnavailable(f"{base_url}: {exc}") from exc

    def client(self, api: type[Any], base_url: str) -> Any:
        """An object with the interface's methods, each a POST to the service."""
        methods = interface_methods(api)
        namespace = {
            name: _remote_method(self, spec, base_url.rstrip("/") + "/rpc/" + name)
            for name, spec in methods.items()
        }
        namespace["__repr__"] = lambda self: f"<HTTP client {api.__name__} at {base_url}>"
        cls = types.new_class(f"Http{api.__name__}", (), {}, lambda ns: ns.update(namespace))
        return cls()


def _remote_method(factory: HttpClientFactory, spec: MethodSpec, url: str) -> Any:
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
        try:
            async with factory.session().post(url, data=body, headers=headers) as response:
                payload = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServiceUnavailable(f"{url}: {exc.__class__.__name__}: {exc}") from exc
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
