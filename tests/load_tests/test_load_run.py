"""Whole runs: against a server that stalls (the schedule holds, outcomes are unknown, the
in-flight bound drops instead of queueing), and a short run against the marketplace whose
acknowledged orders all exist and end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from typer.testing import CliRunner

from checkout_helpers import wait_for
from colony.cli.main import app as colony_app
from colony.load import LOAD_BUYER_PASSWORD, LoadConfig, LoadReport, run_load
from colony.marketplace import Marketplace
from colony.platform.web.server import HttpServer, free_port
from conftest import Session, list_product, sign_up


class StallingShop:
    """Answers the load's set-up, then holds every later request until released."""

    def __init__(self, stall: bool) -> None:
        self.stall = stall
        self.release = asyncio.Event()
        self.arrived: list[float] = []
        self.setup_done = False

    async def categories(self, request: web.Request) -> web.Response:
        if self.setup_done:
            self.arrived.append(time.perf_counter())
            if self.stall:
                await self.release.wait()
        self.setup_done = True
        return web.json_response([{"slug": "books", "name": "Books"}])

    async def listings(self, request: web.Request) -> web.Response:
        items = [{"id": "l1", "title": "Pocket atlas", "currency": "EUR"}]
        return web.json_response({"items": items})

    async def listing(self, request: web.Request) -> web.Response:
        return web.json_response({"listing": {"id": "l1"}, "available": 3})


@contextlib.asynccontextmanager
async def stalling_shop(stall: bool = True) -> AsyncIterator[tuple[str, StallingShop]]:
    shop = StallingShop(stall)
    web_app = web.Application()
    web_app.router.add_get("/api/v1/categories", shop.categories)
    web_app.router.add_get("/api/v1/listings", shop.listings)
    web_app.router.add_get("/api/v1/listings/{id}", shop.listing)
    runner = web.AppRunner(web_app, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", shop
    finally:
        shop.release.set()
        await runner.cleanup()


async def test_a_stalled_server_gets_its_arrivals_on_time_and_they_end_unknown():
    async with stalling_shop() as (url, shop):
        started = time.perf_counter()
        report = await run_load(
            LoadConfig(url=url, rate=50, duration=1, mix={"browse": 1}, timeout=0.3)
        )
        elapsed = time.perf_counter() - started
    browse = report.kinds["browse"]
    assert (report.arrivals, browse.unknown, browse.ok, browse.failed) == (50, 50, 0, 0)
    assert report.errors == {"timeout": 50}
    # Open loop: the server received every arrival on schedule although it answered none
    # (a closed loop of one user would have sent 4 in that time).
    assert len(shop.arrived) == 50
    first = shop.arrived[0]
    for seconds in (0.2, 0.4, 0.6, 0.8):
        by_then = sum(at - first <= seconds + 0.05 for at in shop.arrived)
        assert by_then >= int(seconds * 50), (seconds, by_then)
    assert elapsed < 2.5
    assert browse.latency.p50 >= 300  # ms from due time: the whole timeout
    # All were due in second 0; the last timed out in second 1.
    assert [(s.sent, s.unknown) for s in report.timeline] == [(50, 50), (0, 0)]
    assert sum(s.completed for s in report.timeline) == 50


async def test_past_the_in_flight_bound_arrivals_are_dropped_not_delayed():
    async with stalling_shop() as (url, shop):
        report = await run_load(
            LoadConfig(
                url=url, rate=50, duration=1, mix={"browse": 1}, timeout=0.3, max_in_flight=5
            )
        )
    browse = report.kinds["browse"]
    assert browse.arrivals == browse.ok + browse.failed + browse.unknown == 50
    assert browse.dropped == browse.failed == report.errors["dropped: too many in flight"]
    assert browse.dropped >= 20
    assert len(shop.arrived) == browse.unknown == 50 - browse.dropped
    assert report.achieved_rate < report.intended_rate


async def test_one_seed_gives_one_sequence_of_requests(tmp_path):
    kinds = []
    for run in ("a", "b"):
        history = tmp_path / f"{run}.jsonl"
        async with stalling_shop(stall=False) as (url, _):
            config = LoadConfig(
                url=url,
                rate=100,
                duration=0.3,
                mix={"browse": 1, "search": 1, "product": 1},
                seed=5,
                history=str(history),
            )
            await run_load(config)
        entries = sorted(
            (json.loads(line) for line in history.read_text().splitlines()),
            key=lambda e: e["index"],
        )
        kinds.append([entry["kind"] for entry in entries])
    assert len(kinds[0]) == 30 and len(set(kinds[0])) == 3
    assert kinds[0] == kinds[1]


async def test_stopping_ends_the_schedule_and_reports_what_ran():
    async with stalling_shop(stall=False) as (url, _):
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.4, stop.set)
        started = time.perf_counter()
        report = await run_load(
            LoadConfig(url=url, rate=50, duration=30, mix={"browse": 1}), stop=stop
        )
    assert time.perf_counter() - started < 2
    assert report.stopped and 10 <= report.arrivals <= 30
    assert report.kinds["all"].ok == report.arrivals
    assert report.intended_rate == pytest.approx(50, rel=0.2)


@pytest.fixture
async def served(marketplace: Marketplace) -> AsyncIterator[str]:
    """The gateway of the in-process marketplace, on a real port for aiohttp."""
    server = HttpServer(marketplace.app, "127.0.0.1", free_port())
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()


async def log_in(client: httpx.AsyncClient, email: str) -> Session:
    login = await client.post(
        "/api/v1/tokens", json={"email": email, "password": LOAD_BUYER_PASSWORD}
    )
    assert login.status_code == 200, login.text
    return Session(login.json()["account"], login.json()["access_token"], LOAD_BUYER_PASSWORD)


async def all_orders_end(client: httpx.AsyncClient, report: LoadReport) -> None:
    for checkout in report.checkouts:
        if checkout.outcome == "ok":
            assert checkout.order_id
            buyer = await log_in(client, checkout.buyer)
            assert buyer.id == checkout.buyer_id
            order = await wait_for(client, buyer, checkout.order_id)
            assert order["status"] in ("completed", "cancelled")


@pytest.mark.parametrize("marketplace", ["inprocess"], indirect=True)
async def test_a_short_run_against_the_marketplace(client, served, tmp_path):
    seller = await sign_up(client, "seller")
    for title in ("Pocket atlas", "Walnut lamp", "Wool scarf", "Oak chair"):
        await list_product(client, seller, stock=40, title=title, price_minor=1500)
    history = tmp_path / "history.jsonl"
    progress: list[tuple[str, int, int]] = []

    config = LoadConfig(url=served, rate=15, duration=2, buyers=3, seed=3, history=str(history))
    report = await run_load(config, lambda *update: progress.append(update))

    everything = report.kinds["all"]
    assert report.arrivals == everything.arrivals == 30
    assert (everything.failed, everything.unknown) == (0, 0), report.errors
    assert all(report.kinds[kind].arrivals for kind in ("browse", "search", "product", "cart"))
    assert report.requests > report.arrivals and report.buyers == 3
    assert sum(second.sent for second in report.timeline) == 30
    assert len(history.read_text().splitlines()) == 30
    assert progress[-1] == ("load", 30, 30) and ("buyers", 8, 8) in progress

    # Every acknowledged order exists, and ends.
    assert report.checkouts and report.kinds["checkout"].ok == len(report.checkouts)
    for checkout in report.checkouts:
        assert checkout.outcome == "ok" and checkout.posted and checkout.status == 201
        assert checkout.order_id and 1 <= len(checkout.listings) <= 3
    await all_orders_end(client, report)

    saved = report.save(tmp_path / "report.json")
    assert LoadReport.load(saved) == report

    # The command, on the same marketplace: the buyers registered above are signed in again.
    out = tmp_path / "cli.json"
    args = ["load", "--url", served, "--rate", "10", "--duration", "1", "--buyers", "2"]
    result = await asyncio.to_thread(
        CliRunner(env={"COLUMNS": "200"}).invoke, colony_app, [*args, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "10 arrivals" in result.output and "checkout" in result.output
    from_cli = LoadReport.load(out)
    assert from_cli.arrivals == 10
    assert out.with_suffix(".history.jsonl").exists()
    await all_orders_end(client, from_cli)  # and leave no saga running for the next test
