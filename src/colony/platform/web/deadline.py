"""Every request gets a deadline at the edge, and nothing it causes outlives it.

The deadline enters the call's context (:mod:`colony.platform.resilience.deadline`), so each
call the request makes carries what is left of it, and each service refuses work whose caller
has stopped waiting. Here it also bounds the handler itself: a request still unanswered when
its deadline passes gets a 504 problem rather than a connection that hangs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colony.platform.errors import DeadlineExceeded
from colony.platform.resilience import deadline
from colony.platform.web.problems import problem_response


class RequestDeadline:
    """``routes`` gives some requests their own budget: ``(method, path prefix, seconds)``,
    the first that matches wins; the rest get ``default_seconds``. Paths under ``exempt``
    (health probes, which have bounds of their own) get none."""

    def __init__(
        self,
        app: ASGIApp,
        default_seconds: float,
        routes: Sequence[tuple[str, str, float]] = (),
        exempt: Sequence[str] = ("/health/",),
    ) -> None:
        if default_seconds <= 0 or any(seconds <= 0 for _, _, seconds in routes):
            raise ValueError("a request deadline must be positive")
        self.app = app
        self.default_seconds = default_seconds
        self.routes = list(routes)
        self.exempt = tuple(exempt)

    def budget(self, method: str, path: str) -> float | None:
        if path.startswith(self.exempt):
            return None
        for route_method, prefix, seconds in self.routes:
            if method == route_method and path.startswith(prefix):
                return seconds
        return self.default_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seconds = self.budget(scope["method"], scope["path"])
        if seconds is None:
            await self.app(scope, receive, send)
            return
        started = False

        def tracking_send(message: Message) -> Awaitable[None]:
            # A plain function handing back send's awaitable: no coroutine of its own per send.
            nonlocal started
            started = True
            return send(message)

        try:
            async with deadline.deadline(seconds):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            if started:
                raise
            error = DeadlineExceeded(f"No answer within {seconds:g} s; try again shortly.")
            await problem_response(error, scope.get("path"))(scope, receive, send)
