"""The indexed router answers every request as Starlette's own router does."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Mount, Route

from colony.platform.web.routing import indexed_app


def _answer(name: str):
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"{name} {request.path_params}")

    return endpoint


def _routes() -> list[BaseRoute]:
    return [
        Route("/items", _answer("list items"), methods=["GET"]),
        Route("/items", _answer("add item"), methods=["POST"]),
        # A route with a parameter before a fixed path it also matches: it must still win.
        Route("/things/{name}", _answer("a thing")),
        Route("/things/special", _answer("the special thing")),
        Route("/items/{item_id:int}", _answer("one item"), methods=["GET"]),
        Route("/only-get", _answer("only get"), methods=["GET"]),
        Route("/slash/", _answer("with a slash")),
        Mount("/files", routes=[Route("/{path:path}", _answer("a file"))]),
        Route("/items/new", _answer("never: the int route does not take it")),
    ]


REQUESTS = [
    ("GET", "/items"),
    ("POST", "/items"),
    ("DELETE", "/items"),  # 405 with both methods named
    ("GET", "/things/special"),
    ("GET", "/things/other"),
    ("GET", "/items/42"),
    ("GET", "/items/new"),
    ("POST", "/items/42"),  # 405 from the int route
    ("PUT", "/only-get"),
    ("GET", "/slash"),  # a redirect to /slash/
    ("GET", "/files/a/b.txt"),
    ("GET", "/nowhere"),
    ("HEAD", "/items"),
]


async def _ask(app: Starlette, method: str, path: str) -> tuple[int, str, str | None]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.request(method, path, follow_redirects=False)
    return answer.status_code, answer.text, answer.headers.get("allow")


@pytest.mark.parametrize(("method", "path"), REQUESTS)
async def test_the_indexed_router_answers_as_starlettes_own(method: str, path: str) -> None:
    expected = await _ask(Starlette(routes=_routes()), method, path)
    assert await _ask(indexed_app(_routes()), method, path) == expected


async def test_the_parameter_route_given_first_wins_over_the_fixed_path() -> None:
    status, text, _ = await _ask(indexed_app(_routes()), "GET", "/things/special")
    assert (status, text) == (200, "a thing {'name': 'special'}")
