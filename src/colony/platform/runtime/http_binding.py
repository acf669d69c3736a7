"""The HTTP binding: a service's interface served as JSON over HTTP, and a client for it.

One route per method (``POST /rpc/<method>``) whose body is the method's parameters. The
call's context travels in headers (correlation id, Idempotency-Key, the deadline's remaining
budget, which attempt this is); errors travel as RFC 9457 problems and are raised again on
the caller's side as the same exception class. Every call goes through its dependency's
policy pipeline (:mod:`colony.platform.resilience`): deadline, breakers per replica, health
probes that take a silent replica out of rotation, a bulkhead, and bounded retries.
"""

from __future__ import annotations

import re
import types
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any

import aiohttp
import msgspec
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from colony.platform import context
from colony.platform.context import CORRELATION_HEADER
from colony.platform.errors import ColonyError, InvalidInput, NotFound, ServiceUnavailable
from colony.platform.http_client import UNTIMED
from colony.platform.observability import tracing
from colony.platform.observability.rpc_metrics import CallTimers
from colony.platform.resilience import (
    ATTEMPT_HEADER,
    Dependency,
    NotSent,
    Resilience,
    attempt_from_header,
    attempt_number,
    deadline,
    retried_above,
)
from colony.platform.runtime.interface import MethodSpec, interface_methods
from colony.platform.runtime.operations import OperationsApi
from colony.platform.trust import TokenIssuer, TokenVerifier
from colony.platform.web.api import decode_whole_floats
from colony.platform.web.problems import install_problem_handlers

IDEMPOTENCY_KEY_HEADER = "x-idempotency-key"
IDEMPOTENCY_FINGERPRINT_HEADER = "x-idempotency-fingerprint"
_problem_decoder = msgspec.json.Decoder(dict[str, Any])
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_ANSWER_RESERVE_SECONDS = 0.25


def rpc_app(
    api: type,
    implementation: Any,
    verifier: TokenVerifier,
    ready: Callable[[], Awaitable[str | None]] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    operations: Any = None,
) -> Starlette:
    """Serve ``implementation`` of ``api`` over HTTP, with liveness and readiness probes;
    ``ready`` returns why the service is not ready, or None when it is. ``extra_routes`` are
    the process's own (its dependencies' state, fault injection when enabled);
    ``operations``, the service's :class:`~colony.platform.runtime.operations.OperationsApi`,
    is served under ``/platform/``.

    A call is served only with a service token that ``verifier`` accepts (else 401) from a
    caller the method's list allows (else 403); the actor the method sees is the token's."""

    async def live(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readiness(request: Request) -> Response:
        problem = await ready() if ready is not None else None
        if problem is None:
            return Response(b'{"status":"ready"}', media_type="application/json")
        body = msgspec.json.encode({"status": "unavailable", "reason": problem})
        return Response(body, status_code=503, media_type="application/json")

    routes: list[BaseRoute] = [
        Route("/rpc/{method}", _endpoint(api, implementation, verifier), methods=["POST"]),
        Route("/health/live", live),
        Route("/health/ready", readiness),
    ]
    if operations is not None:
        endpoint = _endpoint(OperationsApi, operations, verifier)
        routes.append(Route("/platform/{method}", endpoint, methods=["POST"]))
    app = Starlette(routes=[*routes, *extra_routes])
    install_problem_handlers(app)
    return app


def _endpoint(
    api: type, implementation: Any, verifier: TokenVerifier
) -> Callable[[Request], Awaitable[Response]]:
    """The route serving every method of ``api``: the method named in the path, called with
    the body's parameters and the verified token's actor, in the call's context."""
    methods = interface_methods(api)
    service = verifier.identity
    timers: dict[tuple[str, str], CallTimers] = {}

    def timer(method: str, caller: str) -> CallTimers:
        found = timers.get((method, caller))
        if found is None:
            found = timers[(method, caller)] = CallTimers(service, method, caller)
        return found

    async def call(request: Request) -> Response:
        # Who calls comes first: a caller without a valid token learns nothing, not even
        # which methods exist.
        caller = verifier.verify(_bearer(request.headers.get("authorization")))
        spec = methods.get(request.path_params["method"])
        if spec is None:
            raise NotFound(f"{api.__name__} has no method {request.path_params['method']!r}")
        spec.authorize(caller.identity, caller.actor)
        raw = await request.body()
        try:
            params = spec.params_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            if "got `float`" not in str(exc):
                raise InvalidInput(str(exc)) from None
            # ``29.0`` is an integer to JSON Schema, as at the gateway (only on this path).
            params = decode_whole_floats(raw, spec.params)
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"malformed parameters: {exc}") from None
        if b"\\u0000" in raw and _ESCAPED_NUL.search(raw):
            # PostgreSQL's text cannot hold NUL: refused here, as the gateway refuses it, not
            # by the service's database with a 500.
            raise InvalidInput("Text in the parameters may not contain NUL characters (\\u0000).")
        headers = request.headers
        key = headers.get(IDEMPOTENCY_KEY_HEADER)
        idempotency = (
            context.IdempotencyRequest(key, headers.get(IDEMPOTENCY_FINGERPRINT_HEADER, ""))
            if key
            else None
        )
        # The caller retries, so calls made while serving it make one attempt each; and work
        # whose caller has stopped waiting is refused rather than done for nobody.
        with (
            context.call_context(headers.get(CORRELATION_HEADER), idempotency),
            deadline.deadline(deadline.from_header(headers.get(deadline.DEADLINE_HEADER))),
            retried_above(attempt_from_header(headers.get(ATTEMPT_HEADER))),
        ):
            deadline.check()
            kwargs = {f: getattr(params, f) for f in params.__struct_fields__}
            if spec.actor_index is not None:
                kwargs["actor"] = caller.actor
            timed = timer(spec.name, caller.identity)
            started = perf_counter()
            with tracing.span(
                f"{service}/{spec.name}",
                SpanKind.SERVER,
                {"rpc.system": "colony", "rpc.method": spec.name, "rpc.caller": caller.identity},
                service=service,
                parent=tracing.extract(headers),
            ):
                try:
                    result = await getattr(implementation, spec.name)(**kwargs)
                except BaseException as exc:
                    timed.failed(exc, started)
                    raise
            timed.ok.observe(perf_counter() - started)
        if spec.result_decoder is None:
            return Response(status_code=204)
        return Response(spec.encoder.encode(result), media_type="application/json")

    return call


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class HttpClientFactory:
    """Clients for remote services, sharing one keep-alive connection pool and the process's
    resilience policies (one :class:`Dependency` per service, its replicas as endpoints)."""

    def __init__(self, resilience: Resilience | None = None, timeout_seconds: float = 10.0) -> None:
        self.resilience = resilience or Resilience()
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # aiohttp's connections set TCP_NODELAY (no Nagle + delayed-ACK stalls on loopback).
            # A bound per service, none overall: under one overall bound, idle connections
            # kept for one service took the places another needed, and the pool kept closing
            # and opening connections (seen as connect() in profiles of a busy orders replica).
            # Idle connections kept well under the 10 s after which a server closes one that
            # sends nothing (HEADER_READ_SECONDS): reusing one the server is closing would
            # fail a call for nothing.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=128, keepalive_timeout=5)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        await self.resilience.close()
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

    def client(
        self,
        api: type,
        base_urls: Sequence[str],
        issuer: TokenIssuer,
        name: str | None = None,
        audience: str | None = None,
        prefix: str = "/rpc/",
    ) -> Any:
        """An object with the interface's methods, each a POST to ``prefix`` + the method at
        one of the replicas, with a token from ``issuer`` naming the caller, the service
        (``audience``, by default ``api.service_name``) and the actor the call is made for."""
        methods = interface_methods(api)
        dependency = self.resilience.dependency(
            name or api.__name__, [url.rstrip("/") for url in base_urls]
        )
        dependency.start_probing(self._probe)
        audience = audience or api.service_name  # type: ignore[attr-defined]
        namespace = {
            name: _remote_method(self, spec, dependency, issuer, audience, prefix)
            for name, spec in methods.items()
        }
        namespace["__repr__"] = lambda self: f"<HTTP client {api.__name__} at {dependency}>"
        cls = types.new_class(f"Http{api.__name__}", (), {}, lambda ns: ns.update(namespace))
        return cls()

    async def _probe(self, base_url: str, seconds: float) -> bool:
        """Liveness, not readiness: a replica whose database is briefly away still answers
        calls that need none, and its own errors count against its breaker anyway."""
        timeout = aiohttp.ClientTimeout(total=seconds)
        try:
            async with self.session().get(base_url + "/health/live", timeout=timeout) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False


def _remote_method(
    factory: HttpClientFactory,
    spec: MethodSpec,
    dependency: Dependency,
    issuer: TokenIssuer,
    audience: str,
    prefix: str,
) -> Any:
    path = prefix + spec.name
    timers = CallTimers(issuer.identity, spec.name, "", peer=audience)

    name = f"{audience}/{spec.name}"
    attributes = {"rpc.system": "colony", "rpc.method": spec.name, "server.address": audience}

    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = perf_counter()
        try:
            with tracing.child(name, SpanKind.CLIENT, attributes, service=issuer.identity):
                result = await call(*args, **kwargs)
        except BaseException as exc:
            timers.failed(exc, started)
            raise
        timers.ok.observe(perf_counter() - started)
        return result

    async def call(*args: Any, **kwargs: Any) -> Any:
        bound = spec.signature.bind(None, *args, **kwargs)
        arguments = dict(bound.arguments)
        arguments.pop(next(iter(spec.signature.parameters)))
        actor = arguments.pop("actor", None) if spec.actor_index is not None else None
        body = spec.encoder.encode(spec.params(**arguments))
        headers = {
            "content-type": "application/json",
            "authorization": "Bearer " + issuer.token(audience, actor),
        }
        if cid := context.correlation_id():
            headers[CORRELATION_HEADER] = cid
        tracing.inject(headers)
        idem = context.idempotency_request()
        if idem is not None:
            headers[IDEMPOTENCY_KEY_HEADER] = idem.key
            headers[IDEMPOTENCY_FINGERPRINT_HEADER] = idem.fingerprint
        if (attempt := attempt_number()) > 1:
            headers[ATTEMPT_HEADER] = str(attempt)

        async def send(base_url: str, seconds: float) -> bytes:
            # The callee gets this attempt's time (already cut to the caller's deadline), less
            # a little for its answer to travel back: its own calls give up, and its fallbacks
            # answer, before this caller stops waiting.
            budget = seconds - min(_ANSWER_RESERVE_SECONDS, seconds / 10)
            headers[deadline.DEADLINE_HEADER] = str(max(1, int(budget * 1000)))
            try:
                async with factory.session().post(
                    base_url + path,
                    data=body,
                    headers=headers,
                    timeout=UNTIMED,
                ) as response:
                    payload = await response.read()
                    status = response.status
            except aiohttp.ClientConnectorError as exc:
                raise NotSent(f"{dependency.name}: {exc}") from exc
            except aiohttp.ClientError as exc:
                raise ConnectionError(f"{dependency.name}: {exc.__class__.__name__}") from exc
            if status >= 400:
                try:
                    problem = _problem_decoder.decode(payload)
                except msgspec.DecodeError:
                    raise ServiceUnavailable(f"{dependency.name} answered {status}") from None
                raise ColonyError.from_problem(problem)
            return payload

        try:
            payload = await dependency.call(send, repeatable=spec.repeatable or idem is not None)
        except TimeoutError as exc:
            # The same class whatever went wrong on the way, so callers (and the gateway's
            # problem handler) see a 503 they can retry, not a 500.
            raise ServiceUnavailable(f"{dependency.name} did not answer in time.") from exc
        except ConnectionError as exc:
            raise ServiceUnavailable(f"{dependency.name} could not be reached.") from exc
        if spec.result_decoder is None:
            return None
        return spec.result_decoder.decode(payload)

    method.__name__ = spec.name
    return method
