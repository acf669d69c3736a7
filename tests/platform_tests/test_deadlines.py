"""Deadlines across a process boundary, and a replica that stops answering taken out of
rotation: the resilience pipeline as the HTTP binding uses it."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar, Protocol

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from colony.platform import faults
from colony.platform.errors import DeadlineExceeded, ServiceUnavailable
from colony.platform.resilience import Resilience, deadline
from colony.platform.runtime.http_binding import HttpClientFactory, rpc_app
from colony.platform.runtime.interface import callers
from colony.platform.web.deadline import RequestDeadline
from colony.platform.web.server import HttpServer, free_port
from trust_support import issuer, verifier


class Clock(Protocol):
    service_name: ClassVar[str] = "clock"

    @callers("test", "front")
    async def budget(self) -> float: ...

    @callers("test", "front")
    async def whoami(self) -> str: ...


class Replica:
    def __init__(self, name: str) -> None:
        self.name = name

    async def budget(self) -> float:
        left = deadline.remaining()
        return -1.0 if left is None else left

    async def whoami(self) -> str:
        return self.name


async def serve(app: Starlette) -> HttpServer:
    server = HttpServer(app, "127.0.0.1", free_port())
    await server.start()
    return server


async def test_the_deadline_travels_with_the_call_and_an_expired_one_is_refused() -> None:
    server = await serve(rpc_app(Clock, Replica("one"), verifier("clock")))
    factory = HttpClientFactory()
    try:
        client = factory.client(Clock, [server.url], issuer("test"))
        # Without a deadline the callee still gets the attempt's time (2.5 s by default),
        # less what its answer needs to come back: no call is unbounded.
        assert 2.0 < await client.budget() <= 2.25
        with deadline.deadline(1.5):
            left = await client.budget()
        assert 1.0 < left <= 1.5 - 0.15
        async with httpx.AsyncClient() as raw:
            late = await raw.post(
                server.url + "/rpc/budget",
                content=b"{}",
                headers={
                    deadline.DEADLINE_HEADER: "0",
                    "authorization": "Bearer " + issuer("test").token("clock"),
                },
            )
        assert late.status_code == 504
        assert late.json()["type"].endswith("/deadline-exceeded")
        with deadline.deadline(-1), pytest.raises(DeadlineExceeded):
            await client.budget()  # never sent: the caller has stopped waiting
    finally:
        await factory.close()
        await server.stop()


async def test_a_replica_that_stops_answering_is_ejected_and_no_call_waits_on_it() -> None:
    paused = asyncio.Event()

    async def frozen(request: Request) -> Response:
        await paused.wait()  # as a SIGSTOPped process: the connection opens, nothing answers
        return Response()

    frozen_app = Starlette(routes=[Route("/{path:path}", frozen, methods=["GET", "POST"])])
    live = await serve(rpc_app(Clock, Replica("live"), verifier("clock")))
    stopped = await serve(frozen_app)
    factory = HttpClientFactory(Resilience(overrides={"clock": {"timeout": 5.0}}))
    try:
        client = factory.client(Clock, [stopped.url, live.url], issuer("test"), "clock")
        dependency = factory.resilience.dependencies["clock"]
        started = time.monotonic()
        for _ in range(100):
            if not dependency.healthy[stopped.url]:
                break
            await asyncio.sleep(0.05)
        ejected_after = time.monotonic() - started
        assert not dependency.healthy[stopped.url]
        assert ejected_after < 2.0
        began = time.monotonic()
        answers = [await client.whoami() for _ in range(20)]
        assert set(answers) == {"live"}
        assert time.monotonic() - began < 1.0  # none waited for the frozen one
    finally:
        paused.set()
        await factory.close()
        await live.stop()
        await stopped.stop()


async def test_a_request_past_its_deadline_gets_a_504_and_health_has_none() -> None:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(float(request.query_params.get("s", "0")))
        left = deadline.remaining()
        return JSONResponse({"left": left})

    app = RequestDeadline(
        Starlette(
            routes=[Route("/api/x", slow, methods=["GET", "POST"]), Route("/health/x", slow)]
        ),
        default_seconds=0.3,
        routes=[("GET", "/", 0.2)],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        fast = await client.get("/api/x")
        assert fast.status_code == 200 and 0 < fast.json()["left"] <= 0.2
        assert 0.2 < (await client.post("/api/x")).json()["left"] <= 0.3
        late = await client.get("/api/x", params={"s": "0.25"})
        assert late.status_code == 504
        assert late.headers["content-type"] == "application/problem+json"
        assert (await client.get("/health/x", params={"s": "0.4"})).json()["left"] is None
    with pytest.raises(ValueError):
        RequestDeadline(app, default_seconds=0)


async def test_a_connection_that_keeps_failing_reaches_the_caller_as_a_503() -> None:
    server = await serve(rpc_app(Clock, Replica("one"), verifier("clock")))
    factory = HttpClientFactory()
    fault = faults.install(faults.Reset(dependency="clock"))
    try:
        client = factory.client(Clock, [server.url], issuer("test"), "clock")
        with pytest.raises(ServiceUnavailable) as raised:
            await client.whoami()  # reset on every attempt: no raw ConnectionResetError
        assert raised.value.status == 503
        faults.heal_all()
        assert await client.whoami() == "one"
    finally:
        faults.heal_all()
        await factory.close()
        await server.stop()
    assert fault.id


class Front(Protocol):
    service_name: ClassVar[str] = "front"

    @callers("test")
    async def look(self) -> str: ...


async def test_a_callee_that_falls_back_answers_before_its_caller_stops_waiting() -> None:
    """The caller gives an attempt 1 s; its callee asks a frozen service, whose own policy
    would wait 2.5 s. The budget that travels makes the callee give up first and answer
    with its fallback, instead of the caller timing out on an answer that was coming."""
    paused = asyncio.Event()

    async def frozen(request: Request) -> Response:
        await paused.wait()
        return Response()

    back = await serve(Starlette(routes=[Route("/{path:path}", frozen, methods=["POST"])]))
    inner = HttpClientFactory()  # the callee's own clients: 2.5 s an attempt
    back_client = inner.client(Clock, [back.url], issuer("front"), "back")

    class FrontService:
        async def look(self) -> str:
            try:
                return await back_client.whoami()
            except ServiceUnavailable:
                return "fallback"

    front = await serve(rpc_app(Front, FrontService(), verifier("front")))
    outer = HttpClientFactory(Resilience(overrides={"front": {"timeout": 1.0, "attempts": 1}}))
    try:
        client = outer.client(Front, [front.url], issuer("test"), "front")
        began = time.monotonic()
        assert await client.look() == "fallback"
        assert time.monotonic() - began < 1.0
    finally:
        paused.set()
        await outer.close()
        await inner.close()
        await front.stop()
        await back.stop()
