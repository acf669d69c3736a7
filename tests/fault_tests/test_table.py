"""The in-process fault table: each kind injected and healed, probabilities, the path with
nothing injected, and the admin surface that installs them."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from starlette.applications import Starlette

from colony.platform import faults
from colony.platform.errors import ServiceUnavailable
from colony.platform.faults import (
    ClockSkew,
    Drop,
    Duplicate,
    Latency,
    LoseResponse,
    Reset,
    Unavailable,
)


@pytest.fixture(autouse=True)
def empty_table():
    faults.heal_all()
    yield
    faults.heal_all()


def test_nothing_injected_is_none_and_costs_a_lookup():
    assert faults.link_fault("payments") is None
    assert faults.delivery_fault("notifications") is None
    started = time.perf_counter()
    for _ in range(100_000):
        faults.link_fault("payments")
    per_call = (time.perf_counter() - started) / 100_000
    assert per_call < 2e-6  # a dict lookup, well under a microsecond on this machine


async def test_latency_delays_the_call_and_heals():
    installed = faults.install(Latency(dependency="payments", delay_ms=50))
    assert installed.id
    fault = faults.link_fault("payments")
    assert fault is not None and faults.link_fault("orders") is None
    started = time.perf_counter()
    await fault.before_call()
    fault.after_call()
    assert time.perf_counter() - started >= 0.045
    assert faults.heal(installed.id)
    assert faults.link_fault("payments") is None
    assert not faults.heal(installed.id)


async def test_jitter_keeps_the_delay_within_its_bounds():
    faults._rng.seed(7)
    faults.install(Latency(dependency="payments", delay_ms=20, jitter_ms=20))
    fault = faults.link_fault("payments")
    assert fault is not None
    for _ in range(5):
        started = time.perf_counter()
        await fault.before_call()
        assert time.perf_counter() - started < 0.08


async def test_reset_and_unavailable_fail_before_the_call():
    faults.install(Reset(dependency="orders"))
    faults.install(Unavailable(dependency="catalog"))
    orders, catalog = faults.link_fault("orders"), faults.link_fault("catalog")
    assert orders is not None and catalog is not None
    with pytest.raises(ConnectionResetError, match="injected fault"):
        await orders.before_call()
    with pytest.raises(ServiceUnavailable, match="injected fault"):
        await catalog.before_call()


async def test_a_dropped_call_hangs_until_the_callers_timeout():
    faults.install(Drop(dependency="payments"))
    fault = faults.link_fault("payments")
    assert fault is not None
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await fault.before_call()


async def test_a_lost_response_comes_after_the_call():
    faults.install(LoseResponse(dependency="payment-provider"))
    fault = faults.link_fault("payment-provider")
    assert fault is not None
    await fault.before_call()  # the call goes ahead
    with pytest.raises(TimeoutError, match="lost"):
        fault.after_call()


async def test_a_probability_faults_that_share_of_calls():
    faults._rng.seed(1)
    faults.install(Reset(dependency="orders", probability=0.3))
    fault = faults.link_fault("orders")
    assert fault is not None
    failures = 0
    for _ in range(2000):
        try:
            await fault.before_call()
        except ConnectionResetError:
            failures += 1
    assert 500 < failures < 700


async def test_faults_on_one_link_combine_and_same_id_replaces():
    faults.install(Latency(id="slow", dependency="orders", delay_ms=10))
    faults.install(Reset(id="reset", dependency="orders"))
    fault = faults.link_fault("orders")
    assert fault is not None
    with pytest.raises(ConnectionResetError):
        await fault.before_call()
    faults.install(Latency(id="reset", dependency="orders", delay_ms=1))
    assert {f.id for f in faults.active()} == {"slow", "reset"}
    replaced = faults.link_fault("orders")
    assert replaced is not None
    await replaced.before_call()
    assert faults.heal_all() == 2
    assert faults.active() == []


def test_delivery_faults_are_per_consumer():
    faults.install(Duplicate(consumer="notifications"))
    assert faults.delivery_fault("notifications") is not None
    assert faults.delivery_fault("orders") is None


# --- the admin surface ---------------------------------------------------------------------


@pytest.fixture
async def admin():
    app = Starlette(routes=faults.admin_routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as client:
        yield client


async def test_admin_installs_lists_and_heals(admin):
    response = await admin.put(
        "/admin/faults",
        json={"kind": "latency", "dependency": "payments", "delay_ms": 200, "id": "lat.1"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "lat.1"
    response = await admin.put("/admin/faults", json={"kind": "clock-skew", "seconds": 30})
    skew_id = response.json()["id"]
    listed = (await admin.get("/admin/faults")).json()
    assert {f["kind"] for f in listed["faults"]} == {"latency", "clock-skew"}
    assert listed["clock_skew_seconds"] == 30
    assert faults.link_fault("payments") is not None

    assert (await admin.delete("/admin/faults/lat.1")).json() == {"healed": 1}
    assert faults.link_fault("payments") is None
    missing = await admin.delete("/admin/faults/lat.1")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert (await admin.delete("/admin/faults")).json() == {"healed": 1}
    assert skew_id not in {f.id for f in faults.active()}
    assert (await admin.get("/admin/faults")).json()["clock_skew_seconds"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "meteor", "dependency": "payments"},
        {"kind": "latency", "dependency": "payments"},  # no delay
        {"kind": "latency", "dependency": "payments", "delay_ms": -5},
        {"kind": "reset", "dependency": "payments", "probability": 1.5},
        {"kind": "reset", "dependency": "Payments!"},
        {"kind": "reset", "dependency": "payments", "id": "no spaces allowed"},
        {"kind": "reset", "dependency": "payments", "surprise": True},
        {"kind": "clock-skew", "seconds": 1e12},
        {"kind": "reorder", "consumer": "delivery", "window_ms": 0},
        [],
    ],
)
async def test_admin_refuses_bad_faults_with_a_problem(admin, body):
    response = await admin.put("/admin/faults", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert faults.active() == []


async def test_admin_refuses_what_is_not_json(admin):
    response = await admin.put("/admin/faults", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["status"] == 400
    response = await admin.put("/admin/faults", content=b"x" * 20_000)
    assert response.status_code == 413


async def test_admin_answers_only_this_machine():
    app = Starlette(routes=faults.admin_routes())
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as client:
        response = await client.put("/admin/faults", json={"kind": "clock-skew", "seconds": 5})
    assert response.status_code == 403
    assert faults.active() == []


def test_one_clock_skew_per_process():
    faults.install(ClockSkew(seconds=10))
    faults.install(ClockSkew(seconds=-3))
    assert [f.seconds for f in faults.active() if isinstance(f, ClockSkew)] == [-3]
