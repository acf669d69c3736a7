"""One policy pipeline for every call that leaves the process, configured per dependency.

A call to a dependency goes, in this order, through:

1. its **deadline**: the attempt's timeout is the policy's, cut to what the caller's deadline
   leaves (:mod:`.deadline`); nothing waits past it;
2. **endpoint choice**: round robin over the endpoints (a service's replicas) whose breaker lets
   calls through and whose health probe has not failed (outlier ejection); when none does, the
   call fails at once with :class:`CircuitOpen`;
3. its **bulkhead**: a bound on calls in flight and waiting (:mod:`.bulkhead`);
4. the **attempt**, under the timeout; its outcome feeds that endpoint's breaker;
5. a **retry**, only for a call that is safe to repeat (a read, or a write the callee
   deduplicates), only where this layer is the one that retries, only while the dependency's
   retry budget allows it, after a backoff with full jitter, and never past the deadline.
   A connection refused before anything was sent goes to the next endpoint at once, whatever
   the call: the request never arrived, so sending it elsewhere is not a repeat.

**Where retries happen** — in one layer: the outermost. A call made at the top of a chain (the
gateway serving a person, a worker, an event handler) retries here. A saga retries its steps
itself, durably, within the order's deadline, so calls inside a step do not retry again; nor
does a call made while serving another process's call, whose caller decides. A repeat from
above (a saga's next attempt at a step, a caller's retry) is marked in the context and sent on
with the call (``x-colony-attempt``), and every dependency it reaches counts it against its
retry budget: repeats from any layer are bounded together.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from colony.platform import faults
from colony.platform.errors import (
    CircuitOpen,
    ColonyError,
    DeadlineExceeded,
    ServiceUnavailable,
)
from colony.platform.logging import get_logger
from colony.platform.observability.metrics import breaker_transitions
from colony.platform.resilience import deadline
from colony.platform.resilience.backoff import full_jitter
from colony.platform.resilience.breaker import BreakerPolicy, CircuitBreaker, State
from colony.platform.resilience.budget import BudgetPolicy, RetryBudget
from colony.platform.resilience.bulkhead import Bulkhead, BulkheadPolicy
from colony.platform.tasks import cancelled

T = TypeVar("T")
ATTEMPT_HEADER = "x-colony-attempt"
_log = get_logger("resilience")
_may_retry: ContextVar[bool] = ContextVar("may_retry", default=True)
_attempt: ContextVar[int] = ContextVar("attempt", default=1)


class NotSent(ConnectionError):
    """The request never reached the endpoint (the connection was refused): safe to send
    anywhere else, whatever the call does."""


@dataclass(frozen=True, slots=True)
class CallPolicy:
    timeout: float = 2.5
    """Seconds one attempt may take (less when the caller's deadline is nearer)."""
    attempts: int = 3
    """Tries in all for a call that is safe to repeat (the SRE book's bound)."""
    backoff_base: float = 0.05
    backoff_cap: float = 1.0
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    budget: BudgetPolicy = field(default_factory=BudgetPolicy)
    bulkhead: BulkheadPolicy = field(default_factory=BulkheadPolicy)
    probe_interval: float = 0.5
    """Health probes of each endpoint, when there are several to choose from."""
    probe_timeout: float = 0.5
    probe_failures: int = 2
    """Failed probes in a row that take an endpoint out of rotation until one succeeds."""

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.attempts < 1 or self.backoff_base < 0:
            raise ValueError("a call policy needs timeout > 0, attempts ≥ 1, backoff ≥ 0")

    def with_overrides(self, overrides: dict[str, Any]) -> CallPolicy:
        """This policy with settings' overrides: top-level fields by name, and the nested
        policies' fields as ``breaker.open_seconds``, ``budget.ratio``, ``bulkhead.limit``."""
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            part, _, name = key.partition(".")
            if name:
                if part not in ("breaker", "budget", "bulkhead"):
                    raise ValueError(f"unknown policy part {part!r}")
                nested.setdefault(part, {})[name] = value
            else:
                top[key] = value
        for part, values in nested.items():
            top[part] = replace(getattr(self, part), **values)
        return replace(self, **top)


# --- what layer retries ---------------------------------------------------------------------


class RetriedAbove:
    """The layer above retries this work (a saga step, a served call): calls made inside make
    one attempt each. ``attempt`` > 1 marks the work as a repeat, charged to budgets.

    A class, not a generator-based context manager: it is entered for every saga step,
    event and served call, and costs a third as much this way (measured)."""

    __slots__ = ("_attempt", "_tokens")

    def __init__(self, attempt: int = 1) -> None:
        self._attempt = attempt if attempt > 1 else 1
        self._tokens: tuple[Token[bool], Token[int]] | None = None

    def __enter__(self) -> None:
        self._tokens = (_may_retry.set(False), _attempt.set(self._attempt))

    def __exit__(self, *exc_info: object) -> None:
        if self._tokens is not None:
            may_retry, attempt = self._tokens
            _attempt.reset(attempt)
            _may_retry.reset(may_retry)
            self._tokens = None


def retried_above(attempt: int = 1) -> RetriedAbove:
    """See :class:`RetriedAbove`."""
    return RetriedAbove(attempt)


def attempt_number() -> int:
    return _attempt.get()


def attempt_from_header(value: str | None) -> int:
    try:
        return max(1, int(value)) if value else 1
    except ValueError:
        return 1


# --- one dependency -------------------------------------------------------------------------


class Dependency:
    """One dependency's policies and state: its endpoints' breakers, its bulkhead and its
    retry budget. Built once per process (see :class:`Resilience`) and shared by its callers."""

    def __init__(
        self,
        name: str,
        endpoints: Sequence[str],
        policy: CallPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        owner: str = "",
    ) -> None:
        """``owner`` names the process's service in the metrics of this dependency."""
        if not endpoints:
            raise ValueError(f"{name} needs at least one endpoint")
        self.name = name
        self.policy = policy or CallPolicy()
        self.endpoints = list(endpoints)
        self.breakers = {
            e: CircuitBreaker(
                f"{name}@{e}" if len(endpoints) > 1 else name, self.policy.breaker, clock
            )
            for e in self.endpoints
        }
        kind = name.partition(":")[0]  # sellers' webhook hosts counted under their kind
        transitions = {
            state: breaker_transitions.labels(owner, kind, state)
            for state in ("closed", "open", "half_open")
        }
        for breaker in self.breakers.values():
            breaker.listen(_log_transition)
            breaker.listen(lambda _breaker, _before, after: transitions[after].inc())
        self.healthy = dict.fromkeys(self.endpoints, True)
        self.budget = RetryBudget(self.policy.budget, clock)
        self.bulkhead = Bulkhead(name, self.policy.bulkhead)
        self.calls = 0
        self.failures = 0
        self.retries = 0
        self._turn = itertools.count()
        self._probe_misses = dict.fromkeys(self.endpoints, 0)
        self._prober: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Dependency {self.name} {', '.join(self.endpoints)}>"

    @property
    def state(self) -> State:
        """The dependency's breaker state: open when no endpoint takes calls."""
        states = [b.state for e, b in self.breakers.items() if self.healthy[e]]
        if "closed" in states:
            return "closed"
        return "half_open" if "half_open" in states else "open"

    def rotation(self) -> list[str]:
        """The endpoints that take calls now, starting from the next in turn."""
        if len(self.endpoints) == 1:
            endpoint = self.endpoints[0]
            return [endpoint] if self.breakers[endpoint].available() else []
        available = [e for e in self.endpoints if self.breakers[e].available()]
        # When probes fail everywhere, the probing may be what is wrong (a caller too busy to
        # hear answers in time): route on the breakers alone rather than refuse every call,
        # as Envoy does below its panic threshold.
        live = [e for e in available if self.healthy[e]] or available
        if not live:
            return []
        first = next(self._turn) % len(live)
        return live[first:] + live[:first]

    async def call(
        self,
        send: Callable[[str, float], Awaitable[T]],
        *,
        repeatable: bool,
        failed: Callable[[T], bool] | None = None,
    ) -> T:
        """``send(endpoint, timeout)`` under every policy; see the module's docstring.

        A result for which ``failed`` is true (a 5xx answer) counts against the endpoint and
        may be retried; if it is the last, it is returned for the caller to read."""
        policy = self.policy
        self.calls += 1
        repeat_from_above = _attempt.get() > 1
        if repeat_from_above:
            if not self.budget.try_spend():
                raise ServiceUnavailable(f"{self.name}: the retry budget is spent.")
        else:
            self.budget.record_call()
        may_retry = repeatable and _may_retry.get()
        attempt = 1
        while True:
            try:
                result = await self._attempt(send, policy, failed)
            except ColonyError as exc:
                # An answer, a breaker holding calls back, or no time left: none is helped
                # by another try here.
                if exc.status < 500 or isinstance(exc, CircuitOpen | DeadlineExceeded):
                    raise
                error: BaseException = exc
            except (TimeoutError, ConnectionError) as exc:
                error = exc
            else:
                if failed is None or not failed(result):
                    return result
                error = _FailedResult(result)
            self.failures += 1
            pause = full_jitter(attempt, policy.backoff_base, policy.backoff_cap)
            left = deadline.remaining()
            in_time = left is None or left > pause
            # The budget last: a retry that will not be made must not spend it.
            if not (
                may_retry and attempt < policy.attempts and in_time and self.budget.try_spend()
            ):
                if isinstance(error, _FailedResult):
                    return error.result  # type: ignore[no-any-return]
                raise error
            attempt += 1
            self.retries += 1
            await asyncio.sleep(pause)

    async def _attempt(
        self,
        send: Callable[[str, float], Awaitable[T]],
        policy: CallPolicy,
        failed: Callable[[T], bool] | None,
    ) -> T:
        timeout = deadline.bounded(policy.timeout)
        endpoints = self.rotation()
        if not endpoints:
            breaker = self.breakers[self.endpoints[0]]
            raise CircuitOpen(
                f"{self.name} is failing; calls are held back for a moment.",
                retry_after=round(breaker.retry_after, 3),
            )
        fault = faults.link_fault(self.name)
        async with self.bulkhead.slot(timeout):
            for endpoint in endpoints:
                breaker = self.breakers[endpoint]
                try:
                    breaker.allow()
                except CircuitOpen:
                    continue
                try:
                    async with asyncio.timeout(timeout):
                        if fault is not None:
                            await fault.before_call()
                        result = await send(endpoint, timeout)
                        if fault is not None:
                            fault.after_call()
                except NotSent:
                    # Nothing listens there (a process restarting): rest the endpoint at once
                    # rather than after several refusals, so the others share its calls.
                    breaker.trip()
                    continue
                except ColonyError as exc:
                    if exc.status >= 500:
                        breaker.record_failure()
                    else:
                        breaker.record_success()
                    raise
                except (TimeoutError, ConnectionError):
                    breaker.record_failure()
                    raise
                if failed is not None and failed(result):
                    breaker.record_failure()
                else:
                    breaker.record_success()
                return result
        raise ServiceUnavailable(f"{self.name}: no endpoint could be reached.")

    # --- health probes (outlier ejection) ---------------------------------------------------

    def start_probing(self, probe: Callable[[str, float], Awaitable[bool]]) -> None:
        """Probe each endpoint's health in the background, taking one that stops answering out
        of rotation within ``probe_interval * probe_failures``, and back when it answers: a
        paused process refuses nothing, it just never answers, which only a probe shows
        without making real calls wait. Only worth it with several endpoints to choose from."""
        if len(self.endpoints) > 1 and self._prober is None:
            self._prober = asyncio.create_task(
                self._probe_forever(probe), name=f"probe-{self.name}"
            )

    async def stop_probing(self) -> None:
        await cancelled(self._prober)
        self._prober = None

    async def _probe_forever(self, probe: Callable[[str, float], Awaitable[bool]]) -> None:
        policy = self.policy
        while True:
            results = await asyncio.gather(
                *(self._probe_one(probe, e) for e in self.endpoints), return_exceptions=True
            )
            for endpoint, ok in zip(self.endpoints, results, strict=True):
                self._probed(endpoint, ok is True)
            await asyncio.sleep(policy.probe_interval)

    async def _probe_one(self, probe: Callable[[str, float], Awaitable[bool]], e: str) -> bool:
        async with asyncio.timeout(self.policy.probe_timeout):
            return await probe(e, self.policy.probe_timeout)

    def _probed(self, endpoint: str, ok: bool) -> None:
        if ok:
            self._probe_misses[endpoint] = 0
            if not self.healthy[endpoint]:
                self.healthy[endpoint] = True
                _log.info("endpoint back in rotation", dependency=self.name, endpoint=endpoint)
            return
        self._probe_misses[endpoint] += 1
        if self.healthy[endpoint] and self._probe_misses[endpoint] >= self.policy.probe_failures:
            self.healthy[endpoint] = False
            _log.warning("endpoint ejected", dependency=self.name, endpoint=endpoint)

    def snapshot(self) -> dict[str, Any]:
        """What metrics and the console show of this dependency."""
        return {
            "name": self.name,
            "state": self.state,
            "calls": self.calls,
            "failures": self.failures,
            "retries": self.retries,
            "retries_refused": self.budget.refused,
            "in_flight": self.bulkhead.active,
            "waiting": self.bulkhead.waiting,
            "rejected": self.bulkhead.rejected,
            "endpoints": {
                e: {"state": self.breakers[e].state, "healthy": self.healthy[e]}
                for e in self.endpoints
            },
        }


class _FailedResult(Exception):
    def __init__(self, result: Any) -> None:
        self.result = result


def _log_transition(breaker: CircuitBreaker, before: State, after: State) -> None:
    log = _log.warning if after == "open" else _log.info
    log("circuit breaker " + after.replace("_", "-"), breaker=breaker.name, was=before)


# --- every dependency of a process ----------------------------------------------------------


class Resilience:
    """The process's dependencies, each made on first use with its policy: the defaults in
    code for its kind, then the overrides from settings (``COLONY_RESILIENCE``)."""

    def __init__(
        self,
        defaults: dict[str, CallPolicy] | None = None,
        overrides: dict[str, dict[str, Any]] | None = None,
        owner: str = "",
    ) -> None:
        self.owner = owner
        self.defaults = defaults or {}
        self.overrides = overrides or {}
        self.dependencies: dict[str, Dependency] = {}

    def policy(self, name: str) -> CallPolicy:
        kind = name.partition(":")[0]  # "webhooks:shop.example" is of the kind "webhooks"
        policy = self.defaults.get(name) or self.defaults.get(kind) or self.defaults.get("*")
        policy = policy or CallPolicy()
        # Overrides for every dependency ("*"), then for its kind, then for it alone.
        for key in dict.fromkeys(("*", kind, name)):
            if key in self.overrides:
                policy = policy.with_overrides(self.overrides[key])
        return policy

    def dependency(self, name: str, endpoints: Sequence[str]) -> Dependency:
        existing = self.dependencies.get(name)
        if existing is None:
            existing = self.dependencies[name] = Dependency(
                name, endpoints, self.policy(name), owner=self.owner
            )
        return existing

    def snapshot(self) -> list[dict[str, Any]]:
        return [d.snapshot() for d in self.dependencies.values()]

    async def close(self) -> None:
        for dependency in self.dependencies.values():
            await dependency.stop_probing()
