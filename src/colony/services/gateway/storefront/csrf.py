"""Cross-site request forgery protection: the double-submit cookie pattern.

Each browser gets a random token in the ``colony_csrf`` cookie and the same token in every
form's hidden ``csrf_token`` field. Another site can make a browser send the cookie (not even
that: it is SameSite=Strict) but cannot read it, so it cannot forge the matching field.
"""

from __future__ import annotations

import hmac
import re
import secrets

from starlette.requests import Request
from starlette.responses import Response

from colony.platform.errors import Forbidden

CSRF_COOKIE = "colony_csrf"
CSRF_FIELD = "csrf_token"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


def csrf_token(request: Request) -> str:
    """The browser's token, or a new one (kept on the request: one response, one cookie)."""
    token = getattr(request.state, "csrf_token", None)
    if token is None:
        token = request.cookies.get(CSRF_COOKIE, "")
        if not _TOKEN.match(token):
            token = secrets.token_urlsafe(32)
            request.state.csrf_new = True
        request.state.csrf_token = token
    return token


def remember_csrf(request: Request, response: Response) -> None:
    """Set the cookie when this request made the token."""
    if getattr(request.state, "csrf_new", False):
        set_csrf_cookie(request, response, request.state.csrf_token)


def set_csrf_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/",
        secure=request.url.scheme == "https",
    )


def rotate_csrf(request: Request, response: Response) -> None:
    """A new token when the account changes, so a token planted before sign-in is useless."""
    set_csrf_cookie(request, response, secrets.token_urlsafe(32))


def check_csrf(request: Request, submitted: object) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not (
        isinstance(submitted, str)
        and _TOKEN.match(cookie)
        and hmac.compare_digest(submitted.encode(), cookie.encode())
    ):
        raise Forbidden(
            "This form could not be verified (it may have expired, or come from another site)."
            " Go back, reload the page and try again."
        )
