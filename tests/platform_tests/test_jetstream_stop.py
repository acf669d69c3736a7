"""Stopping a JetStream broker is quiet and quick: on a Ctrl-C the NATS server goes down with
the services, and each of them used to print nats-py's unretrieved exceptions as it stopped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
from test_jetstream import Parcel, Receiver, open_db

from colony.platform.messaging import Outbox, OutboxRelay
from colony.platform.messaging.jetstream import JetStreamBroker, JetStreamPolicy
from nats_support import require_nats


class Cuttable:
    """A TCP relay to the NATS server that can drop every connection at once, or stop
    passing anything on while keeping them open: the two ways a server shutting down looks
    to its clients."""

    def __init__(self, target: str) -> None:
        address = urlsplit(target)
        self.host, self.port = address.hostname or "127.0.0.1", address.port or 4222
        self.server: asyncio.Server | None = None
        self.transports: list[asyncio.WriteTransport] = []
        self.pipes: set[asyncio.Task[None]] = set()
        self.frozen = asyncio.Event()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"nats://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self.transports += [writer.transport, up_writer.transport]  # type: ignore[list-item]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink))
            self.pipes.add(pipe)
            pipe.add_done_callback(self.pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                if self.frozen.is_set():
                    await asyncio.Event().wait()  # swallowed, and nothing more passes
                sink.write(data)
                await sink.drain()

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for transport in self.transports:
            transport.abort()
        for pipe in list(self.pipes):
            pipe.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)

    def freeze(self) -> None:
        self.frozen.set()


@pytest.fixture
async def policy() -> AsyncIterator[JetStreamPolicy]:
    url = require_nats()
    tag = uuid.uuid4().hex[:8]
    yield JetStreamPolicy(stream=f"TEST_{tag}", subject_prefix=f"test{tag}", ack_wait_seconds=1.0)
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(f"TEST_{tag}")
    finally:
        await nc.close()


async def stopped_quietly(broker: JetStreamBroker, caplog: pytest.LogCaptureFixture) -> float:
    """Stop ``broker``; how long it took. Fails on anything the loop was left to report, or
    any traceback logged meanwhile."""
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reports.append(context))
    try:
        with caplog.at_level(logging.DEBUG):
            started = loop.time()
            await broker.stop()
            took = loop.time() - started
            for _ in range(3):  # futures report what was never retrieved when collected
                gc.collect()
                await asyncio.sleep(0.05)
    finally:
        loop.set_exception_handler(previous)
    assert [context.get("message") for context in reports] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    return took


async def fetching(url: str, tmp_path: Any, policy: JetStreamPolicy) -> JetStreamBroker:
    """A broker whose consumer is fetching, with messages on their way to it."""
    source, sink = await open_db(tmp_path, "source"), await open_db(tmp_path, "sink")
    subscriber = JetStreamBroker(url, "subscriber", policy)
    subscriber.subscribe(Receiver(sink).consumer())
    await subscriber.start()
    publisher = JetStreamBroker(require_nats(), "publisher", policy)
    await publisher.start()
    try:
        outbox = Outbox(source, "shop")
        async with source.transaction():
            for number in range(200):
                await outbox.add(Parcel(number=number), key=str(number))
        await OutboxRelay(outbox, publisher).drain()
    finally:
        await publisher.stop()
    return subscriber


async def test_a_stop_while_fetching_is_quiet(tmp_path, policy, caplog):
    broker = await fetching(require_nats(), tmp_path, policy)
    await asyncio.sleep(0.05)
    assert await stopped_quietly(broker, caplog) < 1.0


async def test_a_stop_as_the_server_goes_down_is_quiet_and_quick(tmp_path, policy, caplog):
    relay = Cuttable(require_nats())
    broker = await fetching(await relay.start(), tmp_path, policy)
    await asyncio.sleep(0.05)
    await relay.cut()  # the server goes down with the same Ctrl-C
    assert await stopped_quietly(broker, caplog) < 1.0


async def test_a_stop_as_the_server_stops_answering_is_quiet_and_quick(tmp_path, policy, caplog):
    relay = Cuttable(require_nats())
    broker = await fetching(await relay.start(), tmp_path, policy)
    await asyncio.sleep(0.05)
    relay.freeze()  # shutting down: the connections stay open, nothing is answered
    try:
        assert await stopped_quietly(broker, caplog) < 1.0
    finally:
        await relay.cut()
