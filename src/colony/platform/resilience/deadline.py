"""Deadlines that travel: how long the whole request may still take, wherever it has got to.

A deadline is an instant on this process's monotonic clock, held in the call's context. It only
ever shrinks: a call made under a deadline of 3 s with a policy timeout of 5 s waits 3 s at
most. It crosses a process as the *remaining budget* in milliseconds (``x-colony-deadline-ms``),
never as a wall-clock instant, so the two processes' clocks never have to agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar, Token
from types import TracebackType

from colony.platform.errors import DeadlineExceeded

DEADLINE_HEADER = "x-colony-deadline-ms"
_deadline: ContextVar[float | None] = ContextVar("deadline", default=None)


def remaining() -> float | None:
    """Seconds left before the current deadline (may be ≤ 0), or None when there is none."""
    at = _deadline.get()
    return None if at is None else at - time.monotonic()


def bounded(timeout: float) -> float:
    """``timeout``, shortened to what the deadline leaves; raises once nothing is left."""
    left = remaining()
    if left is None:
        return timeout
    if left <= 0:
        raise DeadlineExceeded("The request ran out of time.")
    return min(timeout, left)


def check() -> None:
    """Refuse to start work whose deadline has passed: its caller has stopped waiting."""
    left = remaining()
    if left is not None and left <= 0:
        raise DeadlineExceeded("The request ran out of time.")


class Deadline:
    """The block runs under a deadline ``seconds`` from now, or under the current one if that
    comes sooner; None leaves the current deadline as it is.

    ``with`` carries it to every call made inside (they wait no longer, and send on what is
    left); ``async with`` also enforces it on the block itself, which is cancelled when it
    passes and raises :class:`TimeoutError`. One object rather than ``deadline()`` beside an
    ``asyncio.timeout()``: this runs for every saga step, event and request, and a
    generator-based context manager costs about a microsecond more each time (measured)."""

    __slots__ = ("_seconds", "_timeout", "_token")

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._token: Token[float | None] | None = None
        self._timeout: asyncio.Timeout | None = None

    def __enter__(self) -> None:
        seconds = self._seconds
        if seconds is None:
            return
        at = time.monotonic() + seconds
        current = _deadline.get()
        self._token = _deadline.set(at if current is None or at < current else current)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _deadline.reset(self._token)
            self._token = None

    async def __aenter__(self) -> None:
        self.__enter__()
        left = remaining()
        if left is not None:
            self._timeout = asyncio.Timeout(asyncio.get_running_loop().time() + left)
            await self._timeout.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._timeout is not None:
                await self._timeout.__aexit__(exc_type, exc, traceback)
        finally:
            self._timeout = None
            self.__exit__()


def deadline(seconds: float | None) -> Deadline:
    """See :class:`Deadline`."""
    return Deadline(seconds)


@contextlib.contextmanager
def no_deadline() -> Iterator[None]:
    """Detach from the caller's deadline: for work that outlives the request that started it
    (a saga runs on after ``POST /orders`` has answered)."""
    token = _deadline.set(None)
    try:
        yield
    finally:
        _deadline.reset(token)


def header_value() -> str | None:
    """The remaining budget to send with a call, in whole milliseconds (at least 1)."""
    left = remaining()
    return None if left is None else str(max(1, int(left * 1000)))


def from_header(value: str | None) -> float | None:
    """The budget a caller sent, in seconds; None when absent or unreadable (an unreadable
    header is ignored rather than refused: the call still has the callee's own bounds)."""
    if not value or len(value) > MAX_HEADER_DIGITS:
        return None
    try:
        millis = int(value)
    except ValueError:
        return None
    return millis / 1000 if millis >= 0 else None


MAX_HEADER_DIGITS = 12
"""Over 30 years in milliseconds: a longer header is no budget anyone meant (and past 308
digits its seconds would not even fit a float)."""
