"""The sink's HTTP side: list, read and clear what it received (JSON)."""

from __future__ import annotations

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.mail_sink.store import MailStore
from colony.platform.errors import InvalidInput, NotFound
from colony.platform.web.problems import install_problem_handlers

_encode = msgspec.json.Encoder().encode
MAX_LIMIT = 1000


def _json(value: object) -> Response:
    return Response(_encode(value), media_type="application/json")


def create_app(store: MailStore) -> Starlette:
    async def list_messages(request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            raise InvalidInput("limit must be a number.") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}.")
        items = await store.recent(request.query_params.get("to") or None, limit)
        return _json({"items": items})

    async def get_message(request: Request) -> Response:
        message = await store.get(request.path_params["id"])
        if message is None:
            raise NotFound(f"No message {request.path_params['id']}.")
        return _json(message)

    async def clear(request: Request) -> Response:
        return _json({"deleted": await store.clear()})

    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/messages", list_messages, methods=["GET"]),
            Route("/messages", clear, methods=["DELETE"]),
            Route("/messages/{id}", get_message, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    install_problem_handlers(app)
    return app
