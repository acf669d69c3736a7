"""The gateway's edge: per-client rate limits (429), load shedding (503), and stale search
answers while the catalog is down; health and static files are never limited nor shed."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from colony.marketplace import Marketplace, running_marketplace
from colony.platform.config import Settings
from colony.platform.errors import ServiceUnavailable
from colony.platform.web.rate_limit import TokenBuckets
from colony.platform.web.shedding import ConcurrencyLimit
from colony.services.catalog.api import SearchQuery
from colony.services.gateway.app import create_app
from colony.services.gateway.auth import Authenticator
from colony.services.gateway.last_good import LastGood
from conftest import list_product, settings_for, sign_up, topology_for
from fake_clock import FakeClock
from waiting import eventually

ELSEWHERE = "203.0.113.7"  # documentation addresses: not this host's, so not exempt
OTHER = "198.51.100.9"


def gateway(market: Marketplace, backends: Any = None, **overrides: Any) -> ASGIApp:
    """A gateway of its own over the marketplace's services, with these settings changed."""
    settings = msgspec.structs.replace(market.runtime.settings, **overrides)
    return create_app(
        backends or market.backends, settings, Authenticator(market.backends.identity)
    )


def client_at(app: ASGIApp, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://colony.test")


def assert_problem(response: httpx.Response, status: int, slug: str) -> int:
    """The response is the problem; returns its Retry-After."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"/problems/{slug}"
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


# --- the token bucket, on a fake clock -------------------------------------------------------


def test_a_bucket_gives_its_burst_then_refills_at_its_rate():
    clock = FakeClock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token comes every half second
    clock.now += 0.25
    assert buckets.take("a") == pytest.approx(0.25)
    clock.now += 0.25
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    clock.now += 3600  # a long rest refills to the burst, never past it
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0  # each key its own bucket


def test_idle_buckets_are_dropped_and_the_number_tracked_is_bounded():
    clock = FakeClock()
    buckets = TokenBuckets(rate=10.0, burst=5, max_clients=3, clock=clock)
    for key in "abcd":
        buckets.take(key)
    assert len(buckets) == 3
    clock.now += 0.5  # the time a bucket needs to refill: idle that long, it is a new one
    buckets.take("e")
    assert len(buckets) == 1


# --- rate limits at the gateway ---------------------------------------------------------------


async def test_a_client_past_its_burst_gets_429_and_others_do_not(marketplace):
    app = gateway(marketplace, rate_limit_per_second=0.5, rate_limit_burst=3, rate_limit_exempt="")
    async with client_at(app, ELSEWHERE) as one, client_at(app, OTHER) as other:
        for _ in range(3):
            assert (await one.get("/api/v1/categories")).status_code == 200
        refused = await one.get("/api/v1/categories")
        assert 1 <= assert_problem(refused, 429, "rate-limited") <= math.ceil(1 / 0.5)
        assert (await other.get("/api/v1/categories")).status_code == 200
        # Health and static files are never counted, however far past its limit a client is.
        assert (await one.get("/health/live")).status_code == 200
        assert (await one.get("/health/ready")).status_code == 200
        assert (await one.get("/static/style.css")).status_code == 200


async def test_an_account_has_its_own_bucket_and_made_up_tokens_do_not(marketplace):
    app = gateway(marketplace, rate_limit_per_second=0.5, rate_limit_burst=3, rate_limit_exempt="")
    async with client_at(app, ELSEWHERE) as crowded, client_at(app, OTHER) as home:
        buyer = await sign_up(home, "buyer")  # two requests from OTHER
        # A token's first use counts against its address; once verified, against its account.
        assert (await home.get("/api/v1/me", headers=buyer.headers)).status_code == 200
        for _ in range(3):
            await crowded.get("/api/v1/categories")
        assert (await crowded.get("/api/v1/categories")).status_code == 429
        assert (await crowded.get("/api/v1/me", headers=buyer.headers)).status_code == 200
        forged = {"authorization": f"Bearer {uuid.uuid4().hex}"}
        assert_problem(await crowded.get("/api/v1/categories", headers=forged), 429, "rate-limited")


async def test_the_defaults_do_not_limit_this_hosts_clients(client):
    """The suite, the bench and the load generator all come from 127.0.0.1."""
    answers = await asyncio.gather(*(client.get("/api/v1/categories") for _ in range(300)))
    assert {a.status_code for a in answers} == {200}


# --- load shedding ----------------------------------------------------------------------------


class HeldCatalog:
    """The real catalog, except that listing categories waits until released."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def categories(self) -> Any:
        self.entered.set()
        await self.release.wait()
        return await self.real.categories()


async def test_a_gateway_at_capacity_sheds_with_503_while_health_answers(marketplace):
    held = HeldCatalog(marketplace.backends.catalog)
    backends = dataclasses.replace(marketplace.backends, catalog=held)
    app = gateway(marketplace, backends, gateway_max_concurrency=1, gateway_max_queue=0)
    async with client_at(app, "127.0.0.1") as c:
        first = asyncio.create_task(c.get("/api/v1/categories"))
        await asyncio.wait_for(held.entered.wait(), 5)
        shed = await c.get("/api/v1/listings")
        assert assert_problem(shed, 503, "overloaded") == 1
        assert (await c.get("/health/live")).status_code == 200
        assert (await c.get("/health/ready")).status_code == 200
        held.release.set()
        assert (await first).status_code == 200
        assert (await c.get("/api/v1/listings")).status_code == 200  # the slot came back


class Hold:
    """An ASGI app that answers each request once told to."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.go = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.entered.set()
        await self.go.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_a_freed_slot_goes_to_a_waiting_request_and_a_full_queue_sheds():
    inner = Hold()
    limiter = ConcurrencyLimit(inner, limit=1, queue=1, wait_seconds=5.0)
    async with client_at(limiter, ELSEWHERE) as c:
        first = asyncio.create_task(c.get("/"))
        second = asyncio.create_task(c.get("/"))

        async def queued() -> bool:
            return limiter.waiting == 1

        await eventually(queued)
        assert (await c.get("/")).status_code == 503  # one inside, one waiting: no room
        inner.go.set()
        assert [(await first).status_code, (await second).status_code] == [200, 200]
    assert (limiter.active, limiter.waiting, limiter.shed) == (0, 0, 1)


async def test_a_wait_that_runs_out_is_shed_and_leaks_no_slot():
    inner = Hold()
    limiter = ConcurrencyLimit(inner, limit=1, queue=4, wait_seconds=0.01)
    async with client_at(limiter, ELSEWHERE) as c:
        first = asyncio.create_task(c.get("/"))
        await asyncio.wait_for(inner.entered.wait(), 5)
        assert (await c.get("/")).status_code == 503
        inner.go.set()
        assert (await first).status_code == 200
        assert (await c.get("/")).status_code == 200
    assert (limiter.active, limiter.waiting) == (0, 0)


# --- stale search answers ---------------------------------------------------------------------


class FlakyCatalog:
    """The real catalog, whose search fails with ``failure`` while one is set."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.failure: Exception | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def search(self, query: SearchQuery) -> Any:
        if self.failure is not None:
            raise self.failure
        return await self.real.search(query)


@pytest.mark.parametrize(
    "failure", [ServiceUnavailable("catalog: connection refused"), TimeoutError()]
)
async def test_a_search_while_the_catalog_is_down_answers_stale(marketplace, client, failure):
    seller = await sign_up(client, "seller")
    word = f"stale{uuid.uuid4().hex[:8]}"
    await list_product(client, seller, title=f"Lamp {word}")
    flaky = FlakyCatalog(marketplace.backends.catalog)
    app = gateway(marketplace, dataclasses.replace(marketplace.backends, catalog=flaky))
    async with client_at(app, "127.0.0.1") as c:
        fresh = await c.get("/api/v1/listings", params={"q": word})
        assert fresh.status_code == 200 and fresh.json()["stale"] is False
        assert fresh.json()["total"] == 1
        flaky.failure = failure
        stale = await c.get("/api/v1/listings", params={"q": word})
        assert stale.status_code == 200
        assert stale.json() == {**fresh.json(), "stale": True}
        if isinstance(failure, ServiceUnavailable):
            never_asked = await c.get("/api/v1/listings", params={"q": word, "page_size": 5})
            assert never_asked.status_code == 503  # no answer to fall back on: the failure
        flaky.failure = None
        assert (await c.get("/api/v1/listings", params={"q": word})).json()["stale"] is False


async def test_no_stale_answers_when_turned_off(marketplace):
    flaky = FlakyCatalog(marketplace.backends.catalog)
    backends = dataclasses.replace(marketplace.backends, catalog=flaky)
    app = gateway(marketplace, backends, search_stale_seconds=0)
    async with client_at(app, "127.0.0.1") as c:
        assert (await c.get("/api/v1/listings", params={"q": "lamp"})).status_code == 200
        flaky.failure = ServiceUnavailable("catalog: down")
        unavailable = await c.get("/api/v1/listings", params={"q": "lamp"})
        assert unavailable.status_code == 503
        assert unavailable.headers["content-type"] == "application/problem+json"


def test_stale_answers_are_bounded_in_number_and_age():
    clock = FakeClock()
    kept: LastGood[str] = LastGood(max_age_seconds=60, max_entries=2, clock=clock)
    for key in "abc":
        kept.remember(key, key.upper())
    assert (len(kept), kept.recall("a"), kept.recall("c")) == (2, None, "C")
    clock.now += 61
    assert kept.recall("c") is None


@pytest.fixture
async def split_market(tmp_path) -> AsyncIterator[Marketplace]:
    """Every service behind its own HTTP server, so the catalog can really be stopped."""
    async with running_marketplace(
        settings_for(tmp_path), topology_for("http"), serve=False
    ) as market:
        yield market


async def test_a_search_answers_stale_when_the_catalog_server_is_stopped(split_market):
    transport = httpx.ASGITransport(app=split_market.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as c:
        seller = await sign_up(c, "seller")
        await list_product(c, seller, title="Teak stool")
        fresh = await c.get("/api/v1/listings", params={"q": "teak"})
        assert fresh.json()["total"] == 1
        await split_market.runtime.servers["catalog"].stop()
        stale = await c.get("/api/v1/listings", params={"q": "teak"})
        assert stale.status_code == 200
        assert stale.json() == {**fresh.json(), "stale": True}


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value",
    [
        ("RATE_LIMIT_PER_SECOND", "-1"),
        ("RATE_LIMIT_BURST", "0"),
        ("GATEWAY_MAX_CONCURRENCY", "-5"),
        ("GATEWAY_MAX_QUEUE", "lots"),
        ("GATEWAY_QUEUE_WAIT_SECONDS", "30"),
        ("SEARCH_STALE_SECONDS", "-1"),
    ],
)
def test_bad_edge_settings_are_refused(name, value):
    with pytest.raises(msgspec.ValidationError):
        Settings.from_env({f"COLONY_{name}": value})


async def test_limits_refuse_values_that_cannot_work(marketplace):
    for rate, burst in ((0.0, 10), (math.inf, 10), (math.nan, 10), (1.0, 0)):
        with pytest.raises(ValueError):
            TokenBuckets(rate, burst)
    with pytest.raises(ValueError):
        ConcurrencyLimit(Hold(), limit=0)
    with pytest.raises(ValueError):
        gateway(marketplace, rate_limit_per_second=math.inf)


async def test_the_api_document_names_the_edge_answers(client):
    document = (await client.get("/api/openapi.json")).json()
    search = document["paths"]["/api/v1/listings"]["get"]
    for status in ("429", "503"):
        assert "Retry-After" in search["responses"][status]["headers"]
    schema = document["components"]["schemas"]["SearchAnswer"]
    assert schema["properties"]["stale"]["type"] == "boolean"
