"""When each request is due: an open-loop arrival schedule, and the loop that keeps to it.

A closed-loop generator (N users, each waiting for an answer before asking again) slows down
exactly when the server does: a stall produces few samples, and the percentiles hide it. That
is coordinated omission. Here arrival *i* is due at ``start + offset(i)``, computed from the
rate alone, and nothing the server does moves it. The runner measures latency from that due
time, so a request that left late, because the client or the server was saturated, is charged
for the wait.

The rate is constant or stepped: ``"20:30,40:30"`` is 20 arrivals a second for 30 s, then 40
a second for 30 s. A step of rate 0 is a pause, for watching a system recover.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator

import msgspec

# Catching up after a late wake-up releases arrivals back to back; the requests they start
# still need the event loop, so the pacer gives it up after this many.
_YIELD_EVERY = 32
_STOP_POLL_SECONDS = 0.1


class Step(msgspec.Struct, frozen=True):
    """``rate`` arrivals a second, evenly spaced, for ``seconds``."""

    rate: float
    seconds: float


def constant(rate: float, seconds: float) -> tuple[Step, ...]:
    """One step: the same rate throughout."""
    return (Step(rate, seconds),)


def parse_steps(text: str) -> tuple[Step, ...]:
    """``"RATE:SECONDS,RATE:SECONDS,..."``; ValueError, with the offending part, otherwise."""
    steps = []
    for part in text.split(","):
        rate_text, colon, seconds_text = part.strip().partition(":")
        if not colon:
            raise ValueError(f"{part.strip()!r} is not RATE:SECONDS (e.g. 20:30)")
        try:
            rate, seconds = float(rate_text), float(seconds_text)
        except ValueError:
            raise ValueError(f"{part.strip()!r} is not RATE:SECONDS (e.g. 20:30)") from None
        steps.append(Step(rate, seconds))
    check_steps(steps)
    return tuple(steps)


def check_steps(steps: Iterable[Step]) -> None:
    """Refuse what cannot be a schedule: negative or infinite rates, empty steps, no arrivals."""
    steps = list(steps)
    if not steps:
        raise ValueError("there must be at least one step")
    for step in steps:
        if not math.isfinite(step.rate) or step.rate < 0:
            raise ValueError(f"rate {step.rate:g} must be a number of requests a second, >= 0")
        if not math.isfinite(step.seconds) or step.seconds <= 0:
            raise ValueError(f"step length {step.seconds:g} must be more than 0 seconds")
    if arrival_count(steps) == 0:
        raise ValueError("the schedule has no arrivals (every step's rate is 0)")


def arrival_offsets(steps: Iterable[Step]) -> Iterator[float]:
    """Seconds from the start at which each arrival is due, in order; lazily, so an hour at
    thousands a second costs no memory."""
    begin = 0.0
    for step in steps:
        for j in range(_count(step)):
            yield begin + j / step.rate
        begin += step.seconds


def arrival_count(steps: Iterable[Step]) -> int:
    return sum(_count(step) for step in steps)


def schedule_seconds(steps: Iterable[Step]) -> float:
    return sum(step.seconds for step in steps)


def _count(step: Step) -> int:
    # Arrivals at j / rate for every j with j / rate < seconds; the epsilon keeps 20 a second
    # for 30 s at 600 whatever the rounding of 20 * 30.
    return max(0, math.ceil(step.rate * step.seconds - 1e-9)) if step.rate > 0 else 0


async def pace(
    offsets: Iterable[float],
    start: float,
    release: Callable[[int, float], None],
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    stop: asyncio.Event | None = None,
) -> int:
    """Call ``release(index, due)`` for every arrival once ``clock()`` reaches its due time
    ``start + offset``; returns how many were released, fewer if ``stop`` was set.

    ``release`` must not wait: it starts the request (or records it as dropped) and returns.
    The pacer never waits for a request, so a slow server cannot slow the schedule. If the
    pacer itself wakes late it releases every arrival already due at once; the runner's
    latency, measured from ``due``, then shows the lateness instead of hiding it.
    """
    now = clock or asyncio.get_running_loop().time
    released = 0
    for index, offset in enumerate(offsets):
        due = start + offset
        delay = due - now()
        if stop is not None and delay > _STOP_POLL_SECONDS:
            # A long gap (a low rate, a pause step) is waited out on the stop event instead.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = due - now()
        if delay > 0:
            await sleep(delay)
        elif index % _YIELD_EVERY == 0:
            await sleep(0)
        if stop is not None and stop.is_set():
            break
        release(index, due)
        released += 1
    return released
