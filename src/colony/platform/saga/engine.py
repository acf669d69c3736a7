"""The saga engine: runs sagas step by step, durably, and turns them round when a step fails.

Each transition (a step done, a step compensated, the end) is one transaction on the owner's
database: the saga's row and whatever the owner records with it (its events, its outbox). A
process that dies mid-saga leaves the row where the last transition put it; whoever holds the
lease next (the same instance after a restart at once, another after ``lease_seconds``) runs
the saga on from there. Steps are idempotent, so repeating the one in flight is safe.

Written here rather than taken from a workflow library: the transition has to share a
transaction with the owner's event store and outbox, which such libraries keep in their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

import msgspec

from colony.platform import context
from colony.platform.clock import utc_now, utc_now_iso
from colony.platform.logging import get_logger
from colony.platform.observability import tracing
from colony.platform.observability.metrics import saga_step_duration, sagas_finished
from colony.platform.observability.trace_store import ORDER_ID
from colony.platform.resilience import deadline, retried_above
from colony.platform.saga.definition import SagaDefinition, SagaHooks, Step, describe
from colony.platform.storage import Database

S = TypeVar("S")
_log = get_logger("saga")
_OPEN = ("running", "compensating")


class LeaseLost(Exception):
    """Another instance took the saga over (this one was presumed dead)."""


@dataclass(frozen=True)
class SagaPolicy:
    step_timeout: float = 5.0
    """Deadline of one attempt of one step."""
    attempts: int = 5
    """Attempts of a step that fails transiently, at least, before the saga turns round."""
    patience: float = 120.0
    """Seconds a step keeps retrying transient failures (a dependency down or restarting),
    from its first attempt, within the saga's deadline: a restart must not cost an order.
    Calls inside a step make one attempt each (see :mod:`colony.platform.resilience`): the
    saga is the layer that retries them, and its repeats are charged to retry budgets."""
    deadline: float = 600.0
    """From begin to the end of the forward steps; past it the saga turns round."""
    lease_seconds: float = 30.0
    poll_seconds: float = 1.0
    concurrency: int = 512
    """Sagas running at once in this process: a bulkhead, so a slow dependency cannot
    take every task the process has."""
    backoff_initial: float = 0.05
    backoff_max: float = 2.0


@dataclass
class SagaRecord(Generic[S]):
    id: str
    status: str
    step: int
    state: S
    reason: str | None
    cancel_requested: str | None
    deadline_at: str
    furthest: int = -1
    """The furthest step that may have run: steps past the last checkpoint leave no trace
    if the process dies, so a resumed saga assumes every step may have."""


def _iso(seconds_from_now: float) -> str:
    return (utc_now() + timedelta(seconds=seconds_from_now)).isoformat(timespec="microseconds")


class SagaEngine(Generic[S]):
    def __init__(
        self,
        db: Database,
        definition: SagaDefinition[S],
        hooks: SagaHooks[S],
        owner: str,
        policy: SagaPolicy | None = None,
    ) -> None:
        self.db = db
        self.definition = definition
        self.hooks = hooks
        self.owner = owner
        self.policy = policy or SagaPolicy()
        self._bulkhead = asyncio.Semaphore(self.policy.concurrency)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancel_requests: dict[str, str] = {}
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False
        self._encode = msgspec.json.Encoder().encode
        self._decoder = msgspec.json.Decoder(definition.state_type)
        self._timers: dict[tuple[str, str, str], Any] = {}
        self._finished = {
            outcome: sagas_finished.labels(db.name, definition.kind, outcome)
            for outcome in ("completed", "cancelled")
        }

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        self._poller = asyncio.create_task(
            self._poll_forever(), name=f"saga-{self.definition.kind}"
        )

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in [self._poller, *self._tasks.values()] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._poller = None
        self._tasks.clear()

    async def idle(self) -> None:
        """Wait until no saga runs in this process (tests and benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def settled(self, saga_id: str) -> None:
        """Wait for the saga if it runs in this process (an answer to a person waiting)."""
        task = self._tasks.get(saga_id)
        if task is not None:
            await asyncio.wait([task])

    # --- what owners call -----------------------------------------------------------------

    async def begin(self, saga_id: str, state: S, deadline_seconds: float | None = None) -> str:
        """Record a new saga, inside the caller's transaction; it runs once that commits.
        Returns its deadline."""
        now = utc_now_iso()
        deadline = _iso(deadline_seconds or self.policy.deadline)
        encoded = self._encode(state)
        await self.db.execute(
            "INSERT INTO saga_instances (id, kind, status, step, state, deadline_at,"
            " next_attempt_at, lease_owner, lease_until, created_at, updated_at)"
            " VALUES (?, ?, 'running', 0, ?, ?, ?, ?, ?, ?, ?)",
            (
                saga_id,
                self.definition.kind,
                encoded,
                deadline,
                now,
                self.owner,
                _iso(self.policy.lease_seconds),
                now,
                now,
            ),
        )
        # The new saga's lease is this instance's: while it lasts, the task needs neither to
        # claim the row nor to read back what it just wrote.
        leased_until = time.monotonic() + self.policy.lease_seconds / 2
        record = SagaRecord(
            saga_id, "running", 0, self._decoder.decode(encoded), None, None, deadline
        )
        self.db.after_commit(lambda: self._spawn(saga_id, (record, leased_until)))
        return deadline

    async def request_cancel(self, saga_id: str, reason: str) -> bool:
        """Ask a running saga to turn round at its next step; False if it is past that."""
        changed = await self.db.execute(
            "UPDATE saga_instances SET cancel_requested = ?, updated_at = ?"
            " WHERE id = ? AND status = 'running'",
            (reason, utc_now_iso(), saga_id),
        )
        if changed:
            # Seen at the saga's next step when it runs here; at its next checkpoint if not.
            self.db.after_commit(lambda: self._cancel_requests.__setitem__(saga_id, reason))
        return changed > 0

    async def load(self, saga_id: str) -> SagaRecord[S] | None:
        row = await self.db.fetch_one(
            "SELECT id, status, step, state, reason, cancel_requested, deadline_at"
            " FROM saga_instances WHERE id = ?",
            (saga_id,),
        )
        if row is None:
            return None
        return SagaRecord(
            id=row[0],
            status=row[1],
            step=row[2],
            state=self._decoder.decode(row[3]),
            reason=row[4],
            cancel_requested=row[5],
            deadline_at=row[6],
        )

    async def overdue(self) -> list[str]:
        """Sagas still open past their deadline (plus a lease, to let a takeover happen)."""
        rows = await self.db.fetch_all(
            "SELECT id FROM saga_instances WHERE kind = ? AND status IN ('running',"
            " 'compensating') AND deadline_at < ?",
            (self.definition.kind, _iso(-self.policy.lease_seconds)),
        )
        return [row[0] for row in rows]

    # --- running --------------------------------------------------------------------------

    def _spawn(self, saga_id: str, fresh: tuple[SagaRecord[S], float] | None = None) -> None:
        if self._stopping or saga_id in self._tasks:
            return
        # The saga keeps the request's correlation id, not its Idempotency-Key: every step
        # would be taken for a repeat of the request (a compensation for a replay of its
        # step, say) by a service that stores results by key.
        # Nor the request's deadline: the saga outlives the request that began it.
        with context.without_idempotency(), deadline.no_deadline():
            task = asyncio.create_task(self._run(saga_id, fresh), name=f"saga:{saga_id}")
        self._tasks[saga_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(saga_id, None))

    async def _poll_forever(self) -> None:
        while True:
            try:
                for saga_id in await self._claimable():
                    self._spawn(saga_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("looking for sagas to resume failed; will retry")
            await asyncio.sleep(self.policy.poll_seconds)

    async def _claimable(self) -> list[str]:
        rows = await self.db.fetch_all(
            "SELECT id FROM saga_instances WHERE kind = ? AND status IN ('running',"
            " 'compensating') AND next_attempt_at <= ? AND (lease_owner = ?"
            " OR lease_until IS NULL OR lease_until < ?) LIMIT 500",
            (self.definition.kind, utc_now_iso(), self.owner, utc_now_iso()),
        )
        return [row[0] for row in rows if row[0] not in self._tasks]

    async def _claim(self, saga_id: str) -> bool:
        now = utc_now_iso()
        claimed = await self.db.execute(
            "UPDATE saga_instances SET lease_owner = ?, lease_until = ?"
            " WHERE id = ? AND status IN ('running', 'compensating') AND (lease_owner = ?"
            " OR lease_until IS NULL OR lease_until < ?)",
            (self.owner, _iso(self.policy.lease_seconds), saga_id, self.owner, now),
        )
        return claimed > 0

    async def _record(self, saga: SagaRecord[S], status: str, step: int, **columns: Any) -> None:
        """Write the saga's new position; call inside the transition's transaction."""
        sets = "".join(f", {name} = ?" for name in columns)
        # RETURNING: a cancellation asked for meanwhile is seen without another read.
        changed = await self.db.fetch_all(
            f"UPDATE saga_instances SET status = ?, step = ?, state = ?, attempts = 0,"
            f" lease_until = ?, updated_at = ?{sets} WHERE id = ? AND lease_owner = ?"
            " RETURNING cancel_requested",
            (
                status,
                step,
                self._encode(saga.state),
                _iso(self.policy.lease_seconds),
                utc_now_iso(),
                *columns.values(),
                saga.id,
                self.owner,
            ),
        )
        if not changed:
            raise LeaseLost(saga.id)
        saga.status, saga.step = status, step
        saga.cancel_requested = changed[0][0]

    async def _run(self, saga_id: str, fresh: tuple[SagaRecord[S], float] | None) -> None:
        async with self._bulkhead:
            if fresh is not None and time.monotonic() < fresh[1]:
                saga: SagaRecord[S] | None = fresh[0]
            else:
                if not await self._claim(saga_id):
                    return
                saga = await self.load(saga_id)
            if saga is None:
                return
            saga.furthest = saga.step if fresh else len(self.definition.steps) - 1
            try:
                if saga.status == "running":
                    await self._forward(saga)
                if saga.status == "compensating":
                    await self._backward(saga)
            except LeaseLost:
                _log.warning("saga taken over by another instance", saga=saga_id)

    async def _forward(self, saga: SagaRecord[S]) -> None:
        steps = self.definition.steps
        # Steps done but not yet recorded: written together at the next checkpoint. A crash
        # before it repeats them, which their idempotence makes safe.
        done: list[tuple[str, str | None]] = []
        while saga.step < len(steps):
            step = steps[saga.step]
            cancel = self._cancel_requests.pop(saga.id, None) or saga.cancel_requested
            if cancel:
                await self._checkpoint(saga, done)
                return await self._turn_round(saga, step.name, cancel)
            if saga.deadline_at < utc_now_iso():
                await self._checkpoint(saga, done)
                return await self._turn_round(saga, step.name, "The checkout ran out of time.")
            saga.furthest = max(saga.furthest, saga.step)
            started = time.perf_counter()
            try:
                with (
                    tracing.child(
                        f"saga {self.definition.kind} {step.name}",
                        attributes=self._traced(saga),
                        service=self.db.name,
                    )
                    if tracing.recording()
                    else tracing.NO_SPAN
                ):
                    result = await self._attempt(saga, step)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._timed(step.name, "forward", "failed", started)
                if step.critical:
                    _log.info("saga step failed", saga=saga.id, step=step.name, error=repr(exc))
                    await self._checkpoint(saga, done)
                    return await self._turn_round(saga, step.name, describe(exc))
                _log.warning("saga step skipped", saga=saga.id, step=step.name, error=repr(exc))
                done.append((step.name, describe(exc)))
                saga.step += 1
                continue
            self._timed(step.name, "forward", "ok", started)
            if result is not None:
                saga.state = result
            done.append((step.name, None))
            saga.step += 1
            if step.checkpoint:
                await self._checkpoint(saga, done)
        async with self.db.transaction():
            await self._record(saga, "completed", saga.step)
            await self._report(saga, done)
            await self.hooks.completed(saga.id, saga.state)
        self._finished["completed"].inc()

    async def _checkpoint(self, saga: SagaRecord[S], done: list[tuple[str, str | None]]) -> None:
        if not done:
            return
        async with self.db.transaction():
            await self._record(saga, "running", saga.step)
            await self._report(saga, done)

    async def _report(self, saga: SagaRecord[S], done: list[tuple[str, str | None]]) -> None:
        for name, skipped in done:
            if skipped is None:
                await self.hooks.step_completed(saga.id, name, saga.state)
            else:
                await self.hooks.step_skipped(saga.id, name, skipped, saga.state)
        done.clear()

    async def _attempt(self, saga: SagaRecord[S], step: Step[S]) -> S | None:
        """The step's action, each attempt under its deadline, transient failures retried
        with exponential backoff and full jitter."""
        policy = self.policy
        if step.persistent:
            return await self._until_done(saga, step.name, step.action)  # type: ignore[no-any-return]
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                with retried_above(attempt):
                    async with deadline.deadline(policy.step_timeout):
                        return await step.action(saga.state)
            except self.definition.transient as exc:
                patient = time.monotonic() - started < policy.patience
                if (attempt >= policy.attempts and not patient) or saga.deadline_at < utc_now_iso():
                    raise
                log = _log.info if attempt == 1 else _log.debug
                log("saga step retried", saga=saga.id, step=step.name, error=repr(exc))
                await self._pause(attempt)
                await self._renew(saga.id)

    async def _pause(self, attempt: int) -> None:
        ceiling = min(self.policy.backoff_max, self.policy.backoff_initial * 2 ** (attempt - 1))
        await asyncio.sleep(random.uniform(0, ceiling))

    async def _renew(self, saga_id: str) -> None:
        renewed = await self.db.execute(
            "UPDATE saga_instances SET lease_until = ? WHERE id = ? AND lease_owner = ?",
            (_iso(self.policy.lease_seconds), saga_id, self.owner),
        )
        if not renewed:
            raise LeaseLost(saga_id)

    async def _turn_round(self, saga: SagaRecord[S], step_name: str, reason: str) -> None:
        async with self.db.transaction():
            # The failed step is compensated too: a failure may have had its effect (a
            # timeout after the provider charged), and compensations undo nothing gracefully.
            # So is every step that may have run unrecorded before a crash.
            await self._record(
                saga,
                "compensating",
                max(saga.step, saga.furthest),
                reason=reason,
                failed_step=step_name,
            )
            await self.hooks.failed(saga.id, step_name, reason, saga.state)
        saga.reason = reason
        _log.info("saga turning round", saga=saga.id, step=step_name, reason=reason)

    async def _backward(self, saga: SagaRecord[S]) -> None:
        steps = self.definition.steps
        reason = saga.reason or "cancelled"
        while saga.step >= 0:
            step = steps[min(saga.step, len(steps) - 1)]
            if step.compensation is not None:
                await self._compensate(saga, step)
            async with self.db.transaction():
                await self._record(saga, "compensating", saga.step - 1)
                if step.compensation is not None:
                    await self.hooks.step_compensated(saga.id, step.name, saga.state)
        async with self.db.transaction():
            await self._record(saga, "cancelled", 0)
            await self.hooks.cancelled(saga.id, reason, saga.state)
        self._finished["cancelled"].inc()

    async def _compensate(self, saga: SagaRecord[S], step: Step[S]) -> None:
        assert step.compensation is not None
        started = time.perf_counter()
        # Kept whatever the trace's sampling said: a compensation is what people look for.
        with tracing.span(
            f"saga {self.definition.kind} compensate {step.name}",
            attributes=self._traced(saga),
            service=self.db.name,
            keep=True,
        ):
            await self._until_done(saga, step.name, step.compensation)
        self._timed(step.name, "compensate", "ok", started)

    def _traced(self, saga: SagaRecord[S]) -> dict[str, str]:
        return {"colony.saga": self.definition.kind, "colony.saga_id": saga.id, ORDER_ID: saga.id}

    def _timed(self, step: str, direction: str, outcome: str, started: float) -> None:
        key = (step, direction, outcome)
        timer = self._timers.get(key)
        if timer is None:
            timer = self._timers[key] = saga_step_duration.labels(
                self.db.name, self.definition.kind, step, direction, outcome
            )
        timer.observe(time.perf_counter() - started)

    async def _until_done(
        self, saga: SagaRecord[S], name: str, work: Callable[[S], Awaitable[Any]]
    ) -> Any:
        """Retried until it succeeds: a compensation cannot be given up on, only delayed.
        A saga stuck here is what ``verify`` reports as short of a terminal state."""
        attempt = 0
        while True:
            attempt += 1
            try:
                with retried_above(attempt):
                    async with deadline.deadline(self.policy.step_timeout):
                        return await work(saga.state)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning(
                    "compensation failed; retrying",
                    saga=saga.id,
                    step=name,
                    attempt=attempt,
                    error=repr(exc),
                )
                await self._pause(min(attempt, 10))
                await self._renew(saga.id)
