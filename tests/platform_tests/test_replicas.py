"""Callers of a service with several replicas: round robin, passing over one that is down."""

from __future__ import annotations

import time
from typing import ClassVar, Protocol

import pytest

from colony.platform.config import Settings
from colony.platform.errors import ServiceUnavailable
from colony.platform.runtime import Runtime
from colony.platform.runtime.http_binding import HttpClientFactory, rpc_app
from colony.platform.runtime.interface import callers
from colony.platform.runtime.topology import Placement, Topology
from colony.platform.web.server import HttpServer, free_port
from frozen import frozen_port
from trust_support import issuer, verifier


class Echo(Protocol):
    service_name: ClassVar[str] = "echo"

    @callers("test")
    async def whoami(self) -> str: ...


class Replica:
    def __init__(self, name: str) -> None:
        self.name = name

    async def whoami(self) -> str:
        return self.name


async def serve(name: str) -> HttpServer:
    server = HttpServer(rpc_app(Echo, Replica(name), verifier("echo")), "127.0.0.1", free_port())
    await server.start()
    return server


async def test_calls_rotate_over_replicas_and_skip_one_that_refuses():
    first, second = await serve("first"), await serve("second")
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    factory = HttpClientFactory()
    try:
        client = factory.client(Echo, [first.url, down, second.url], issuer("test"))
        answers = [await client.whoami() for _ in range(6)]
        assert sorted(set(answers)) == ["first", "second"]
        assert answers.count("first") == answers.count("second") == 3
        await first.stop()
        await second.stop()
        with pytest.raises(ServiceUnavailable):
            await client.whoami()
    finally:
        await factory.close()


def test_a_replicated_service_knows_it_shares_its_database():
    placed = Topology.from_urls({"orders": "http://a:1,http://b:2", "cart": "http://c:3"})
    hosting_orders = placed.hosting("orders", ["orders", "cart"])
    assert hosting_orders.placement("orders").local
    assert hosting_orders.placement("orders").replicated
    assert not placed.hosting("cart", ["orders", "cart"]).placement("cart").replicated


async def test_a_ping_is_answered_by_a_live_replica_behind_a_frozen_one(tmp_path):
    live, stuck = await serve("live"), free_port()
    urls = (f"http://127.0.0.1:{stuck}", live.url)
    placed = Topology(services={"echo": Placement(local=False, binding="http", urls=urls)})
    runtime = Runtime(Settings(data_dir=tmp_path), [], placed)
    try:
        with frozen_port(stuck):
            started = time.monotonic()
            await runtime.ping("echo", timeout_seconds=0.5)
            assert time.monotonic() - started < 0.4  # did not wait out the frozen one
            await live.stop()
            started = time.monotonic()
            with pytest.raises(ServiceUnavailable):
                await runtime.ping("echo", timeout_seconds=0.5)
            assert time.monotonic() - started < 1.0
    finally:
        await runtime.stop()
        await live.stop()
