"""The signed-in browser: its session cookie, and sending it to log in when a page needs it."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from colony.platform.errors import Forbidden
from colony.platform.security import Actor, Role
from colony.services.gateway.auth import SESSION_COOKIE


class SignInRequired(Exception):
    """Raised by a page that needs an account; answered with a redirect to the login form."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def safe_next(value: str | None, default: str = "/") -> str:
    """Where to go after logging in: only a path on this site.

    "//evil.example" and "/\\evil.example" are read by browsers as other hosts, so the path
    must start with exactly one slash; control characters could split headers or hide tricks.
    """
    if (
        not value
        or not value.startswith("/")
        or value[1:2] in ("/", "\\")
        or any(ch < " " or ch == "\x7f" for ch in value)
        or len(value) > 2000
    ):
        return default
    return value


def login_url(next_path: str) -> str:
    return "/login?" + urlencode({"next": safe_next(next_path)})


def here(request: Request) -> str:
    """This page's path and query, to come back to after logging in."""
    query = request.url.query
    return request.url.path + ("?" + query if query else "")


def redirect(url: str) -> Response:
    # 303: after a POST the browser fetches the next page with GET.
    return RedirectResponse(url, status_code=303)


def require_role(actor: Actor | None, role: Role, next_path: str) -> Actor:
    """The account, if signed in with ``role`` (admins may do anything, as in the services)."""
    if actor is None:
        raise SignInRequired(next_path)
    if actor.role not in (role, "admin"):
        raise Forbidden(f"This page is for {role} accounts.")
    return actor


def start_session(request: Request, response: Response, token: str, ttl_seconds: int) -> None:
    # What the rest of this request binds to (a new CSRF token): the session it starts.
    request.state.session_token = token
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=ttl_seconds,
        httponly=True,
        samesite="lax",
        path="/",
        secure=request.url.scheme == "https",
    )


def end_session(request: Request, response: Response) -> None:
    request.state.session_token = ""
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
