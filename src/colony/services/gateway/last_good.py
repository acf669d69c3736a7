"""The last good answers to reads that may be served stale when their service is down.

The brief's rule: catalog and search stay available and converge; inventory and payments
refuse rather than guess. So only reads of the first kind keep their last answers here, and the
gateway gives one back, marked stale, only when asking failed because the service could not be
reached or did not answer in time (``ServiceUnavailable``, which an open breaker's
``CircuitOpen`` is, or ``TimeoutError``). Any other failure, a 404 or a bad query, is the
answer.

The gateway keeps it rather than the catalog's client or the catalog itself: the case it is
for is the catalog being unreachable, and the catalog's own search cache is in the catalog.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from colony.platform.errors import ServiceUnavailable

V = TypeVar("V")

UNREACHABLE: tuple[type[Exception], ...] = (ServiceUnavailable, TimeoutError)
"""Failures that mean the service could not be asked: the only ones a stale answer covers."""


class LastGood(Generic[V]):
    """At most ``max_entries`` answers, least recently stored dropped first, each served for
    at most ``max_age_seconds`` after it was stored (0: never served)."""

    def __init__(
        self,
        max_age_seconds: float,
        max_entries: int = 512,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age_seconds < 0 or max_entries < 1:
            raise ValueError("LastGood needs max_age_seconds ≥ 0 and max_entries ≥ 1")
        self.max_age_seconds = max_age_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._answers: OrderedDict[Hashable, tuple[V, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def remember(self, key: Hashable, answer: V) -> None:
        if not self.max_age_seconds:
            return
        answers = self._answers
        answers[key] = (answer, self._clock())
        answers.move_to_end(key)
        if len(answers) > self.max_entries:
            answers.popitem(last=False)

    def recall(self, key: Hashable) -> V | None:
        """The last answer stored for ``key`` if it is young enough, else None."""
        kept = self._answers.get(key)
        if kept is None or self._clock() - kept[1] > self.max_age_seconds:
            return None
        return kept[0]
