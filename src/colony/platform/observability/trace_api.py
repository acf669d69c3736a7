"""The trace store as JSON, for operators' tools and tests on the gateway's machine.

``GET /admin/traces`` searches (the console's criteria as query parameters) and
``GET /admin/traces/{trace_id}`` gives one trace's spans, earliest first. The gateway answers
``/admin/`` to its own machine alone; the console is where people look.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import InvalidInput, NotFound
from colony.platform.observability.trace_store import TraceStore

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_encode = msgspec.json.Encoder().encode
_TEXT = {"order_id", "correlation_id", "service"}
MAX_LIMIT = 500


def trace_routes(store: TraceStore) -> list[Route]:
    async def search(request: Request) -> Response:
        criteria = _criteria(dict(request.query_params))
        return _json(store.search(**criteria))

    async def one(request: Request) -> Response:
        trace_id = request.path_params["trace_id"]
        if not _TRACE_ID.fullmatch(trace_id):
            raise InvalidInput("A trace id is 32 lowercase hex digits.")
        spans = store.trace(trace_id)
        if not spans:
            raise NotFound(f"No trace {trace_id} is kept.")
        return _json(spans)

    return [
        Route("/admin/traces", search, methods=["GET"]),
        Route("/admin/traces/{trace_id}", one, methods=["GET"]),
    ]


def _criteria(query: dict[str, str]) -> dict[str, Any]:
    """The search's keyword arguments from a query string, refusing what does not fit."""
    criteria: dict[str, Any] = {}
    for name, value in query.items():
        if name in _TEXT:
            if not 0 < len(value) <= 200:
                raise InvalidInput(f"{name} must be 1 to 200 characters.")
            criteria[name] = value
        elif name == "error":
            if value not in ("true", "false"):
                raise InvalidInput("error must be true or false.")
            criteria[name] = value == "true"
        elif name in ("min_duration_ms", "limit"):
            criteria[name] = _number(name, value, float if name == "min_duration_ms" else int)
        else:
            raise InvalidInput(f"Unknown search parameter {name!r}.")
    return criteria


def _number(name: str, value: str, kind: Callable[[str], float]) -> float:
    try:
        number = kind(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a number.") from None
    top = MAX_LIMIT if name == "limit" else 86_400_000
    if not (1 if name == "limit" else 0) <= number <= top:
        raise InvalidInput(f"{name} must be between {int(name == 'limit')} and {top}.")
    return number


def _json(value: Any) -> Response:
    return Response(_encode(value), media_type="application/json")
