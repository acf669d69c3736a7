"""OWASP API8:2023 Security Misconfiguration, tried against the gateway: answers a browser
would mistreat (sniffed, framed, read from another site, kept by a cache), HSTS believed from
anyone, problems that tell the outside about the inside, and CSRF tokens that work in a
session they were not made in."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from colony.marketplace import Marketplace
from colony.platform.errors import ColonyError, ServiceUnavailable
from colony.services.gateway.app import create_app
from colony.services.gateway.auth import Authenticator
from conftest import list_product, sign_up

ELSEWHERE = "203.0.113.7"  # a documentation address: not this host's
SHOP = "https://shop.example"
EVIL = "https://evil.example"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
INTERNAL_WORDS = ("10.0.3.7", "5432", "Traceback", "asyncpg", "RuntimeError", "secret-table")


def gateway(market: Marketplace, backends: Any = None, **options: Any) -> ASGIApp:
    settings = market.runtime.settings
    auth = Authenticator(market.backends.identity)
    return create_app(backends or market.backends, settings, auth, **options)


def client_at(
    app: ASGIApp, address: str = "127.0.0.1", scheme: str = "http", **options: Any
) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000), **options)
    return httpx.AsyncClient(transport=transport, base_url=f"{scheme}://colony.test")


# --- headers on every answer ------------------------------------------------------------------

EVERY_KIND_OF_ANSWER = [
    "/api/v1/categories",  # API data
    "/api/v1/listings?page_size=1000",  # API problem (422)
    "/api/v1/nothing-here",  # 404 problem
    "/api/openapi.json",
    "/api/docs",
    "/api/docs/assets/swagger-ui-bundle.js",
    "/.well-known/jwks.json",
    "/health/live",
    "/static/style.css",
    "/",  # storefront page
    "/listings/no-such-listing",  # storefront error page
]


@pytest.mark.parametrize("path", EVERY_KIND_OF_ANSWER)
async def test_every_answer_can_be_neither_sniffed_nor_framed(client, path):
    response = await client.get(path)
    assert response.status_code < 500, response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] in ("no-referrer", "same-origin")
    assert "strict-transport-security" not in response.headers  # plain HTTP from this host


async def test_api_answers_may_load_nothing_and_account_data_is_not_cached(client):
    buyer = await sign_up(client, "buyer")
    answer = await client.get("/api/v1/cart", headers=buyer.headers)
    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert answer.headers["cache-control"] == "no-store"
    refused = await client.get("/api/v1/cart", headers={"authorization": "Bearer x.y.z"})
    assert refused.status_code == 401 and refused.headers["cache-control"] == "no-store"


async def test_the_api_docs_page_runs_swagger_and_nothing_else(client):
    page = await client.get("/api/docs")
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in page.headers["content-security-policy"].split(";")
    )
    # Its one inline script runs because its hash is allowed; no other inline script would.
    inline = re.search(r"<script>(.*?)</script>", page.text, re.S)
    assert inline is not None
    digest = base64.b64encode(hashlib.sha256(inline.group(1).encode()).digest()).decode()
    assert policy["script-src"].split() == ["'self'", f"'sha256-{digest}'"]
    assert "unsafe-inline" not in policy["script-src"] and "unsafe-eval" not in policy["script-src"]
    # Its bundle and style sheet come from here, and so does the document it fetches.
    for asset in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert asset.startswith("/api/docs/assets/"), asset
        assert (await client.get(asset)).status_code == 200
    assert "/api/openapi.json" in inline.group(1)
    assert policy["connect-src"] == "'self'" and policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert page.headers["x-frame-options"] == "DENY"


# --- HSTS and the proxies trusted to say "https" ----------------------------------------------


async def test_hsts_only_over_tls_and_forwarded_tls_only_from_a_trusted_proxy(marketplace):
    app = gateway(marketplace, trusted_proxies=["192.0.2.10"])
    forwarded = {"x-forwarded-proto": "https"}
    async with client_at(app, scheme="https") as direct:
        over_tls = await direct.get("/api/v1/categories")
    assert over_tls.headers["strict-transport-security"].startswith("max-age=31536000")
    async with client_at(app, "192.0.2.10") as proxy, client_at(app, ELSEWHERE) as stranger:
        behind_proxy = await proxy.get("/login", headers=forwarded)
        assert "strict-transport-security" in behind_proxy.headers
        # What is behind the proxy sees https too: the cookies it sets are Secure.
        assert "secure" in behind_proxy.headers["set-cookie"].lower()
        claimed = await stranger.get("/login", headers=forwarded)
        assert "strict-transport-security" not in claimed.headers
        assert "secure" not in claimed.headers["set-cookie"].lower()
        plain = await proxy.get("/login", headers={"x-forwarded-proto": "http"})
        assert "strict-transport-security" not in plain.headers


# --- cross-origin requests ---------------------------------------------------------------------


async def test_other_sites_cannot_read_the_api_by_default(client):
    buyer = await sign_up(client, "buyer")
    read = await client.get("/api/v1/cart", headers={**buyer.headers, "origin": EVIL})
    assert read.status_code == 200  # sent (a browser sends it), but never handed to the page
    assert not any(name.startswith("access-control-") for name in read.headers)
    preflight = await client.options(
        "/api/v1/cart/items",
        headers={
            "origin": EVIL,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 403
    assert preflight.headers["content-type"] == "application/problem+json"
    assert "access-control-allow-origin" not in preflight.headers


async def test_an_allowed_origin_may_call_with_a_token_but_never_with_cookies(marketplace):
    app = gateway(marketplace, cors_origins=[SHOP])
    async with client_at(app) as c:
        preflight = await c.options(
            "/api/v1/cart/items",
            headers={"origin": SHOP, "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == SHOP
        assert "authorization" in preflight.headers["access-control-allow-headers"]
        assert "access-control-allow-credentials" not in preflight.headers
        read = await c.get("/api/v1/categories", headers={"origin": SHOP})
        assert read.headers["access-control-allow-origin"] == SHOP
        assert "Origin" in read.headers["vary"]
        assert "access-control-allow-credentials" not in read.headers
        other = await c.get("/api/v1/categories", headers={"origin": EVIL})
        assert "access-control-allow-origin" not in other.headers
        refused = await c.options(
            "/api/v1/categories", headers={"origin": EVIL, "access-control-request-method": "GET"}
        )
        assert refused.status_code == 403
    with pytest.raises(ValueError):
        gateway(marketplace, cors_origins=["*"])


# --- what problems tell the outside -----------------------------------------------------------


class BrokenCatalog:
    """The real catalog, except that its calls fail with what an internal failure says."""

    def __init__(self, real: Any, failure: Exception) -> None:
        self.real = real
        self.failure = failure

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def categories(self) -> Any:
        raise self.failure

    async def get_listing(self, listing_id: str) -> Any:
        raise self.failure


INTERNAL_FAILURES = [
    ServiceUnavailable(
        "The catalog database cannot be reached: connection to 10.0.3.7:5432 refused"
        " (asyncpg.exceptions.ConnectionDoesNotExistError)",
        dsn="postgresql://catalog@10.0.3.7:5432/catalog",
    ),
    ColonyError("The payment provider refused the request: Traceback ... secret-table"),
    RuntimeError("secret-table is corrupt at 10.0.3.7:5432"),
]


@pytest.mark.parametrize("failure", INTERNAL_FAILURES, ids=["unavailable", "internal", "crash"])
async def test_server_side_problems_tell_nothing_of_the_inside(marketplace, failure):
    broken = BrokenCatalog(marketplace.backends.catalog, failure)
    app = gateway(marketplace, dataclasses.replace(marketplace.backends, catalog=broken))
    async with client_at(app, ELSEWHERE, raise_app_exceptions=False) as c:
        answer = await c.get("/api/v1/categories")
        assert answer.status_code in (500, 503)
        assert answer.headers["content-type"] == "application/problem+json"
        problem = answer.json()
        assert set(problem) <= {"type", "title", "status", "detail", "instance", "correlation_id"}
        assert problem["status"] == answer.status_code and problem["detail"]
        if isinstance(failure, ColonyError):
            assert problem["type"] == failure.type_uri  # still says what kind of trouble
            assert problem["correlation_id"]  # which finds the whole story in the logs
        page = await c.get("/listings/some-listing")
        assert page.status_code in (500, 503) and "text/html" in page.headers["content-type"]
    for text in (answer.text, str(answer.headers), page.text):
        for word in INTERNAL_WORDS:
            assert word not in text, (word, text)


async def test_client_errors_keep_their_explanation(client):
    problem = (await client.get("/api/v1/listings", params={"page_size": 1000})).json()
    assert problem["status"] == 422 and "page_size" in problem["detail"]


# --- CSRF tokens belong to one session ----------------------------------------------------------


async def sign_in(web: httpx.AsyncClient, account: Any) -> None:
    login = await web.get("/login")
    token = CSRF_INPUT.search(login.text)
    assert token is not None
    answer = await web.post(
        "/login",
        data={
            "email": account.account["email"],
            "password": account.password,
            "csrf_token": token.group(1),
        },
    )
    assert answer.status_code == 303, answer.text


async def form_token(web: httpx.AsyncClient, path: str) -> tuple[str, str]:
    """The token in a page's form, and the cookie that goes with it."""
    page = await web.get(path)
    found = CSRF_INPUT.search(page.text)
    assert found is not None, page.text
    return found.group(1), web.cookies["colony_csrf"]


async def test_a_csrf_token_works_only_in_the_session_it_was_made_in(client, marketplace):
    seller = await sign_up(client, "seller")
    listing = await list_product(client, seller, stock=5)
    victim, attacker = await sign_up(client, "buyer"), await sign_up(client, "buyer")
    product = f"/listings/{listing['id']}"
    async with client_at(marketplace.app) as v, client_at(marketplace.app) as a:
        await sign_in(v, victim)
        await sign_in(a, attacker)
        field, cookie = await form_token(a, product)
        # The attacker's own pair, planted in the victim's browser (cookie tossing): refused.
        v.cookies.set("colony_csrf", cookie, domain="colony.test")
        planted = await v.post(
            "/cart/items", data={"listing_id": listing["id"], "csrf_token": field}
        )
        assert planted.status_code == 403
        assert (await client.get("/api/v1/cart", headers=victim.headers)).json()["lines"] == []
        # The same pair still works where it was made, and the victim's own page works too.
        mine = await a.post("/cart/items", data={"listing_id": listing["id"], "csrf_token": field})
        assert mine.status_code == 303
        own_field, _ = await form_token(v, product)
        assert own_field != field  # the victim's page made a token for its own session
        own = await v.post(
            "/cart/items", data={"listing_id": listing["id"], "csrf_token": own_field}
        )
        assert own.status_code == 303
        assert len((await client.get("/api/v1/cart", headers=victim.headers)).json()["lines"]) == 1


async def test_a_token_from_before_sign_in_does_not_survive_it(marketplace, client):
    buyer = await sign_up(client, "buyer")
    async with client_at(marketplace.app) as web:
        field, _ = await form_token(web, "/login")
        answer = await web.post(
            "/login",
            data={
                "email": buyer.account["email"],
                "password": buyer.password,
                "csrf_token": field,
            },
        )
        assert answer.status_code == 303
        stale = await web.post("/logout", data={"csrf_token": field})
        assert stale.status_code == 403
        assert web.cookies.get("colony_session")  # still signed in


async def test_by_default_only_a_proxy_on_this_host_is_believed(marketplace):
    forwarded = {"x-forwarded-proto": "https"}
    async with client_at(marketplace.app) as local, client_at(marketplace.app, ELSEWHERE) as far:
        assert "strict-transport-security" in (await local.get("/", headers=forwarded)).headers
        assert "strict-transport-security" not in (await far.get("/", headers=forwarded)).headers
