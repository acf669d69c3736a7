"""Serving an ASGI app on the running event loop.

granian's embedded server: its HTTP handling is in Rust and served a bare Starlette app about
twice as fast as uvicorn on this class of machine, and embedding keeps every service and the
gateway on one event loop in the one-process topology. It sets TCP_NODELAY on every accepted
connection (seen with strace), as aiohttp does on the client side, so small responses are not
held back by Nagle's algorithm.

A slow client cannot hold a connection: its request's headers must all arrive within
``HEADER_READ_SECONDS`` of their first byte (granian closes the connection otherwise; the same
bound closes a kept-alive connection idle that long), and its body within the bound
:class:`colony.platform.web.limits.BodySizeLimit` sets. HTTP/1.1 only: no client of ours
speaks HTTP/2 without TLS, and serving it would open a second set of limits to get right.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from pathlib import Path

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.server.embed import Server
from starlette.types import ASGIApp

logging.getLogger("_granian").setLevel(logging.WARNING)
logging.getLogger("granian").setLevel(logging.ERROR)

HEADER_READ_SECONDS = 10.0
"""A request's headers, from their first byte to their end: they come in one packet from any
client that is not holding the connection on purpose."""


class HttpServer:
    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        backlog: int = 1024,
        header_read_seconds: float = HEADER_READ_SECONDS,
    ) -> None:
        if header_read_seconds <= 0:
            raise ValueError("a header read timeout must be positive")
        self.host = host
        self.port = port
        self._server = Server(
            app,
            address=host,
            port=port,
            interface=Interfaces.ASGINL,
            http=HTTPModes.http1,
            http1_settings=HTTP1Settings(header_read_timeout=round(header_read_seconds * 1000)),
            log_enabled=False,
            backlog=backlog,
            websockets=False,
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        ensure_port_free(self.host, self.port)
        self._task = asyncio.create_task(self._server.serve(), name=f"http-{self.port}")
        await wait_for_port(self.host, self.port, self._task)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.stop()
        self._server.main_loop_interrupt.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._task, 5)
        self._task = None


async def wait_for_port(
    host: str, port: int, task: asyncio.Task[None] | None = None, within: float = 10.0
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if task is not None and task.done():
            task.result()
            raise RuntimeError(f"server on {host}:{port} exited during start")
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.01)


def ensure_port_free(host: str, port: int) -> None:
    """granian binds with SO_REUSEPORT, so a second server on a taken port would start and
    share it silently; try a plain bind first to refuse that with a clear error."""
    with socket.socket() as sock:
        # SO_REUSEADDR lets the bind pass over connections in TIME_WAIT (a quick restart),
        # while on Linux it still fails against a live listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise OSError(exc.errno, f"{host}:{port} is already in use") from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, for a server to take soon after. Chosen below the range the
    kernel hands to outgoing connections: a port from that range (what binding port 0 gives)
    may meanwhile become the local end of some client's connection, and the server's bind
    then fails with "address already in use" (seen with thousands of connections under load)."""
    low, _ = _ephemeral_range()
    for _ in range(200):
        port = random.randrange(max(1024, low - 22000), low)
        if port in _handed_out:  # not yet taken, perhaps, but promised to another server
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # a crowded machine: any port the kernel gives
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default; other systems differ, and the bind checks
