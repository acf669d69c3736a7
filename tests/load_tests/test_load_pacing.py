"""The arrival schedule: when each arrival is due, and that nothing the server does moves it."""

from __future__ import annotations

import asyncio
import time

import pytest

from colony.load.pacing import (
    Step,
    arrival_count,
    arrival_offsets,
    constant,
    pace,
    parse_steps,
    schedule_seconds,
)


def test_a_constant_rate_spaces_arrivals_evenly():
    offsets = list(arrival_offsets(constant(20, 30)))
    assert len(offsets) == arrival_count(constant(20, 30)) == 600
    assert offsets[:3] == [0.0, 0.05, 0.1]
    assert offsets[-1] == pytest.approx(29.95)


def test_steps_follow_one_another_and_a_zero_rate_pauses():
    steps = parse_steps("2:1, 0:2 ,4:0.5")
    assert steps == (Step(2, 1), Step(0, 2), Step(4, 0.5))
    assert list(arrival_offsets(steps)) == [0.0, 0.5, 3.0, 3.25]
    assert schedule_seconds(steps) == 3.5


def test_fractional_rates_round_to_the_arrivals_that_fit():
    assert arrival_count(constant(0.5, 3)) == 2  # at 0 s and 2 s
    assert arrival_count(constant(0.1, 30)) == 3
    assert arrival_count(constant(1000, 0.001)) == 1


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "not RATE:SECONDS"),
        ("20", "not RATE:SECONDS"),
        ("twenty:30", "not RATE:SECONDS"),
        ("20:30,", "not RATE:SECONDS"),
        ("-5:30", "rate -5"),
        ("20:0", "step length 0"),
        ("20:-1", "step length -1"),
        ("nan:10", "rate nan"),
        ("0:10", "no arrivals"),
    ],
)
def test_nonsense_steps_are_refused(text, says):
    with pytest.raises(ValueError, match=says):
        parse_steps(text)


async def test_the_pacer_releases_each_arrival_at_its_due_time():
    now = [100.0]
    released: list[tuple[int, float, float]] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    count = await pace(
        [0.0, 0.5, 1.0],
        100.0,
        lambda i, due: released.append((i, due, now[0])),
        lambda: now[0],
        sleep,
    )
    assert count == 3
    assert released == [(0, 100.0, 100.0), (1, 100.5, 100.5), (2, 101.0, 101.0)]


async def test_a_late_pacer_releases_what_is_due_at_once_and_keeps_the_due_times():
    now = [0.0]
    released: list[tuple[int, float]] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    def release(index: int, due: float) -> None:
        released.append((index, due))
        if index == 0:
            now[0] = 0.35  # the loop was busy: three more arrivals are already due

    await pace([0.0, 0.1, 0.2, 0.3, 0.4], 0.0, release, lambda: now[0], sleep)
    assert released == [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]
    assert now[0] == pytest.approx(0.4)


async def test_a_stalled_server_does_not_slow_the_schedule():
    """Open loop: every request hangs, yet arrivals go on being released on time."""
    stall = asyncio.Event()
    hanging: set[asyncio.Task[None]] = set()
    released_at: list[float] = []
    start = time.perf_counter() + 0.02

    def release(index: int, due: float) -> None:
        released_at.append(time.perf_counter() - start)
        task = asyncio.create_task(stall.wait())  # a request that never gets an answer
        hanging.add(task)

    try:
        await pace(arrival_offsets(constant(100, 0.5)), start, release, time.perf_counter)
        assert len(released_at) == 50
        assert not any(task.done() for task in hanging)  # none answered, all still sent
        for seconds in (0.1, 0.2, 0.3, 0.4):
            by_then = sum(at <= seconds + 0.02 for at in released_at)
            assert by_then >= int(seconds * 100), (seconds, by_then)
    finally:
        stall.set()
        await asyncio.gather(*hanging)
