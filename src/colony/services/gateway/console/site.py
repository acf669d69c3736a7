"""What every console page shares: the admin at the keyboard, the templates, the pages'
headers, asking every service at once, and failures turned into pages.

The console is the storefront's sibling: server-rendered pages on the same signed session and
the same CSRF protection (:mod:`colony.services.gateway.storefront.csrf`), for admin accounts
alone. Anyone not signed in is sent to log in; any other account gets a 403 page, as the
storefront answers a page that is not for one's role. The pages work without JavaScript:
``/console/static/console.js`` only fetches a page again every few seconds and swaps in its
live region (``data-live``), and without it the list pages reload themselves.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from colony.platform import context
from colony.platform.config import Settings
from colony.platform.context import CORRELATION_HEADER
from colony.platform.errors import ColonyError, Forbidden, NotFound, ServiceUnavailable
from colony.platform.logging import get_logger
from colony.platform.runtime.operations import OperationsApi
from colony.platform.security import Actor
from colony.services.gateway.auth import Authenticator
from colony.services.gateway.backends import Backends
from colony.services.gateway.console.catalogue import Catalogue, build_catalogue
from colony.services.gateway.storefront.csrf import CSRF_FIELD, csrf_token, remember_csrf
from colony.services.gateway.storefront.display import format_when, order_ref
from colony.services.gateway.storefront.forms import FormInvalid
from colony.services.gateway.storefront.money import format_money
from colony.services.gateway.storefront.session import SignInRequired, here, login_url, redirect

T = TypeVar("T")
Page = Callable[[Request, Actor], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

HERE = Path(__file__).parent
STOREFRONT_TEMPLATES = HERE.parent / "storefront" / "templates"
CONSOLE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self';"
    " base-uri 'none'"
)
"""Scripts and styles from this site alone (the live refresh), never inline; no frames."""
_HEADERS = {
    "content-security-policy": CONSOLE_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "private, no-store",
}
ASK_SECONDS = 2.0
"""How long a page waits for any one service: one that does not answer is named on the page,
and the rest is shown."""
SECTIONS = (
    ("/console", "Service map"),
    ("/console/traces", "Traces"),
    ("/console/sagas", "Sagas"),
    ("/console/dead-letters", "Dead letters"),
    ("/console/outboxes", "Outboxes"),
    ("/console/faults", "Faults"),
)
_TROUBLE = "Something went wrong in the console. The logs have the detail, under this page's"
_log = get_logger("console")


@dataclass(frozen=True)
class Answers(Generic[T]):
    """Each service's answer, and why the others gave none."""

    found: dict[str, T]
    missing: dict[str, str]


class Console:
    def __init__(
        self,
        backends: Backends,
        auth: Authenticator,
        settings: Settings,
        event_catalogue: Mapping[str, Any] | None,
    ) -> None:
        self.backends = backends
        self.auth = auth
        self.settings = settings
        self.catalogue: Catalogue = build_catalogue(event_catalogue)
        self.templates = Jinja2Templates(directory=[HERE / "templates", STOREFRONT_TEMPLATES])
        env = self.templates.env
        # The storefront's macros (fields, CSRF, error summaries) are shared, with the
        # filters they use.
        env.filters["when"] = format_when
        env.filters["money"] = format_money
        env.filters["order_ref"] = order_ref
        env.filters["ms"] = format_ms
        env.filters["seconds"] = format_seconds
        env.filters["nanos_when"] = format_nanos
        env.globals["csrf_field"] = CSRF_FIELD
        env.globals["colour"] = service_colour
        env.globals["sections"] = SECTIONS

    @property
    def services(self) -> list[str]:
        return list(self.catalogue.services)

    # --- who is looking ---------------------------------------------------------------------
    async def admin(self, request: Request) -> Actor:
        """The signed-in admin; SignInRequired for nobody, Forbidden for anyone else."""
        actor = await self.auth.session(request)
        request.state.actor = actor
        if actor is None:
            raise SignInRequired(here(request) if request.method == "GET" else "/console")
        if actor.role != "admin":
            raise Forbidden("The operations console is for admin accounts.")
        return actor

    # --- asking the services ----------------------------------------------------------------
    def operations(self, service: str) -> OperationsApi:
        """The operations endpoint of ``service``: 404 for a name that is not a service's,
        503 when the gateway was given no way to reach them."""
        if service not in self.catalogue.services:
            raise NotFound(f"No service is called {service!r}.")
        if self.backends.operations is None:
            raise ServiceUnavailable(
                "This gateway was not connected to the services' operations endpoints."
            )
        return self.backends.operations(service)

    async def ask_each(
        self, ask: Callable[[OperationsApi], Awaitable[T]], services: Iterable[str] | None = None
    ) -> Answers[T]:
        """``ask`` every service (or those named) at once, each within :data:`ASK_SECONDS`."""
        names = list(self.services if services is None else services)

        async def one(name: str) -> T:
            async with asyncio.timeout(ASK_SECONDS):
                return await ask(self.operations(name))

        results = await asyncio.gather(*(one(name) for name in names), return_exceptions=True)
        found: dict[str, T] = {}
        missing: dict[str, str] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, ColonyError):
                missing[name] = result.detail
            elif isinstance(result, TimeoutError):
                missing[name] = f"no answer within {ASK_SECONDS:g} s"
            elif isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                _log.warning("console question failed", service=name, error=repr(result))
                missing[name] = "the question failed (see the logs)"
            else:
                found[name] = result
        return Answers(found=found, missing=missing)

    # --- answering --------------------------------------------------------------------------
    async def render(
        self,
        request: Request,
        template: str,
        values: dict[str, Any] | None = None,
        status: int = 200,
        live: int | None = None,
        reload: bool = True,
    ) -> Response:
        """A console page. ``live``: refresh its live region every so many seconds (unless
        ``?live=off``); where scripts do not run, the page reloads itself half as often if
        ``reload`` (not a page with a form one may be filling in)."""
        values = dict(values or {})
        actor: Actor | None = getattr(request.state, "actor", None)
        live_off = request.query_params.get("live") == "off"
        values.update(
            viewer=actor,
            csrf_token=functools.partial(csrf_token, request),
            current_path=request.url.path,
            live=None if live_off else live,
            reload=reload,
            live_off=live_off,
            live_off_url=_with_query(request, live="off"),
            live_on_url=_with_query(request, live=None),
            catalogue=self.catalogue,
        )
        response = self.templates.TemplateResponse(request, template, values, status_code=status)
        response.headers.update(_HEADERS)
        remember_csrf(request, response)
        return response

    async def error_page(self, request: Request, status: int, message: str) -> Response:
        return await self.render(
            request, "console/error.html", {"status": status, "message": message}, status=status
        )

    def page(self, handler: Page) -> Endpoint:
        """Wrap a page: its call context, the admin check, sign-in redirects, and errors
        shown as pages (a 4xx says what was wrong; a 5xx only where to look)."""

        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            with context.call_context(request.headers.get(CORRELATION_HEADER)):
                try:
                    return await handler(request, await self.admin(request))
                except SignInRequired as exc:
                    return redirect(login_url(exc.next_path))
                except FormInvalid as exc:
                    return await self.error_page(request, exc.status, exc.message)
                except ColonyError as exc:
                    if exc.status == 401:
                        return redirect(login_url(here(request)))
                    if exc.status >= 500:
                        _log.warning(
                            "console page failed",
                            path=request.url.path,
                            problem_type=exc.slug,
                            detail=exc.detail,
                        )
                        return await self.error_page(request, exc.status, self._trouble())
                    return await self.error_page(request, exc.status, exc.detail)
                except HTTPException as exc:
                    return await self.error_page(request, exc.status_code, str(exc.detail))
                except Exception:
                    _log.exception("console page failed", path=request.url.path)
                    return await self.error_page(request, 500, self._trouble())

        return endpoint

    @staticmethod
    def _trouble() -> str:
        return f"{_TROUBLE} correlation id, {context.correlation_id()}."


def _with_query(request: Request, **changes: str | None) -> str:
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    encoded = urlencode(params)
    return request.url.path + ("?" + encoded if encoded else "")


# --- how figures are written -----------------------------------------------------------------


def format_ms(value: float | None) -> str:
    """A duration in milliseconds, to a sensible precision: 0.42 ms, 12.3 ms, 1,234 ms."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value:.2f} ms"
    if value < 100:
        return f"{value:.1f} ms"
    return f"{value:,.0f} ms"


def format_nanos(unix_nano: int) -> str:
    """A span's time as the pages write times, to the millisecond."""
    moment = datetime.fromtimestamp(unix_nano / 1e9, UTC)
    return f"{format_when(moment.isoformat())[:-4]}:{moment:%S.%f}"[:-3] + " UTC"


def format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


_COLOURS = {
    "gateway": "#4e79a7",
    "identity": "#f28e2b",
    "catalog": "#e15759",
    "inventory": "#76b7b2",
    "cart": "#59a14f",
    "orders": "#edc948",
    "payments": "#b07aa1",
    "delivery": "#ff9da7",
    "notifications": "#9c755f",
    "recommendations": "#bab0ac",
    "payment-provider": "#8cd17d",
    "mail-sink": "#86bcb6",
}
_SPARE = ("#d37295", "#a0cbe8", "#ffbe7d", "#f1ce63", "#499894", "#fabfd2", "#d4a6c8")


def service_colour(service: str) -> str:
    """The colour a service is drawn in, on the map and in every waterfall: fixed for the
    known ones, and for any other the same on every page (a sum of its letters, not hash(),
    which changes between processes)."""
    known = _COLOURS.get(service)
    if known is not None:
        return known
    return _SPARE[sum(service.encode()) % len(_SPARE)]
