"""RFC 9457 problem details for every error a web app can answer with."""

from __future__ import annotations

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

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


def problem_response(error: ColonyError, instance: str | None = None) -> Response:
    problem = error.to_problem(instance)
    if cid := context.correlation_id():
        problem.setdefault("correlation_id", cid)
    headers = {}
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
    return problem_response(error, request.url.path)


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
