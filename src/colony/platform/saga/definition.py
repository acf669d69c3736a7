"""How a saga is described: its steps, each an action with an optional compensation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from colony.platform.errors import ColonyError, DeadlineExceeded, ServiceUnavailable

S = TypeVar("S")

TRANSIENT: tuple[type[BaseException], ...] = (
    ServiceUnavailable,
    DeadlineExceeded,
    TimeoutError,
    ConnectionError,
)
"""Failures worth another attempt; anything else a step raises is an answer (a decline, no
stock) and turns the saga round at once."""


@dataclass(frozen=True)
class Step(Generic[S]):
    """``action`` returns the new state (or None to keep it). It may run more than once (a
    retry, a crash before its result was recorded), so it must be idempotent; so must
    ``compensation``, which also runs for a step whose action failed or never ran, since an
    ambiguous failure may have had its effect."""

    name: str
    action: Callable[[S], Awaitable[S | None]]
    compensation: Callable[[S], Awaitable[None]] | None = None
    critical: bool = True
    """A non-critical step that keeps failing is logged and skipped, not compensated."""
    persistent: bool = False
    """Past the point of no return: retried, whatever it raises, until it succeeds."""
    checkpoint: bool = True
    """Record the saga's progress once this step is done. Without, progress is recorded with
    a later step's (fewer transactions); a crash in between repeats the steps since."""


@dataclass(frozen=True)
class SagaDefinition(Generic[S]):
    kind: str
    state_type: type[S]
    steps: list[Step[S]]
    transient: tuple[type[BaseException], ...] = field(default=TRANSIENT)


class SagaHooks(Generic[S]):
    """What the saga's owner records with each transition, in the same transaction."""

    async def step_completed(self, saga_id: str, step: str, state: S) -> None:
        pass

    async def step_compensated(self, saga_id: str, step: str, state: S) -> None:
        pass

    async def step_skipped(self, saga_id: str, step: str, reason: str, state: S) -> None:
        pass

    async def failed(self, saga_id: str, step: str, reason: str, state: S) -> None:
        pass

    async def completed(self, saga_id: str, state: S) -> None:
        pass

    async def cancelled(self, saga_id: str, reason: str, state: S) -> None:
        pass


UNAVAILABLE_REASON = "A service this order needs did not respond in time."


def describe(exc: BaseException) -> str:
    """What a person reads about a failed step: the service's own words for an answer (a
    decline, no stock), one plain sentence for a failure of the machinery (a timeout, a
    service down), whose detail, with its addresses, belongs in the logs and stays there."""
    if isinstance(exc, ColonyError) and exc.status < 500:
        return exc.detail
    return UNAVAILABLE_REASON
