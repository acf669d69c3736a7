"""Waiting for something that happens in the background (a consumer, a saga, a process)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(
    check: Callable[[], Awaitable[Any]], within: float = 5.0, every: float = 0.01
) -> Any:
    """Await ``check`` until it returns something truthy, and return that; fail after
    ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"not so within {within} s")
        await asyncio.sleep(every)
