"""Cross-origin requests from browsers: refused unless the page's origin is on an allow-list.

With an empty list (the default) no answer carries ``Access-Control-Allow-Origin``, so a page
on another site can send a request but never read the answer, and its preflights (what a
browser asks before a request with a bearer token or a JSON body) are refused with a 403
problem. An origin on the list may call with a bearer token; never with cookies
(``Access-Control-Allow-Credentials`` is never sent), so the storefront's session cannot be
used from another site, whatever the list holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colony.platform.errors import Forbidden
from colony.platform.web.problems import problem_response

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOWED_HEADERS = "authorization, content-type, idempotency-key, x-correlation-id"
EXPOSED_HEADERS = "retry-after, x-correlation-id"
PREFLIGHT_MAX_AGE_SECONDS = 600


class CrossOrigin:
    def __init__(self, app: ASGIApp, allowed_origins: Collection[str] = ()) -> None:
        if "*" in allowed_origins:
            raise ValueError("name each origin allowed; '*' would allow every site")
        self.app = app
        self.allowed = frozenset(origin.rstrip("/").lower() for origin in allowed_origins)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function handing back the app's awaitable: no coroutine of its own per
        # request, nor per send.
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        origin = preflight_method = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                preflight_method = value
        if origin is None:
            return self.app(scope, receive, send)
        allowed = origin.lower() in self.allowed
        if scope["method"] == "OPTIONS" and preflight_method is not None:
            return self._preflight(allowed, origin, scope, receive, send)
        if not allowed:
            return self.app(scope, receive, send)

        def send_allowing(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                headers = [
                    *message.get("headers", ()),
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-expose-headers", EXPOSED_HEADERS.encode()),
                    (b"vary", b"Origin"),
                ]
                message = {**message, "headers": headers}
            return send(message)

        return self.app(scope, receive, send_allowing)

    async def _preflight(
        self, allowed: bool, origin: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        response: Response
        if not allowed:
            error = Forbidden("Requests from pages on other sites are not allowed here.")
            response = problem_response(error, scope.get("path"), {"vary": "Origin"})
        else:
            response = Response(
                status_code=204,
                headers={
                    "access-control-allow-origin": origin,
                    "access-control-allow-methods": ALLOWED_METHODS,
                    "access-control-allow-headers": ALLOWED_HEADERS,
                    "access-control-max-age": str(PREFLIGHT_MAX_AGE_SECONDS),
                    "vary": "Origin",
                },
            )
        await response(scope, receive, send)
