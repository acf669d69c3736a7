"""The saga engine: forward steps, compensation in reverse, retries, resumption after a crash,
leases, cancellation requests, and steps that may not be given up on."""

from __future__ import annotations

import asyncio
import dataclasses

import msgspec
import pytest

from colony.platform import context
from colony.platform.errors import Conflict, ServiceUnavailable
from colony.platform.saga import (
    SAGA_MIGRATIONS,
    SagaDefinition,
    SagaEngine,
    SagaHooks,
    SagaPolicy,
    Step,
)
from colony.platform.saga.definition import UNAVAILABLE_REASON
from colony.platform.storage.migrations import migrate
from colony.platform.storage.sqlite import SqliteDatabase

FAST = SagaPolicy(
    step_timeout=1.0,
    attempts=3,
    patience=0.0,
    lease_seconds=0.5,
    poll_seconds=0.05,
    backoff_initial=0.001,
    backoff_max=0.01,
)


class State(msgspec.Struct):
    value: int = 0


class Recorder(SagaHooks[State]):
    def __init__(self) -> None:
        self.log: list[str] = []

    async def step_completed(self, saga_id: str, step: str, state: State) -> None:
        self.log.append(f"done {step}")

    async def step_skipped(self, saga_id: str, step: str, reason: str, state: State) -> None:
        self.log.append(f"skipped {step}")

    async def failed(self, saga_id: str, step: str, reason: str, state: State) -> None:
        self.log.append(f"failed {step}: {reason}")

    async def step_compensated(self, saga_id: str, step: str, state: State) -> None:
        self.log.append(f"undid {step}")

    async def completed(self, saga_id: str, state: State) -> None:
        self.log.append(f"completed {state.value}")

    async def cancelled(self, saga_id: str, reason: str, state: State) -> None:
        self.log.append("cancelled")


class World:
    """What the steps do to the outside world, to check that compensations undo it."""

    def __init__(self) -> None:
        self.effects: list[str] = []
        self.calls: dict[str, int] = {}
        self.fail: dict[str, list[BaseException]] = {}
        self.block: dict[str, asyncio.Event] = {}

    def step(self, name: str) -> Step[State]:
        async def action(state: State) -> State:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name in self.block:
                await self.block[name].wait()
            if self.fail.get(name):
                raise self.fail[name].pop(0)
            if name not in self.effects:
                self.effects.append(name)
            return State(value=state.value + 1)

        async def undo(state: State) -> None:
            if name in self.effects:
                self.effects.remove(name)

        return Step(name, action, undo)


@pytest.fixture
async def db(tmp_path):
    database = SqliteDatabase("saga", str(tmp_path / "saga.db"))
    await database.open()
    await migrate(database, "saga", SAGA_MIGRATIONS)
    yield database
    await database.close()


def engine_for(db, world: World, hooks: Recorder, owner: str = "a", steps=("a", "b", "c")):
    definition = SagaDefinition("test", State, [world.step(name) for name in steps])
    return SagaEngine(db, definition, hooks, owner, FAST)


async def settles(engine, saga_id: str, status: str) -> None:
    for _ in range(250):
        if (await engine.load(saga_id)).status == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{saga_id} never became {status}")


async def begin(db, engine, saga_id: str = "s1") -> None:
    async with db.transaction():
        await engine.begin(saga_id, State())


async def test_every_step_runs_in_order_and_the_saga_completes(db):
    world, hooks = World(), Recorder()
    engine = engine_for(db, world, hooks)
    await begin(db, engine)
    await engine.idle()
    assert world.effects == ["a", "b", "c"]
    assert hooks.log == ["done a", "done b", "done c", "completed 3"]
    assert (await engine.load("s1")).status == "completed"


async def test_a_failure_compensates_in_reverse_including_the_failed_step(db):
    world, hooks = World(), Recorder()
    world.fail["c"] = [Conflict("no stock")]
    engine = engine_for(db, world, hooks)
    await begin(db, engine)
    await engine.idle()
    assert world.effects == []
    assert hooks.log == [
        "done a",
        "done b",
        "failed c: no stock",
        "undid c",
        "undid b",
        "undid a",
        "cancelled",
    ]
    record = await engine.load("s1")
    assert (record.status, record.reason) == ("cancelled", "no stock")


async def test_transient_failures_are_retried_within_the_bound(db):
    world, hooks = World(), Recorder()
    world.fail["b"] = [ServiceUnavailable("down"), TimeoutError()]
    engine = engine_for(db, world, hooks)
    await begin(db, engine)
    await engine.idle()
    assert world.calls["b"] == 3 and hooks.log[-1] == "completed 3"

    world2, hooks2 = World(), Recorder()
    world2.fail["b"] = [ServiceUnavailable("down")] * 3
    engine2 = engine_for(db, world2, hooks2)
    await begin(db, engine2, "s2")
    await engine2.idle()
    assert world2.calls["b"] == FAST.attempts and hooks2.log[-1] == "cancelled"


async def test_a_step_waits_for_a_dependency_that_is_down_as_long_as_its_patience(db):
    world, hooks = World(), Recorder()
    world.fail["b"] = [ServiceUnavailable("restarting")] * 12
    definition = SagaDefinition("test", State, [world.step("a"), world.step("b")])
    patient = dataclasses.replace(FAST, patience=30.0)
    engine = SagaEngine(db, definition, hooks, "a", patient)
    await begin(db, engine)
    await engine.idle()
    assert world.calls["b"] == 13 and hooks.log[-1] == "completed 2"


async def test_patience_ends_at_the_saga_deadline(db):
    world, hooks = World(), Recorder()
    world.fail["b"] = [ServiceUnavailable("down")] * 10_000
    definition = SagaDefinition("test", State, [world.step("a"), world.step("b")])
    patient = dataclasses.replace(FAST, patience=60.0, deadline=0.3)
    engine = SagaEngine(db, definition, hooks, "a", patient)
    await begin(db, engine)
    async with asyncio.timeout(5):
        await engine.idle()
    assert hooks.log[-1] == "cancelled" and world.effects == []


async def test_a_buyer_reads_a_sentence_not_an_address_when_a_dependency_is_down(db):
    world, hooks = World(), Recorder()
    world.fail["b"] = [ServiceUnavailable("http://127.0.0.1:48783: Cannot connect")] * 5
    engine = engine_for(db, world, hooks)
    await begin(db, engine)
    await engine.idle()
    record = await engine.load("s1")
    assert record.status == "cancelled"
    assert record.reason == UNAVAILABLE_REASON and "127.0.0.1" not in record.reason


async def test_a_step_slower_than_its_deadline_fails_it(db):
    world, hooks = World(), Recorder()
    world.block["b"] = asyncio.Event()  # never set: every attempt times out
    definition = SagaDefinition("test", State, [world.step("a"), world.step("b")])
    policy = SagaPolicy(
        step_timeout=0.05, attempts=2, patience=0.0, backoff_initial=0.001, backoff_max=0.01
    )
    engine = SagaEngine(db, definition, hooks, "a", policy)
    await begin(db, engine)
    await engine.idle()
    assert world.calls["b"] == 2 and hooks.log[-1] == "cancelled" and world.effects == []


async def test_a_crashed_saga_is_resumed_by_its_own_instance_at_once(db):
    world, hooks = World(), Recorder()
    world.block["b"] = asyncio.Event()
    engine = engine_for(db, world, hooks)
    await begin(db, engine)
    await asyncio.sleep(0.05)
    await engine.stop()  # the process dies with step b in flight
    assert (await engine.load("s1")).status == "running"

    world.block.pop("b")
    restarted = engine_for(db, world, Recorder())
    restarted.start()
    try:
        await settles(restarted, "s1", "completed")
    finally:
        await restarted.stop()
    assert world.effects == ["a", "b", "c"]


async def test_another_instance_takes_over_once_the_lease_runs_out(db):
    world, hooks = World(), Recorder()
    world.block["b"] = asyncio.Event()
    engine = engine_for(db, world, hooks, owner="replica-1")
    await begin(db, engine)
    await asyncio.sleep(0.05)
    await engine.stop()
    world.block.pop("b")
    other = engine_for(db, world, Recorder(), owner="replica-2")
    other.start()
    try:
        await asyncio.sleep(FAST.lease_seconds / 3)
        assert (await other.load("s1")).status == "running", "taken before the lease ran out"
        await settles(other, "s1", "completed")
    finally:
        await other.stop()


async def test_a_cancellation_request_turns_a_running_saga_round(db):
    world, hooks = World(), Recorder()
    world.block["b"] = asyncio.Event()
    engine = engine_for(db, world, hooks)
    await begin(db, engine)
    await asyncio.sleep(0.05)
    async with db.transaction():
        assert await engine.request_cancel("s1", "buyer changed their mind")
    world.block["b"].set()
    await engine.idle()
    record = await engine.load("s1")
    assert (record.status, record.reason) == ("cancelled", "buyer changed their mind")
    assert world.effects == []
    assert not await engine.request_cancel("s1", "again")


async def test_skipped_and_persistent_steps(db):
    world, hooks = World(), Recorder()
    world.fail["b"] = [Conflict("cart gone")] * 5
    world.fail["c"] = [Conflict("not yet")] * 4
    a, b, c = world.step("a"), world.step("b"), world.step("c")
    definition = SagaDefinition(
        "test",
        State,
        [a, Step("b", b.action, critical=False), Step("c", c.action, persistent=True)],
    )
    engine = SagaEngine(db, definition, hooks, "a", FAST)
    await begin(db, engine)
    await engine.idle()
    assert hooks.log == ["done a", "skipped b", "done c", "completed 2"]
    assert world.calls["c"] == 5


async def test_steps_without_checkpoint_are_recorded_with_the_next_one(db):
    world, hooks = World(), Recorder()
    a, b, c = world.step("a"), world.step("b"), world.step("c")
    definition = SagaDefinition(
        "test", State, [Step("a", a.action, checkpoint=False), b, Step("c", c.action)]
    )
    engine = SagaEngine(db, definition, hooks, "a", FAST)
    world.block["b"] = asyncio.Event()
    await begin(db, engine)
    await asyncio.sleep(0.05)
    assert (await engine.load("s1")).step == 0, "a is not recorded on its own"
    world.block["b"].set()
    await engine.idle()
    assert hooks.log == ["done a", "done b", "done c", "completed 3"]


async def test_a_saga_begun_by_an_idempotent_request_does_not_carry_its_key(db):
    """Its steps are not repeats of the request: a service storing results by key would
    answer a compensation with the result of the step it undoes."""
    seen: list[object] = []

    async def look(state: State) -> None:
        seen.append((context.idempotency_request(), context.correlation_id()))

    definition = SagaDefinition("test", State, [Step("look", look)])
    engine = SagaEngine(db, definition, Recorder(), "a", FAST)
    request = context.IdempotencyRequest(key="buyer:k1", fingerprint="f")
    with context.call_context("c-1", request):
        await begin(db, engine)
    await engine.idle()
    assert seen == [(None, "c-1")]
