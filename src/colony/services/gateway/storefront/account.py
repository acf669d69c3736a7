"""Logging in, registering and logging out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import ColonyError
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


def _home_of(grant: TokenGrant) -> str:
    return "/seller" if grant.account.role == "seller" else "/"


def routes(site: Site) -> list[Route]:
    identity = site.backends.identity

    def signed_in(request: Request, grant: TokenGrant, next_path: str) -> Response:
        response = redirect(safe_next(next_path, _home_of(grant)))
        start_session(request, response, grant.access_token, site.settings.token_ttl_seconds)
        rotate_csrf(request, response)
        site.remember_name(grant.account.id, grant.account.name)
        return response

    async def form_page(
        request: Request,
        template: str,
        form: dict[str, str],
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        form = {**form, "next": safe_next(form.get("next"), "")}
        form.pop("password", None)  # never echoed back into the page
        return await site.render(
            request, template, {"form": form, "errors": errors or {}}, status=status
        )

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
            grant = await identity.issue_token(credentials)
        except FormInvalid as exc:
            return await form_page(request, "login.html", fields, exc.errors, exc.status)
        except ColonyError as exc:  # 401: the e-mail or password is not correct
            return await form_page(request, "login.html", fields, {GENERAL: exc.detail}, exc.status)
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
            account = await identity.register(convert(data, Registration, LABELS))
            grant = await identity.issue_token(
                Credentials(email=account.email, password=data["password"])
            )
        except FormInvalid as exc:
            return await form_page(
                request, "register.html", {**fields, **data}, exc.errors, exc.status
            )
        except ColonyError as exc:  # 409: the e-mail is taken
            field = "email" if exc.status == 409 else GENERAL
            return await form_page(
                request, "register.html", {**fields, **data}, {field: exc.detail}, exc.status
            )
        return signed_in(request, grant, fields.get("next", ""))

    @site.page
    async def logout(request: Request) -> Response:
        await read_form(request)  # a page elsewhere must not be able to log people out
        response = redirect("/")
        end_session(request, response)
        rotate_csrf(request, response)
        return response

    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/register", register_form, methods=["GET"]),
        Route("/register", register, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
