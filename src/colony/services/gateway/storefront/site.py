"""What every storefront page shares: the services, the templates, the signed-in viewer, the
header's data, and turning failures into pages."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from cachetools import TTLCache
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from colony.platform import context
from colony.platform.config import Settings
from colony.platform.context import CORRELATION_HEADER
from colony.platform.errors import ColonyError
from colony.platform.logging import get_logger
from colony.platform.security import Actor
from colony.services.catalog.api import Category
from colony.services.gateway.auth import Authenticator
from colony.services.gateway.backends import Backends
from colony.services.gateway.storefront.csrf import CSRF_FIELD, csrf_token, remember_csrf
from colony.services.gateway.storefront.display import format_when, order_ref
from colony.services.gateway.storefront.forms import FormInvalid
from colony.services.gateway.storefront.money import format_money
from colony.services.gateway.storefront.session import SignInRequired, here, login_url, redirect

Endpoint = Callable[[Request], Awaitable[Response]]
_log = get_logger("storefront")
# Pages carry forms and a session: never framed (clickjacking), no scripts at all, images may
# come from sellers' own hosts.
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' https: http:; script-src 'none';"
        " frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
_SERVER_TROUBLE = "Something went wrong on our side. Please try again in a moment."
# The header's unread count is a nicety: a slow notifications service must not hold up every
# page, so past this it is left out.
HEADER_BUDGET_SECONDS = 0.5


class Site:
    def __init__(self, backends: Backends, auth: Authenticator, settings: Settings) -> None:
        self.backends = backends
        self.auth = auth
        self.settings = settings
        self.templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
        self.templates.env.filters["money"] = format_money
        self.templates.env.filters["order_ref"] = order_ref
        self.templates.env.filters["when"] = format_when
        self.templates.env.globals["csrf_field"] = CSRF_FIELD
        # Both change rarely and are shown on many pages: saves a call per page, at the price
        # of a new category or a new account showing up to a few minutes late.
        self._categories: TTLCache[str, list[Category]] = TTLCache(maxsize=1, ttl=300)
        self._names: TTLCache[str, str] = TTLCache(maxsize=10_000, ttl=300)

    # --- who is looking ---------------------------------------------------------------------
    async def viewer(self, request: Request) -> Actor | None:
        if not hasattr(request.state, "actor"):
            request.state.actor = await self.auth.session(request)
        actor: Actor | None = request.state.actor
        return actor

    async def account_name(self, account_id: str, fallback: str = "Your account") -> str:
        """An account's display name (a seller's shop name, the viewer's own)."""
        name = self._names.get(account_id)
        if name is None:
            try:
                name = (await self.backends.identity.get_account(account_id)).name
            except ColonyError:
                return fallback  # a name is not worth failing a page for
            self._names[account_id] = name
        return name

    async def account_names(self, account_ids: Iterable[str], fallback: str) -> dict[str, str]:
        unique = list(dict.fromkeys(account_ids))
        names = await asyncio.gather(*(self.account_name(i, fallback) for i in unique))
        return dict(zip(unique, names, strict=True))

    def remember_name(self, account_id: str, name: str) -> None:
        self._names[account_id] = name

    async def _cart_count(self, actor: Actor) -> int | None:
        try:
            return (await self.backends.cart.get_cart(actor)).item_count
        except ColonyError:
            return None

    async def _unread_count(self, actor: Actor) -> int | None:
        try:
            async with asyncio.timeout(HEADER_BUDGET_SECONDS):
                return (await self.backends.notifications.feed(actor, 1)).unread
        except (ColonyError, TimeoutError):
            return None

    async def categories(self) -> list[Category]:
        found = self._categories.get("all")
        if found is None:
            found = self._categories["all"] = await self.backends.catalog.categories()
        return found

    async def category_names(self) -> dict[str, str]:
        return {c.slug: c.name for c in await self.categories()}

    # --- answering --------------------------------------------------------------------------
    async def render(
        self,
        request: Request,
        template: str,
        values: dict[str, Any] | None = None,
        status: int = 200,
    ) -> Response:
        values = dict(values or {})
        actor = await self.viewer(request)
        values["viewer"] = actor
        if actor is not None:
            # The header's lookups are independent: one round trip's wait, not three.
            lookups: dict[str, Awaitable[object]] = {"viewer_name": self.account_name(actor.id)}
            if actor.role == "buyer" and "cart_count" not in values:
                lookups["cart_count"] = self._cart_count(actor)
            if "unread_count" not in values:
                lookups["unread_count"] = self._unread_count(actor)
            values.update(zip(lookups, await asyncio.gather(*lookups.values()), strict=True))
        values["search_text"] = request.query_params.get("q", "")
        # Called by the template's csrf() macro: only pages with a form set the cookie, so the
        # others stay free of Set-Cookie (and cacheable).
        values["csrf_token"] = functools.partial(csrf_token, request)
        values["current_path"] = request.url.path
        values["login_link"] = self._login_link(request)
        response = self.templates.TemplateResponse(request, template, values, status_code=status)
        response.headers.update(_SECURITY_HEADERS)
        remember_csrf(request, response)
        if actor is not None or "set-cookie" in response.headers:
            response.headers["cache-control"] = "private, no-store"
        return response

    @staticmethod
    def _login_link(request: Request) -> str:
        """Log in, then come back here (when "here" is a page one can come back to)."""
        if request.url.path in ("/login", "/register"):
            return "/login"
        return login_url(here(request) if request.method == "GET" else "/")

    async def error_page(self, request: Request, status: int, message: str) -> Response:
        return await self.render(
            request, "error.html", {"status": status, "message": message}, status=status
        )

    def page(self, handler: Endpoint) -> Endpoint:
        """Wrap a page: its call context, sign-in redirects, and errors shown as pages."""

        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            with context.call_context(request.headers.get(CORRELATION_HEADER)):
                try:
                    return await handler(request)
                except FormInvalid as exc:  # a form error no page caught: still not a 500
                    return await self.error_page(request, exc.status, exc.message)
                except SignInRequired as exc:
                    return redirect(login_url(exc.next_path))
                except ColonyError as exc:
                    if exc.status == 401:  # the session ended between two pages
                        return redirect(
                            login_url(here(request) if request.method == "GET" else "/")
                        )
                    if exc.status >= 500:
                        # Written for operators, perhaps deep inside (an address, a driver's
                        # words): logged, and the page says what a shopper can do.
                        _log.warning(
                            "storefront page failed",
                            path=request.url.path,
                            problem_type=exc.slug,
                            detail=exc.detail,
                        )
                        return await self.error_page(request, exc.status, _SERVER_TROUBLE)
                    return await self.error_page(request, exc.status, exc.detail)
                except HTTPException as exc:  # e.g. a body the form parser cannot read
                    return await self.error_page(request, exc.status_code, str(exc.detail))
                except Exception:
                    _log.exception("storefront page failed", path=request.url.path)
                    return await self.error_page(request, 500, _SERVER_TROUBLE)

        return endpoint
