"""Seeing a process work: the checks a heal waits on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp

from colony.faults.base import NotHealed

PROBE_SECONDS = 2.0


async def answers(url: str, path: str = "/health/ready") -> bool:
    """An HTTP process answers 200 at ``path``; a broker (``nats://``) accepts a connection."""
    address = urlsplit(url)
    if address.scheme != "http":
        return await accepts(address.hostname or "127.0.0.1", address.port or 4222)
    timeout = aiohttp.ClientTimeout(total=PROBE_SECONDS)
    with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url.rstrip("/") + path) as response,
        ):
            return response.status == 200
    return False


async def accepts(host: str, port: int) -> bool:
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_until(
    check: Callable[[], Awaitable[str | None]], within: float, every: float = 0.2
) -> None:
    """Until ``check`` returns None (all is well); it returns what is still wrong otherwise,
    which NotHealed reports if ``within`` seconds pass first."""
    deadline = time.monotonic() + within
    while True:
        wrong = await check()
        if wrong is None:
            return
        if time.monotonic() > deadline:
            raise NotHealed(f"{wrong} (after {within:g} s)")
        await asyncio.sleep(every)
