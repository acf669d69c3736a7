"""Each request ends ok, failed or unknown: an answer decides by its status; without one,
what decides is whether the request had left."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from colony.load.client import ApiClient
from colony.load.outcomes import outcome_of_error, outcome_of_status
from colony.platform.web.server import free_port


@contextlib.asynccontextmanager
async def raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A TCP server that does whatever ``handle`` does with each connection."""
    writers: set[asyncio.StreamWriter] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        await handle(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


@contextlib.asynccontextmanager
async def app_server(status: int, body: bytes = b"{}") -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/api/v1/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def api(url: str, limit: float = 0.3, connections: int = 10) -> AsyncIterator[ApiClient]:
    client = ApiClient(url, limit, connections)
    try:
        yield client
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "ok"), (201, "ok"), (202, "ok"), (302, "failed"), (409, "failed"), (503, "failed")],
)
async def test_an_answer_is_ok_when_2xx_and_failed_otherwise(status, outcome):
    async with app_server(status, b'{"order_id": "o-1"}') as url, api(url) as client:
        answer = await client.call("POST", "/orders", body={"card_number": "4242"})
    assert (answer.outcome, answer.status) == (outcome, status)
    assert answer.body == {"order_id": "o-1"}
    assert (answer.error is None) == (outcome == "ok")


async def test_a_5xx_is_failed_with_its_status_in_the_error():
    async with app_server(503) as url, api(url) as client:
        answer = await client.call("GET", "/categories")
    assert answer.outcome == "failed"
    assert answer.error == "503 Service Unavailable"


async def test_a_timeout_after_sending_is_unknown():
    async with raw_server(never_answer) as url, api(url, limit=0.2) as client:
        answer = await client.call("POST", "/orders", body={})
    assert (answer.outcome, answer.status, answer.error) == ("unknown", None, "timeout")


async def test_a_connection_closed_after_sending_is_unknown():
    async with raw_server(hang_up) as url, api(url) as client:
        answer = await client.call("POST", "/orders", body={})
    assert answer.outcome == "unknown"
    assert answer.error == "server disconnected"


async def test_a_refused_connection_is_failed():
    async with api(f"http://127.0.0.1:{free_port()}") as client:
        answer = await client.call("POST", "/orders", body={})
    assert answer.outcome == "failed"
    assert answer.error is not None and answer.error.startswith("cannot connect")


async def test_a_timeout_waiting_for_a_connection_is_failed_not_unknown():
    """With one connection, taken by a request that hangs, the next never leaves."""
    async with raw_server(never_answer) as url, api(url, limit=0.2, connections=1) as client:
        # Holds the only connection for longer than the next call's timeout.
        hog = asyncio.create_task(
            client._session.get(f"{url}/slow", timeout=aiohttp.ClientTimeout(total=1.0))
        )
        await asyncio.sleep(0.05)
        second = await client.call("GET", "/categories")
        hog.cancel()
        await asyncio.gather(hog, return_exceptions=True)
    assert (second.outcome, second.error) == ("failed", "timeout before sending")


def test_errors_are_unknown_only_once_sent():
    assert outcome_of_error(TimeoutError(), sent=True) == ("unknown", "timeout")
    assert outcome_of_error(TimeoutError(), sent=False) == ("failed", "timeout before sending")
    disconnected = aiohttp.ServerDisconnectedError()
    assert outcome_of_error(disconnected, sent=True) == ("unknown", "server disconnected")
    assert outcome_of_error(ConnectionResetError(104, "reset"), sent=False)[0] == "failed"
    assert outcome_of_status(204) == "ok" and outcome_of_status(429) == "failed"
