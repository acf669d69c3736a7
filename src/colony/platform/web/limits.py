"""A cap on request body size, enforced while the body streams in (413 past it)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colony.platform.errors import PayloadTooLarge
from colony.platform.web.problems import problem_response


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._reject(scope, receive, send)
                    return
                break
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise PayloadTooLarge(self._detail())
            return message

        await self.app(scope, limited_receive, send)

    def _detail(self) -> str:
        return f"The body may be at most {self.max_bytes} bytes."

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(PayloadTooLarge(self._detail()), scope.get("path"))
        await response(scope, receive, send)
