"""The injector against ``colony up --distributed --faults`` started as people start it: kill,
pause and the broker's kill and pause, each injected and healed, with the processes seen
coming back (or continuing) and events flowing again; and a link and a delivery fault through
each process's ``/admin/faults``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from checkout_helpers import add_to_cart, place, wait_for
from colony.distributed.processes import read_processes
from colony.faults import RunningTopology, fault_from_spec
from colony.faults.probes import answers
from colony.faults.topology import process_state
from conftest import list_product, sign_up
from e2e.deployment import Deployment, TopologyChoice
from waiting import eventually

TOPOLOGY = TopologyChoice("processes-sqlite-nats", distributed=True, replicas="orders=2")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    running = Deployment(
        TOPOLOGY,
        tmp_path_factory.mktemp("faults") / "data",
        {"COLONY_FAULT_INJECTION": "true", "COLONY_RESTART_BACKOFF_SECONDS": "0.2"},
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def topology(deployment: Deployment) -> RunningTopology:
    return RunningTopology.load(deployment.data_dir)


@pytest.fixture
async def api(deployment: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployment.url, timeout=30) as client:
        yield client


async def order_notified(api: httpx.AsyncClient) -> list[str]:
    """A checkout whose completion reaches the buyer's feed (orders' event, over the broker,
    applied by notifications); returns the kinds of note in the feed a moment later."""
    seller = await sign_up(api, "seller")
    lamp = await list_product(api, seller, stock=5)
    buyer = await sign_up(api, "buyer")
    await add_to_cart(api, buyer, lamp)
    order = await wait_for(api, buyer, await place(api, buyer), within=30)
    assert order["status"] == "completed", order

    async def notified() -> bool:
        feed = (await api.get("/api/v1/notifications", headers=buyer.headers)).json()
        return "order.completed" in [item["kind"] for item in feed["items"]]

    await eventually(notified, within=30, every=0.1)
    await asyncio.sleep(0.5)
    feed = (await api.get("/api/v1/notifications", headers=buyer.headers)).json()
    return [item["kind"] for item in feed["items"]]


def test_processes_json_names_every_process_of_the_topology(deployment):
    table = read_processes(deployment.data_dir)
    assert table is not None
    assert deployment.process is not None and table.supervisor_pid == deployment.process.pid
    assert {"nats", "orders-1", "orders-2", "payments-1", "gateway-1"} <= set(table.processes)
    assert table.processes["nats"].url.startswith("nats://127.0.0.1:")
    assert all(record.pid is not None for record in table.processes.values())


async def test_a_killed_replica_is_back_when_healed(topology):
    before = topology.owned_pid("orders-2")
    restarts = topology.process("orders-2").restarts
    fault = fault_from_spec("kill:orders-2", topology)
    await fault.inject()
    await fault.heal()
    after = topology.owned_pid("orders-2")
    assert after is not None and after != before
    assert topology.process("orders-2").restarts == restarts + 1
    assert await answers(topology.process("orders-2").url)


async def test_a_paused_service_answers_again_when_healed(topology):
    pid = topology.owned_pid("payments-1")
    assert pid is not None
    url = topology.process("payments-1").url
    async with fault_from_spec("pause:payments", topology).injected():
        assert process_state(pid) == "T"
        assert not await answers(url, "/health/live")
    assert process_state(pid) != "T"
    assert topology.owned_pid("payments-1") == pid  # continued, not restarted
    assert await answers(url)


async def test_a_killed_broker_is_restarted_and_events_flow_again(topology, api):
    before = topology.owned_pid("nats")
    fault = fault_from_spec("broker:kill", topology)
    await fault.inject()
    await fault.heal()  # the server back, and every service ready (reconnected) again
    assert topology.owned_pid("nats") not in (None, before)
    await order_notified(api)


async def test_events_held_while_the_broker_is_paused_flow_when_it_continues(topology, api):
    fault = fault_from_spec("broker:pause", topology)
    async with fault.injected():
        await asyncio.sleep(0.2)
        checkout = asyncio.create_task(order_notified(api))
        await asyncio.sleep(2)
        assert not checkout.done()  # its notification waits in the orders' outbox
    await checkout


async def test_latency_on_one_link_and_its_heal(topology, api):
    async def browse() -> float:
        started = time.perf_counter()
        response = await api.get("/api/v1/listings", params={"q": str(time.time_ns())})
        assert response.status_code == 200, response.text
        return time.perf_counter() - started

    async with fault_from_spec("latency:gateway->catalog:300ms", topology).injected():
        assert await browse() >= 0.3
    assert await browse() < 0.3


async def test_duplicate_delivery_has_one_effect(topology, api):
    async with fault_from_spec("duplicate:notifications", topology).injected():
        kinds = await order_notified(api)
    assert kinds.count("order.completed") == 1
