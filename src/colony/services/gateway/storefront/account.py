"""Logging in, registering and logging out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import ColonyError, RateLimited, Unauthorized
from colony.platform.logging import get_logger
from colony.services.gateway.auth import SESSION_COOKIE, client_address
from colony.services.gateway.storefront.csrf import rotate_csrf
from colony.services.gateway.storefront.forms import GENERAL, FormInvalid, convert, read_form
from colony.services.gateway.storefront.session import (
    end_session,
    redirect,
    safe_next,
    start_session,
)
from colony.services.gateway.storefront.site import Site
from colony.services.identity.api import Credentials, Registration, TokenGrant

LABELS = {"email": "E-mail", "password": "Password", "name": "Name", "role": "Account type"}
REGISTERED_NOT_SIGNED_IN = (
    "Check your e-mail. If this address already had an account, we have sent it a note and"
    " nothing was changed: log in with that account's password."
)
_NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
"""On answers that set or clear the session cookie, which holds a token."""
_log = get_logger("storefront")


def _home_of(grant: TokenGrant) -> str:
    return "/seller" if grant.account.role == "seller" else "/"


def routes(site: Site) -> list[Route]:
    identity = site.backends.identity

    def signed_in(request: Request, grant: TokenGrant, next_path: str) -> Response:
        response = redirect(safe_next(next_path, _home_of(grant)))
        start_session(request, response, grant.access_token, site.settings.token_ttl_seconds)
        rotate_csrf(request, response)
        response.headers.update(_NO_STORE)
        site.remember_name(grant.account.id, grant.account.name)
        return response

    async def form_page(
        request: Request,
        template: str,
        form: dict[str, str],
        errors: dict[str, str] | None = None,
        status: int = 200,
        notice: str = "",
        retry_after: object = None,
    ) -> Response:
        form = {**form, "next": safe_next(form.get("next"), "")}
        form.pop("password", None)  # never echoed back into the page
        response = await site.render(
            request,
            template,
            {"form": form, "errors": errors or {}, "notice": notice},
            status=status,
        )
        if isinstance(retry_after, int):
            response.headers["retry-after"] = str(retry_after)
        return response

    @site.page
    async def login_form(request: Request) -> Response:
        next_path = request.query_params.get("next", "")
        return await form_page(request, "login.html", {"next": next_path})

    @site.page
    async def login(request: Request) -> Response:
        fields = await read_form(request)
        fields["email"] = fields.get("email", "").strip()
        try:
            credentials = convert(
                {"email": fields["email"], "password": fields.get("password", "")},
                Credentials,
                LABELS,
            )
            grant = await identity.issue_token(credentials, client_address(request))
        except FormInvalid as exc:
            return await form_page(request, "login.html", fields, exc.errors, exc.status)
        except ColonyError as exc:  # 401: not correct; 429: too many failures, wait
            return await form_page(
                request,
                "login.html",
                fields,
                {GENERAL: exc.detail},
                exc.status,
                retry_after=exc.extensions.get("retry_after"),
            )
        return signed_in(request, grant, fields.get("next", ""))

    @site.page
    async def register_form(request: Request) -> Response:
        return await form_page(
            request,
            "register.html",
            {"next": request.query_params.get("next", ""), "role": "buyer"},
        )

    @site.page
    async def register(request: Request) -> Response:
        fields = await read_form(request)
        data = {
            "email": fields.get("email", "").strip(),
            "password": fields.get("password", ""),
            "name": fields.get("name", "").strip(),
            "role": fields.get("role", "buyer"),
        }
        try:
            registration = convert(data, Registration, LABELS)
            await identity.register(registration)
        except FormInvalid as exc:
            return await form_page(
                request, "register.html", {**fields, **data}, exc.errors, exc.status
            )
        except ColonyError as exc:  # 422: a password too common or guessable
            invalid = FormInvalid.from_service(exc, data)
            return await form_page(
                request, "register.html", {**fields, **data}, invalid.errors, invalid.status
            )
        try:
            grant = await identity.issue_token(
                Credentials(email=registration.email, password=registration.password),
                client_address(request),
            )
        except (Unauthorized, RateLimited):
            # Registration answers alike whether or not the e-mail had an account; when it had,
            # the password typed is not that account's, and the person is sent to log in.
            return await form_page(
                request,
                "login.html",
                {"email": data["email"], "next": fields.get("next", "")},
                notice=REGISTERED_NOT_SIGNED_IN,
            )
        return signed_in(request, grant, fields.get("next", ""))

    @site.page
    async def logout(request: Request) -> Response:
        await read_form(request)  # a page elsewhere must not be able to log people out
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            try:
                await site.auth.revoke(token)
            except Unauthorized:
                pass  # expired or not ours: it works nowhere already
            except ColonyError as exc:
                # The browser forgets the token all the same; it works until it expires.
                _log.warning("could not revoke a session's token at log-out", error=exc.detail)
        response = redirect("/")
        end_session(request, response)
        rotate_csrf(request, response)
        response.headers.update(_NO_STORE)
        return response

    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/register", register_form, methods=["GET"]),
        Route("/register", register, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
