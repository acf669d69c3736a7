"""The headers that tell a browser how to treat every answer of a public edge, pages and API
alike, and the one place that decides whether a request came over TLS.

Every answer gets ``X-Content-Type-Options: nosniff`` (a JSON answer is never run as a script
or shown as a page), ``X-Frame-Options: DENY`` (no page of ours inside another site's frame),
a referrer policy, ``Cross-Origin-Resource-Policy: same-origin``, and a content security
policy: the one its path is given, or :data:`API_POLICY` (nothing may load, run or frame). An
answer that sets a header itself keeps its own (the storefront's pages have their policy).
An answer to a request with an ``Authorization`` header is not stored by any cache unless it
says otherwise.

Over TLS, answers also carry HSTS. Whether a request came over TLS is the connection's own
scheme, or, from a proxy in ``trusted_proxies`` alone, its ``X-Forwarded-Proto: https``; the
scope's scheme is then set to https for everything behind (so cookies are marked Secure). By
default a proxy on this host is trusted: whoever can connect from it already runs on the
machine, and HSTS received over plain HTTP is ignored by browsers anyway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""For answers that are data, not pages: a browser that opens one loads nothing from it."""
LOCAL_PROXIES = frozenset({"127.0.0.1", "::1"})
HSTS_SECONDS = 365 * 24 * 3600


class SecurityHeaders:
    """``policies``: ``(path prefix, content security policy)``, the first that matches wins."""

    def __init__(
        self,
        app: ASGIApp,
        policies: Sequence[tuple[str, str]] = (),
        default_policy: str = API_POLICY,
        trusted_proxies: Collection[str] = LOCAL_PROXIES,
        hsts_seconds: int = HSTS_SECONDS,
    ) -> None:
        self.app = app
        self.trusted_proxies = frozenset(trusted_proxies)
        hsts = (b"strict-transport-security", f"max-age={hsts_seconds}; includeSubDomains".encode())
        # Each answer's fixed headers, written once for each policy, over TLS and not: every
        # request takes one of these as it is.
        self._policies = [
            (prefix, _fixed_headers(policy.encode()), _fixed_headers(policy.encode(), hsts))
            for prefix, policy in policies
        ]
        self._default = (
            _fixed_headers(default_policy.encode()),
            _fixed_headers(default_policy.encode(), hsts),
        )

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function handing back the app's awaitable: no coroutine of its own per
        # request, none per send.
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        if scope.get("scheme") != "https" and self._forwarded_over_tls(scope):
            scope = {**scope, "scheme": "https"}
        fixed = self._headers(scope)
        # A bearer token's answers are one account's; the storefront marks its signed-in
        # pages itself, while its other answers (style sheets too) come with cookies.
        credentials = False
        for name, _ in scope["headers"]:
            if name == b"authorization":
                credentials = True
                break

        def send_with_headers(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in fixed if header[0] not in present)
                if credentials and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            return send(message)

        return self.app(scope, receive, send_with_headers)

    def _forwarded_over_tls(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client or client[0] not in self.trusted_proxies:
            return False
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                # A chain of proxies appends: the first is what the client itself used.
                proto: bytes = value.split(b",")[0].strip().lower()
                return proto == b"https"
        return False

    def _headers(self, scope: Scope) -> tuple[tuple[bytes, bytes], ...]:
        path = scope["path"]
        plain, secure = self._default
        for prefix, policy_plain, policy_secure in self._policies:
            if path.startswith(prefix):
                plain, secure = policy_plain, policy_secure
                break
        return secure if scope.get("scheme") == "https" else plain


def _fixed_headers(
    policy: bytes, *over_tls: tuple[bytes, bytes]
) -> tuple[tuple[bytes, bytes], ...]:
    return (
        (b"content-security-policy", policy),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-resource-policy", b"same-origin"),
        *over_tls,
    )
