"""The run's history: one entry per arrival, with exactly one outcome, folded as it comes into
counts and histograms per kind and per second (so memory does not grow with the run, except
for the checkouts, which a checker needs one by one).

Every arrival is recorded once, dropped ones included (as failed), so for any kind or second
``ok + failed + unknown`` is the number of arrivals. Latency runs from the due time, not from
when the request left: that is what keeps a stalled server's wait in the numbers. The time a
request actually took once started is kept too, in the history file, as ``service_ms``.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import IO

import msgspec

from colony.load.config import LoadConfig
from colony.load.histogram import Histogram
from colony.load.outcomes import Outcome
from colony.load.report import CheckoutRecord, KindSummary, LoadReport, Second
from colony.load.workload import Result


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line of the history file. Times are seconds from the start of the run."""

    index: int
    kind: str
    outcome: Outcome
    due_s: float
    end_s: float
    latency_ms: float | None = None
    service_ms: float | None = None
    status: int | None = None
    error: str | None = None
    idempotency_key: str | None = None
    order_id: str | None = None


class _Tally:
    __slots__ = ("completed", "dropped", "histogram", "outcomes")

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.dropped = 0
        self.completed = 0
        self.histogram = Histogram()

    def add(self, outcome: Outcome, dropped: bool, latency: float | None) -> None:
        self.outcomes[outcome] += 1
        self.dropped += dropped
        if latency is not None:
            self.histogram.record_seconds(latency)

    def summary(self) -> KindSummary:
        return KindSummary(
            arrivals=sum(self.outcomes.values()),
            ok=self.outcomes["ok"],
            failed=self.outcomes["failed"],
            unknown=self.outcomes["unknown"],
            dropped=self.dropped,
            latency=self.histogram.percentiles(),
        )


class Recorder:
    """Takes each arrival's end; ``start`` is the clock reading of second 0."""

    def __init__(self, kinds: list[str], start: float, history: IO[bytes] | None = None) -> None:
        self.start = start
        self.ended = 0
        self._kinds = {kind: _Tally() for kind in kinds}
        self._seconds: dict[int, _Tally] = {}
        self._lag = Histogram()
        self._errors: Counter[str] = Counter()
        self._checkouts: list[CheckoutRecord] = []
        self._history = history
        self._encoder = msgspec.json.Encoder()
        self._last_end = start

    def record(
        self,
        index: int,
        kind: str,
        due: float,
        started: float | None,
        ended: float,
        result: Result,
    ) -> None:
        """Arrival ``index`` of ``kind``, due at ``due``, started at ``started`` (None when
        dropped), ended at ``ended`` (clock readings) with ``result``."""
        self.ended += 1
        self._last_end = max(self._last_end, ended)
        latency = None if started is None else ended - due
        self._kinds[kind].add(result.outcome, result.dropped, latency)
        second = self._seconds.get(math.floor(due - self.start))
        if second is None:
            second = self._seconds[math.floor(due - self.start)] = _Tally()
        second.add(result.outcome, result.dropped, latency)
        finished = self._seconds.setdefault(math.floor(ended - self.start), _Tally())
        finished.completed += 1
        if started is not None:
            self._lag.record_seconds(max(0.0, started - due))
        if result.error:
            self._errors[result.error] += 1
        attempt = result.checkout
        if attempt is not None:
            self._checkouts.append(
                CheckoutRecord(
                    idempotency_key=attempt.idempotency_key,
                    buyer=attempt.buyer,
                    buyer_id=attempt.buyer_id,
                    outcome=result.outcome,
                    order_id=attempt.order_id,
                    status=result.status,
                    latency_ms=round((ended - due) * 1000, 3),
                    due_s=round(due - self.start, 6),
                    posted=attempt.posted,
                    listings=attempt.listings,
                    error=result.error,
                )
            )
        if self._history is not None:
            entry = HistoryEntry(
                index=index,
                kind=kind,
                outcome=result.outcome,
                due_s=round(due - self.start, 6),
                end_s=round(ended - self.start, 6),
                latency_ms=None if latency is None else round(latency * 1000, 3),
                service_ms=None if started is None else round((ended - started) * 1000, 3),
                status=result.status,
                error=result.error,
                idempotency_key=attempt.idempotency_key if attempt else None,
                order_id=attempt.order_id if attempt else None,
            )
            self._history.write(self._encoder.encode(entry) + b"\n")

    def report(
        self,
        config: LoadConfig,
        *,
        started_at: str,
        schedule_s: float,
        last_start_s: float,
        arrivals: int,
        requests: int,
        buyers: int,
        stopped: bool = False,
    ) -> LoadReport:
        everything = _Tally()
        for tally in self._kinds.values():
            everything.outcomes.update(tally.outcomes)
            everything.dropped += tally.dropped
            everything.histogram.add(tally.histogram)
        kinds = {kind: tally.summary() for kind, tally in self._kinds.items()}
        kinds["all"] = everything.summary()
        started = arrivals - everything.dropped
        elapsed = max(self._last_end - self.start, schedule_s, 1e-9)
        schedule_s = max(schedule_s, 1e-9)
        return LoadReport(
            config=config,
            started_at=started_at,
            schedule_s=round(schedule_s, 3),
            elapsed_s=round(elapsed, 3),
            arrivals=arrivals,
            intended_rate=round(arrivals / schedule_s, 3),
            achieved_rate=round(started / max(schedule_s, last_start_s), 3),
            ok_rate=round(everything.outcomes["ok"] / elapsed, 3),
            requests=requests,
            buyers=buyers,
            kinds=kinds,
            errors=dict(self._errors.most_common()),
            lag=self._lag.percentiles(),
            timeline=self._timeline(),
            checkouts=self._checkouts,
            history=config.history,
            stopped=stopped,
        )

    def _timeline(self) -> list[Second]:
        if not self._seconds:
            return []
        seconds = []
        for number in range(max(0, min(self._seconds)), max(self._seconds) + 1):
            tally = self._seconds.get(number) or _Tally()
            histogram = tally.histogram
            seconds.append(
                Second(
                    second=number,
                    sent=sum(tally.outcomes.values()),
                    ok=tally.outcomes["ok"],
                    failed=tally.outcomes["failed"],
                    unknown=tally.outcomes["unknown"],
                    dropped=tally.dropped,
                    completed=tally.completed,
                    p50_ms=histogram.percentile(50) / 1000 if histogram.count else None,
                    p99_ms=histogram.percentile(99) / 1000 if histogram.count else None,
                )
            )
        return seconds
