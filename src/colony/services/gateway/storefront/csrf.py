"""Cross-site request forgery protection: a double-submit cookie bound to the session.

Each browser gets a token in the ``colony_csrf`` cookie and the same token in every form's
hidden ``csrf_token`` field. Another site can make a browser send the cookie (not even that:
it is SameSite=Strict) but cannot read it, so it cannot forge the matching field.

A cookie can still be planted from elsewhere (a sibling subdomain, a plain-HTTP answer on the
way), so the token is also bound to the session it was made in: it is a random nonce and an
HMAC of that nonce keyed with the session cookie, which is HttpOnly and never leaves the
browser and this site. A pair of cookie and field taken from the attacker's own session fails
in the victim's. Keying with the session itself needs no secret shared by the gateway's
replicas. Before sign-in the key is empty: such a token binds to "no session", and signing in
or out makes a new one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from starlette.requests import Request
from starlette.responses import Response

from colony.platform.errors import Forbidden
from colony.services.gateway.auth import SESSION_COOKIE

CSRF_COOKIE = "colony_csrf"
CSRF_FIELD = "csrf_token"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43}$")


def csrf_token(request: Request) -> str:
    """The browser's token if it belongs to this session, else a new one (kept on the
    request: one response, one cookie)."""
    token = getattr(request.state, "csrf_token", None)
    if token is None:
        token = request.cookies.get(CSRF_COOKIE, "")
        if not _bound_to(token, _session_of(request)):
            token = _new_token(_session_of(request))
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
    """A new token when the account changes, bound to the session this response starts (or
    to none, when it ends one), so a token planted before sign-in is useless."""
    set_csrf_cookie(request, response, _new_token(_session_of(request)))


def check_csrf(request: Request, submitted: object) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not (
        isinstance(submitted, str)
        and hmac.compare_digest(submitted.encode(), cookie.encode())
        and _bound_to(cookie, _session_of(request))
    ):
        raise Forbidden(
            "This form could not be verified (it may have expired, or come from another site)."
            " Go back, reload the page and try again."
        )


def _session_of(request: Request) -> str:
    """The session this request is in: the one its response starts or ends, if any (see
    ``session.start_session``), else the one its cookie holds."""
    starting: str | None = getattr(request.state, "session_token", None)
    if starting is not None:
        return starting
    return request.cookies.get(SESSION_COOKIE, "")


def _new_token(session: str) -> str:
    nonce = secrets.token_urlsafe(24)
    return f"{nonce}.{_mac(session, nonce)}"


def _bound_to(token: str, session: str) -> bool:
    if not _TOKEN.match(token):
        return False
    nonce, _, mac = token.partition(".")
    return hmac.compare_digest(mac, _mac(session, nonce))


def _mac(session: str, nonce: str) -> str:
    digest = hmac.new(session.encode(), nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
