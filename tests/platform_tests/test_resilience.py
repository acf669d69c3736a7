"""The resilience policies, each a small state machine tested on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from colony.platform.errors import (
    CircuitOpen,
    DeadlineExceeded,
    InvalidInput,
    Overloaded,
    ServiceUnavailable,
)
from colony.platform.resilience import (
    BreakerPolicy,
    BudgetPolicy,
    Bulkhead,
    BulkheadPolicy,
    CallPolicy,
    CircuitBreaker,
    Dependency,
    NotSent,
    Resilience,
    RetryBudget,
    attempt_number,
    deadline,
    retried_above,
)
from colony.platform.resilience.backoff import full_jitter
from fake_clock import FakeClock

# --- breaker --------------------------------------------------------------------------------


def _breaker(clock: FakeClock, **policy: object) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    transitions: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        "dep",
        BreakerPolicy(**policy),  # type: ignore[arg-type]
        clock,
        [lambda _b, before, after: transitions.append((before, after))],
    )
    return breaker, transitions


def test_breaker_opens_after_consecutive_failures_and_fails_fast() -> None:
    clock = FakeClock()
    breaker, transitions = _breaker(clock, consecutive_failures=3, minimum_calls=100)
    for _ in range(2):
        breaker.allow()
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert transitions == [("closed", "open")]
    with pytest.raises(CircuitOpen) as raised:
        breaker.allow()
    assert raised.value.status == 503
    assert raised.value.extensions["retry_after"] == pytest.approx(BreakerPolicy().open_seconds)


def test_a_success_resets_the_consecutive_count() -> None:
    breaker, _ = _breaker(FakeClock(), consecutive_failures=3, minimum_calls=100)
    for _ in range(10):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state == "closed"


def test_breaker_opens_on_failure_rate_once_enough_calls() -> None:
    breaker, _ = _breaker(
        FakeClock(), failure_rate=0.5, window=10, minimum_calls=10, consecutive_failures=99
    )
    for _ in range(4):
        breaker.record_success()
        breaker.record_failure()
    assert breaker.state == "closed"  # 8 calls: below the minimum
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "open"  # 5 of 10 failed


def test_the_rate_window_slides() -> None:
    breaker, _ = _breaker(
        FakeClock(), failure_rate=0.5, window=4, minimum_calls=4, consecutive_failures=99
    )
    for outcome in [False, True, False, True, True, True, False, True]:
        breaker.record_success() if outcome else breaker.record_failure()
    assert breaker.state == "closed"  # never 2 failures among the last 4


def test_half_open_probe_success_closes_and_failure_reopens_for_longer() -> None:
    clock = FakeClock()
    breaker, transitions = _breaker(clock, consecutive_failures=1, open_seconds=2.0, probes=1)
    breaker.record_failure()
    clock.advance(1.9)
    assert not breaker.available()
    clock.advance(0.2)
    assert breaker.available()
    breaker.allow()  # the probe
    assert breaker.state == "half_open"
    with pytest.raises(CircuitOpen):
        breaker.allow()  # only one probe at a time
    breaker.record_failure()
    assert breaker.state == "open"
    clock.advance(2.1)
    assert not breaker.available()  # open twice as long now
    clock.advance(2.0)
    breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert transitions == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    breaker.record_failure()
    clock.advance(2.1)
    assert breaker.available()  # back to the initial open time once it closed


def test_open_time_is_capped() -> None:
    clock = FakeClock()
    breaker, _ = _breaker(clock, consecutive_failures=1, open_seconds=1.0, max_open_seconds=3.0)
    breaker.record_failure()
    for _ in range(5):
        clock.advance(10)
        breaker.allow()
        breaker.record_failure()
    assert breaker.retry_after == pytest.approx(3.0)


def test_breaker_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(failure_rate=0)
    with pytest.raises(ValueError):
        BreakerPolicy(open_seconds=5, max_open_seconds=1)


# --- budget ---------------------------------------------------------------------------------


def test_retry_budget_allows_the_floor_then_a_ratio_of_calls() -> None:
    clock = FakeClock()
    budget = RetryBudget(BudgetPolicy(ratio=0.2, min_per_second=1, window_seconds=10), clock)
    assert sum(budget.try_spend() for _ in range(50)) == 10  # the floor: 1/s over 10 s
    for _ in range(100):
        budget.record_call()
    assert sum(budget.try_spend() for _ in range(50)) == 20  # 20 % of 100 calls, +10 spent
    assert budget.refused == 40 + 30


def test_retry_budget_forgets_outside_its_window() -> None:
    clock = FakeClock()
    budget = RetryBudget(BudgetPolicy(ratio=0.0, min_per_second=0.5, window_seconds=4), clock)
    assert sum(budget.try_spend() for _ in range(10)) == 2
    clock.advance(4)
    assert sum(budget.try_spend() for _ in range(10)) == 2


# --- bulkhead -------------------------------------------------------------------------------


async def test_bulkhead_queues_up_to_its_bound_then_refuses() -> None:
    bulkhead = Bulkhead("dep", BulkheadPolicy(limit=2, queue=1))
    release = asyncio.Event()
    entered = []

    async def hold(i: int) -> None:
        async with bulkhead.slot(5.0):
            entered.append(i)
            await release.wait()

    tasks = [asyncio.create_task(hold(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert entered == [0, 1] and bulkhead.waiting == 1
    with pytest.raises(Overloaded):
        async with bulkhead.slot(5.0):
            pass
    release.set()
    await asyncio.gather(*tasks)
    assert entered == [0, 1, 2] and bulkhead.active == 0 and bulkhead.rejected == 1


async def test_bulkhead_waits_no_longer_than_it_may() -> None:
    bulkhead = Bulkhead("dep", BulkheadPolicy(limit=1, queue=5))
    async with bulkhead.slot(1.0):
        with pytest.raises(Overloaded):
            async with bulkhead.slot(0.02):
                pass
    assert bulkhead.waiting == 0


# --- deadline -------------------------------------------------------------------------------


def test_deadline_only_shrinks_and_bounds_timeouts() -> None:
    assert deadline.remaining() is None
    assert deadline.bounded(5.0) == 5.0
    with deadline.deadline(1.0):
        assert 0.9 < deadline.bounded(5.0) <= 1.0
        with deadline.deadline(10.0):
            assert deadline.remaining() is not None and deadline.remaining() <= 1.0  # type: ignore[operator]
        with deadline.no_deadline():
            assert deadline.remaining() is None
    assert deadline.remaining() is None


def test_an_expired_deadline_refuses_work() -> None:
    with deadline.deadline(-0.001):
        with pytest.raises(DeadlineExceeded) as raised:
            deadline.check()
        assert raised.value.status == 504
        with pytest.raises(DeadlineExceeded):
            deadline.bounded(1.0)


async def test_async_with_a_deadline_also_stops_the_block_at_the_sooner_one() -> None:
    with deadline.deadline(0.05):
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            async with deadline.deadline(5.0):  # the outer deadline is the sooner
                await asyncio.sleep(5.0)
        assert asyncio.get_running_loop().time() - started < 1.0
        assert deadline.remaining() is not None  # the outer one is back in place
    assert deadline.remaining() is None
    async with deadline.deadline(5.0):
        await asyncio.sleep(0)  # done in time: nothing raised
    with deadline.deadline(5.0):
        await asyncio.sleep(0.01)  # ``with`` alone only carries it: nothing is timed
    async with deadline.deadline(None):
        assert deadline.remaining() is None


def test_retried_above_marks_attempts_and_restores_them() -> None:
    assert attempt_number() == 1
    with retried_above(3):
        assert attempt_number() == 3
        with retried_above(0):
            assert attempt_number() == 1
        assert attempt_number() == 3
    assert attempt_number() == 1


def test_deadline_header_round_trip() -> None:
    assert deadline.header_value() is None
    with deadline.deadline(1.5):
        sent = deadline.header_value()
    assert sent is not None and 1400 < int(sent) <= 1500
    assert deadline.from_header(sent) == int(sent) / 1000
    assert deadline.from_header("soon") is None
    assert deadline.from_header("-5") is None
    assert deadline.from_header(None) is None
    # Hundreds of digits: no budget anyone meant, and as seconds no float holds it.
    assert deadline.from_header("9" * 400) is None


def test_full_jitter_stays_under_its_ceiling() -> None:
    waits = [full_jitter(attempt, 0.1, 1.0) for attempt in range(1, 8) for _ in range(50)]
    assert all(0 <= w <= 1.0 for w in waits)
    assert max(full_jitter(1, 0.1, 1.0) for _ in range(200)) <= 0.1


# --- the pipeline ---------------------------------------------------------------------------


def _dependency(endpoints: list[str] | None = None, **policy: object) -> Dependency:
    values: dict[str, object] = {"timeout": 0.5, "backoff_base": 0.0, "backoff_cap": 0.0}
    values.update(policy)
    return Dependency("dep", endpoints or ["a"], CallPolicy(**values))  # type: ignore[arg-type]


class Flaky:
    """Fails the first ``failures`` sends with ``error``, then answers with the endpoint."""

    def __init__(self, failures: int, error: BaseException) -> None:
        self.failures = failures
        self.error = error
        self.sent: list[str] = []

    async def __call__(self, endpoint: str, seconds: float) -> str:
        self.sent.append(endpoint)
        if len(self.sent) <= self.failures:
            raise self.error
        return endpoint


async def test_a_repeatable_call_is_retried_and_others_are_not() -> None:
    send = Flaky(2, ServiceUnavailable("down"))
    assert await _dependency().call(send, repeatable=True) == "a"
    assert len(send.sent) == 3
    send = Flaky(1, TimeoutError())
    with pytest.raises(TimeoutError):
        await _dependency().call(send, repeatable=False)
    assert len(send.sent) == 1


async def test_answers_are_neither_retried_nor_failures() -> None:
    dependency = _dependency(breaker=BreakerPolicy(consecutive_failures=1))
    send = Flaky(5, InvalidInput("no"))
    with pytest.raises(InvalidInput):
        await dependency.call(send, repeatable=True)
    assert len(send.sent) == 1 and dependency.state == "closed"


async def test_calls_inside_a_retried_step_make_one_attempt_and_repeats_spend_budget() -> None:
    dependency = _dependency(budget=BudgetPolicy(ratio=0.0, min_per_second=0.1))
    send = Flaky(1, ServiceUnavailable("down"))
    with retried_above(), pytest.raises(ServiceUnavailable):
        await dependency.call(send, repeatable=True)
    assert len(send.sent) == 1
    with retried_above(attempt=2):
        assert await dependency.call(send, repeatable=True) == "a"  # the one retry allowed
        with pytest.raises(ServiceUnavailable, match="budget"):
            await dependency.call(send, repeatable=True)
    assert len(send.sent) == 2


async def test_the_budget_stops_retries_during_an_outage() -> None:
    dependency = _dependency(
        budget=BudgetPolicy(ratio=0.1, min_per_second=0.0),
        breaker=BreakerPolicy(consecutive_failures=10_000, minimum_calls=10_000),
    )
    sends = 0

    async def down(endpoint: str, seconds: float) -> str:
        nonlocal sends
        sends += 1
        raise ConnectionResetError()

    for _ in range(100):
        with pytest.raises(ConnectionResetError):
            await dependency.call(down, repeatable=True)
    assert sends <= 100 + 10  # 10 % more, not 3 times as many


async def test_an_open_breaker_fails_fast_without_sending() -> None:
    dependency = _dependency(breaker=BreakerPolicy(consecutive_failures=2))
    send = Flaky(100, ConnectionResetError())
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            await dependency.call(send, repeatable=False)
    with pytest.raises(CircuitOpen):
        await dependency.call(send, repeatable=True)
    assert len(send.sent) == 2 and dependency.state == "open"


async def test_a_refused_connection_goes_to_the_next_endpoint_even_for_writes() -> None:
    dependency = _dependency(["a", "b"])
    seen: list[str] = []

    async def send(endpoint: str, seconds: float) -> str:
        seen.append(endpoint)
        if endpoint == "a":
            raise NotSent("refused")
        return endpoint

    results = [await dependency.call(send, repeatable=False) for _ in range(4)]
    assert set(results) == {"b"}


async def test_an_attempt_never_outlives_the_deadline() -> None:
    dependency = _dependency(timeout=5.0)

    async def hang(endpoint: str, seconds: float) -> str:
        await asyncio.sleep(10)
        return endpoint

    loop = asyncio.get_running_loop()
    started = loop.time()
    with deadline.deadline(0.05), pytest.raises(TimeoutError):
        await dependency.call(hang, repeatable=True)
    assert loop.time() - started < 1.0
    with deadline.deadline(-1), pytest.raises(DeadlineExceeded):
        await dependency.call(hang, repeatable=True)


async def test_a_failed_result_is_retried_then_returned() -> None:
    dependency = _dependency(attempts=2)
    answers = iter([503, 503, 200])

    async def send(endpoint: str, seconds: float) -> int:
        return next(answers)

    assert await dependency.call(send, repeatable=True, failed=lambda s: s >= 500) == 503
    assert dependency.failures == 2


async def test_a_probe_that_fails_takes_an_endpoint_out_of_rotation_and_back() -> None:
    dependency = _dependency(["a", "b"], probe_interval=0.01, probe_failures=2)
    paused = {"a"}

    async def probe(endpoint: str, seconds: float) -> bool:
        if endpoint in paused:
            await asyncio.sleep(10)
        return True

    dependency.start_probing(probe)
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not dependency.healthy["a"]:
                break
        assert not dependency.healthy["a"]
        assert {dependency.rotation()[0] for _ in range(10)} == {"b"}
        paused.clear()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if dependency.healthy["a"]:
                break
        assert "a" in dependency.rotation() + dependency.rotation()
    finally:
        await dependency.stop_probing()


def test_policies_take_overrides_from_settings() -> None:
    resilience = Resilience(
        {"*": CallPolicy(timeout=2.0)},
        {"payments": {"timeout": 1.0, "breaker.open_seconds": 5.0, "bulkhead.limit": 4}},
    )
    policy = resilience.policy("payments")
    assert policy.timeout == 1.0
    assert policy.breaker.open_seconds == 5.0 and policy.bulkhead.limit == 4
    assert resilience.policy("catalog").timeout == 2.0
    with pytest.raises(ValueError):
        CallPolicy().with_overrides({"breakers.x": 1})
    with pytest.raises(TypeError):
        CallPolicy().with_overrides({"nonsense": 1})


async def test_failed_results_count_against_the_breaker() -> None:
    dependency = _dependency(attempts=1, breaker=BreakerPolicy(consecutive_failures=2))

    async def unavailable(endpoint: str, seconds: float) -> int:
        return 503

    for _ in range(2):
        assert await dependency.call(unavailable, repeatable=False, failed=lambda s: s >= 500)
    assert dependency.state == "open"


def test_overrides_for_every_dependency_then_its_kind_then_itself() -> None:
    resilience = Resilience(
        {"*": CallPolicy(timeout=2.0)},
        {"*": {"attempts": 2}, "webhooks": {"timeout": 4.0}, "webhooks:a": {"attempts": 1}},
    )
    assert (resilience.policy("catalog").attempts, resilience.policy("catalog").timeout) == (2, 2)
    assert resilience.policy("webhooks:b").timeout == 4.0
    assert resilience.policy("webhooks:a").attempts == 1


async def test_no_retry_once_the_deadline_has_passed() -> None:
    dependency = _dependency(attempts=3)
    sent = 0

    async def slow(endpoint: str, seconds: float) -> str:
        nonlocal sent
        sent += 1
        await asyncio.sleep(seconds)  # uses all the time it was given
        return endpoint

    with deadline.deadline(0.05), pytest.raises(TimeoutError):
        await dependency.call(slow, repeatable=True)
    assert sent == 1 and dependency.budget.refused == 0 and dependency.retries == 0
