"""Deadlines that travel: how long the whole request may still take, wherever it has got to.

A deadline is an instant on this process's monotonic clock, held in the call's context. It only
ever shrinks: a call made under a deadline of 3 s with a policy timeout of 5 s waits 3 s at
most. It crosses a process as the *remaining budget* in milliseconds (``x-colony-deadline-ms``),
never as a wall-clock instant, so the two processes' clocks never have to agree.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

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


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Run the block under a deadline ``seconds`` from now, or under the current one if that
    comes sooner; None leaves the current deadline as it is."""
    if seconds is None:
        yield
        return
    at = time.monotonic() + seconds
    current = _deadline.get()
    token = _deadline.set(at if current is None else min(at, current))
    try:
        yield
    finally:
        _deadline.reset(token)


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
    if not value:
        return None
    try:
        millis = int(value)
    except ValueError:
        return None
    return millis / 1000 if millis >= 0 else None
