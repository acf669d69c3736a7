"""The duration and outcome of interface calls, on the side that serves them and the side
that makes them.

The outcome is ``ok`` or the class of the error that ended the call (``NotFound``,
``ServiceUnavailable``, ...): a bounded set, the platform's error classes, that says more
than a status code and travels unchanged across the HTTP binding.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from colony.platform.observability.histogram import Histogram
from colony.platform.observability.metrics import rpc_client_duration, rpc_server_duration


class CallTimers:
    """One method's timers, as served by ``service`` to ``caller`` (or, with ``peer``, as
    called by ``service`` from ``peer``): the ``ok`` child looked up once, an error's on its
    first occurrence."""

    def __init__(self, service: str, method: str, caller: str, peer: str | None = None) -> None:
        if peer is None:
            self._family: Histogram = rpc_server_duration
            self._labels: tuple[str, ...] = (service, method, caller)
        else:
            self._family = rpc_client_duration
            self._labels = (service, peer, method)
        self.ok: Any = self._family.labels(*self._labels, "ok")
        self._errors: dict[str, Any] = {}

    def failed(self, exc: BaseException, started: float) -> None:
        outcome = type(exc).__name__
        timer = self._errors.get(outcome)
        if timer is None:
            timer = self._errors[outcome] = self._family.labels(*self._labels, outcome)
        timer.observe(perf_counter() - started)
