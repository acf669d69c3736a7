"""The platform's SMTP client keeps connections open and replaces one the server closed; a
mail server that keeps failing is held back by its breaker without being connected to, and
one that refuses a message is not counted as failing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import Message
from email.mime.text import MIMEText

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from colony.mail_sink.server import running_mail_sink
from colony.platform.resilience import BreakerPolicy, CallPolicy, Resilience
from colony.platform.smtp import SendFailed, SmtpClient
from colony.platform.web.server import free_port

FAILURES_TO_OPEN = 3


def message(n: int, to: str = "ada@example.com") -> Message:
    mail = MIMEText("Hello", "plain", "utf-8")
    mail["From"], mail["To"], mail["Subject"] = "shop@x.test", to, f"Mail {n}"
    return mail


def resilience(open_seconds: float = 30.0) -> Resilience:
    breaker = BreakerPolicy(
        consecutive_failures=FAILURES_TO_OPEN, open_seconds=open_seconds, max_open_seconds=60.0
    )
    return Resilience({"smtp": CallPolicy(timeout=2.0, attempts=1, breaker=breaker)})


async def subjects(url: str) -> list[str]:
    async with httpx.AsyncClient(base_url=url) as http:
        return sorted(m["subject"] for m in (await http.get("/messages")).json()["items"])


@dataclass
class Listener:
    """A port where something accepts connections and closes them at once: a mail server
    that is broken, counting how often it is tried."""

    port: int
    connections: int = 0


@contextlib.asynccontextmanager
async def broken_mail_server(port: int | None = None) -> AsyncIterator[Listener]:
    listener = Listener(port or free_port())

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        listener.connections += 1
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", listener.port)
    try:
        yield listener
    finally:
        server.close()
        await server.wait_closed()


class RefusingHandler:
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        return "550 5.1.1 No such user here"


@contextlib.asynccontextmanager
async def refusing_mail_server() -> AsyncIterator[int]:
    """A working mail server that knows none of the recipients it is sent."""
    port, sessions = free_port(), []

    def protocol() -> SMTP:
        sessions.append(SMTP(RefusingHandler(), hostname="refusing.test"))
        return sessions[-1]

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", port)
    try:
        yield port
    finally:
        server.close()
        for session in sessions:
            if session.transport is not None:
                session.transport.close()
        await server.wait_closed()


async def test_messages_share_a_connection_and_survive_a_server_restart(tmp_path):
    smtp_port, http_port = free_port(), free_port()
    client = SmtpClient(resilience(), "127.0.0.1", smtp_port)
    try:
        async with running_mail_sink(smtp_port, http_port, tmp_path) as sink:
            await client.send(message(1))
            await client.send(message(2))
            assert len(client._idle) == 1  # the second message reused the first's connection
            assert await subjects(sink.url) == ["Mail 1", "Mail 2"]
        # The server restarted while the connection sat idle: the message goes on a fresh one.
        async with running_mail_sink(smtp_port, http_port, tmp_path) as sink:
            await client.send(message(3))
            assert await subjects(sink.url) == ["Mail 1", "Mail 2", "Mail 3"]
        # With the server gone, the failure is the caller's to retry.
        with pytest.raises(SendFailed, match=f"^SMTP 127.0.0.1:{smtp_port}: ") as failed:
            await client.send(message(4))
        assert not failed.value.refused
    finally:
        await client.close()
    assert client.dependency.state == "closed"  # one failure opens nothing


async def test_a_failing_mail_server_is_held_back_without_being_connected_to():
    async with broken_mail_server() as server:
        client = SmtpClient(resilience(), "127.0.0.1", server.port)
        for n in range(FAILURES_TO_OPEN):
            with pytest.raises(SendFailed):
                await client.send(message(n))
        assert server.connections == FAILURES_TO_OPEN
        assert client.dependency.state == "open"

        started = time.monotonic()
        for n in range(20):
            with pytest.raises(SendFailed, match="held back") as failed:
                await client.send(message(n))
            assert not failed.value.refused
        assert time.monotonic() - started < 0.5  # at once: no connection, no timeout
        assert server.connections == FAILURES_TO_OPEN
        await client.close()


async def test_a_server_that_comes_back_is_found_by_a_probe(tmp_path):
    port = free_port()
    client = SmtpClient(resilience(open_seconds=0.2), "127.0.0.1", port)
    try:
        async with broken_mail_server(port):
            for n in range(FAILURES_TO_OPEN):
                with pytest.raises(SendFailed):
                    await client.send(message(n))
        assert client.dependency.state == "open"
        async with running_mail_sink(port, free_port(), tmp_path) as sink:
            await asyncio.sleep(0.25)
            await client.send(message(9))  # the half-open probe goes through, and closes it
            assert client.dependency.state == "closed"
            assert await subjects(sink.url) == ["Mail 9"]
    finally:
        await client.close()


async def test_a_refused_message_fails_alone_and_the_server_stays_in_use():
    async with refusing_mail_server() as port:
        client = SmtpClient(resilience(), "127.0.0.1", port)
        try:
            for n in range(3 * FAILURES_TO_OPEN):
                with pytest.raises(SendFailed, match="550") as failed:
                    await client.send(message(n, to="nobody@example.com"))
                assert failed.value.refused
            # The server answered each time: it is working, and other mail still goes to it.
            assert client.dependency.state == "closed"
        finally:
            await client.close()
