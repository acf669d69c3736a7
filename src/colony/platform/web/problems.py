"""RFC 9457 problem details for every error a web app can answer with."""

from __future__ import annotations

from collections.abc import Awaitable, Generator

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colony.platform import context
from colony.platform.errors import (
    ColonyError,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
)
from colony.platform.logging import get_logger

PROBLEM_JSON = "application/problem+json"
_encode = msgspec.json.Encoder().encode
_log = get_logger("web")


def problem_response(
    error: ColonyError, instance: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    problem = error.to_problem(instance)
    if cid := context.correlation_id():
        problem.setdefault("correlation_id", cid)
    headers = dict(headers or {})
    if error.status == 401:
        headers["www-authenticate"] = "Bearer"
    return Response(
        _encode(problem), status_code=error.status, media_type=PROBLEM_JSON, headers=headers
    )


async def _colony_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ColonyError)
    return problem_response(exc, request.url.path)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: ColonyError
    if exc.status_code == 404:
        error = NotFound(f"No resource at {request.url.path}")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    else:
        error = _generic(exc.status_code, str(exc.detail))
    # Starlette's own headers say what the client needs next (the Allow of a 405).
    return problem_response(error, request.url.path, dict(exc.headers or {}))


async def _timed_out(request: Request, exc: Exception) -> Response:
    # A dependency that did not answer in time (its effect unknown): a 503 tells the client
    # to try again, with its Idempotency-Key; a 500 would tell it nothing it could do.
    _log.warning("a call timed out", path=request.url.path, method=request.method)
    error = ServiceUnavailable("A service did not answer in time; try again shortly.")
    return problem_response(error, request.url.path)


async def _unexpected(request: Request, exc: Exception) -> Response:
    _log.exception("unhandled error", path=request.url.path, method=request.method)
    return problem_response(ColonyError("An unexpected error occurred."), request.url.path)


def _generic(status: int, detail: str) -> ColonyError:
    error = ColonyError(detail)
    # status is a ClassVar, one per error class; Starlette's other HTTP errors have no class
    # of ours, so theirs is set on the instance.
    error.status = status  # type: ignore[misc]
    return error


def install_problem_handlers(app: Starlette) -> None:
    app.add_exception_handler(ColonyError, _colony_error)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(TimeoutError, _timed_out)
    app.add_exception_handler(Exception, _unexpected)


PUBLIC_DETAILS = {
    "service-unavailable": "A service is unavailable right now; try again shortly"
    " (a POST with the same Idempotency-Key).",
    "circuit-open": "A service is failing; try again shortly"
    " (a POST with the same Idempotency-Key).",
    "overloaded": "Too many requests at once; try again in a second.",
    "deadline-exceeded": "No answer in time; try again shortly"
    " (a POST with the same Idempotency-Key).",
}
"""What the public is told of a server-side problem, by its type; any other: its title."""
_PUBLIC_FIELDS = ("type", "title", "status", "instance", "correlation_id")


class PublicProblems:
    """ASGI middleware for a public edge: a problem with a 5xx status keeps its type, title,
    status, instance and correlation id, and its detail becomes one written for the public.

    Why: the detail of a server-side problem is written for operators, and may come from deep
    inside (a service's address, a database driver's words, an exception's text); the
    correlation id finds it in the logs, where it is written in full. A 4xx problem is the
    client's own doing and its detail tells it what to change, so it passes untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function handing back the app's awaitable, and a send that is one too
        # until a problem is held: most answers pass through untouched.
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        held: Message | None = None
        body = bytearray()

        def rewrite(message: Message) -> Awaitable[None]:
            nonlocal held
            if held is None:
                if (
                    message["type"] == "http.response.start"
                    and message["status"] >= 500
                    and _is_problem(message)
                ):
                    held = message
                    return _HELD
                return send(message)
            if message["type"] != "http.response.body":
                return send(message)
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return _HELD
            return _send_public(send, held, _public_problem(bytes(body), scope))

        return self.app(scope, receive, rewrite)


async def _send_public(send: Send, held: Message, public: bytes) -> None:
    headers = [(k, v) for k, v in held["headers"] if k != b"content-length"]
    headers.append((b"content-length", str(len(public)).encode()))
    await send({**held, "headers": headers})
    await send({"type": "http.response.body", "body": public})


class _Nothing:
    """An awaitable that is done at once: what a send the middleware holds back gives."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return
        yield


_HELD = _Nothing()


def _is_problem(start: Message) -> bool:
    for name, value in start.get("headers", ()):
        if name == b"content-type":
            media_type: bytes = value.split(b";")[0].strip()
            return media_type == PROBLEM_JSON.encode()
    return False


def _public_problem(body: bytes, scope: Scope) -> bytes:
    try:
        problem = msgspec.json.decode(body)
    except msgspec.DecodeError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    slug = str(problem.get("type", "")).rsplit("/", 1)[-1]
    public = {key: problem[key] for key in _PUBLIC_FIELDS if key in problem}
    public.setdefault("title", ColonyError.title)
    public["detail"] = PUBLIC_DETAILS.get(slug, public["title"])
    # Passing trouble (a dependency down, the edge full) is answered often and logged where it
    # happens; anything else is kept here in full, for the correlation id to find.
    log = _log.debug if slug in PUBLIC_DETAILS else _log.warning
    log(
        "server-side problem answered",
        path=scope.get("path"),
        method=scope.get("method"),
        problem_type=slug or None,
        detail=problem.get("detail"),
        correlation_id=problem.get("correlation_id"),
    )
    return _encode(public)
