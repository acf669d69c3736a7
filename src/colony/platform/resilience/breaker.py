"""A circuit breaker: stop calling a dependency that keeps failing, and find out when it is back.

closed → open when the last ``window`` calls failed at ``failure_rate`` or more (once at least
``minimum_calls`` were made), or ``consecutive_failures`` calls in a row failed. While open,
every call fails at once without reaching the dependency. After ``open_seconds`` the breaker is
half-open and lets ``probes`` calls through: if they all succeed it closes; if one fails it
opens again, for twice as long each time (up to ``max_open_seconds``), so a dependency that
stays down is probed less and less often.

Written here rather than taken from a library: pybreaker does not count the failures of async
calls, and purgatory keeps its state behind an async storage interface, which would put an
await on every call's hot path. This one is a plain state machine with an injectable clock, so
its tests run on a fake clock, as resilience4j's do.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from colony.platform.errors import CircuitOpen

State = Literal["closed", "open", "half_open"]
Listener = Callable[["CircuitBreaker", "State", "State"], None]


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_rate: float = 0.5
    window: int = 20
    minimum_calls: int = 10
    consecutive_failures: int = 5
    open_seconds: float = 1.0
    max_open_seconds: float = 5.0
    """Short on purpose: a dependency back from a restart or an outage is called again within
    seconds, while a probe a second at most costs it nothing worth saving."""
    probes: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.failure_rate <= 1:
            raise ValueError("failure_rate must be in (0, 1]")
        if self.window < 1 or self.minimum_calls < 1 or self.probes < 1:
            raise ValueError("window, minimum_calls and probes must be at least 1")
        if self.open_seconds <= 0 or self.max_open_seconds < self.open_seconds:
            raise ValueError("open_seconds must be positive and at most max_open_seconds")


class CircuitBreaker:
    """One dependency's (or one replica's) breaker. Not a context manager on purpose: the
    caller decides what counts as a failure (an answer such as a 404 is a success here)."""

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self.state: State = "closed"
        self.opened_count = 0
        self._clock = clock
        self._listeners = list(listeners or [])
        self._outcomes: deque[bool] = deque(maxlen=self.policy.window)
        self._failures_in_window = 0
        self._consecutive = 0
        self._open_until = 0.0
        self._open_for = self.policy.open_seconds
        self._probes_left = 0
        self._probe_successes = 0

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name} {self.state}>"

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @property
    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        return max(0.0, self._open_until - self._clock()) if self.state == "open" else 0.0

    def available(self) -> bool:
        """Whether a call would be let through now, without taking a probe's place."""
        if self.state == "closed":
            return True
        if self.state == "open":
            return self._clock() >= self._open_until
        return self._probes_left > 0

    def allow(self) -> None:
        """Let a call through, or raise :class:`CircuitOpen`."""
        if self.state == "closed":
            return
        if self.state == "open":
            if self._clock() < self._open_until:
                raise CircuitOpen(
                    f"{self.name} is failing; calls are held back for a moment.",
                    retry_after=round(self.retry_after, 3),
                )
            self._transition("half_open")
            self._probes_left = self.policy.probes
            self._probe_successes = 0
        if self._probes_left <= 0:
            raise CircuitOpen(f"{self.name} is being probed; calls are held back for a moment.")
        self._probes_left -= 1

    def record_success(self) -> None:
        self._consecutive = 0
        if self.state == "half_open":
            self._probe_successes += 1
            if self._probe_successes >= self.policy.probes:
                self._open_for = self.policy.open_seconds
                self._reset_window()
                self._transition("closed")
            return
        self._record(True)

    def record_failure(self) -> None:
        if self.state == "half_open":
            self._open_for = min(self.policy.max_open_seconds, self._open_for * 2)
            self._open()
            return
        if self.state == "open":
            return
        self._consecutive += 1
        self._record(False)
        policy = self.policy
        calls = len(self._outcomes)
        if self._consecutive >= policy.consecutive_failures or (
            calls >= policy.minimum_calls
            and self._failures_in_window >= policy.failure_rate * calls
        ):
            self._open()

    def trip(self) -> None:
        """Open now, on outside evidence (a failed health probe)."""
        if self.state != "open":
            self._open()

    def _record(self, ok: bool) -> None:
        if len(self._outcomes) == self._outcomes.maxlen and not self._outcomes[0]:
            self._failures_in_window -= 1
        self._outcomes.append(ok)
        if not ok:
            self._failures_in_window += 1

    def _reset_window(self) -> None:
        self._outcomes.clear()
        self._failures_in_window = 0
        self._consecutive = 0

    def _open(self) -> None:
        self._open_until = self._clock() + self._open_for
        self.opened_count += 1
        self._reset_window()
        self._transition("open")

    def _transition(self, to: State) -> None:
        before, self.state = self.state, to
        for listener in self._listeners:
            listener(self, before, to)
