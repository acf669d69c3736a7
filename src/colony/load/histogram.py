"""Latency percentiles from a histogram with HdrHistogram's layout: three significant digits
over any range, constant memory, and histograms that add up exactly.

Averaging per-second percentiles is wrong, and keeping every sample costs memory in
proportion to the run; a histogram of counts per bucket answers any percentile of any union
of periods. Buckets are log-linear, as in HdrHistogram: below 2,048 µs every microsecond has
its own bucket; above, each power of two is split into 1,024 buckets, so a value is known to
within 1/1,024 (0.1 %) of itself. A percentile is reported as the highest value its bucket
holds (never below what was measured), as HdrHistogram does.

Why not the ``hdrhistogram`` package: it installed here, but it declares pbr and setuptools as
run-time dependencies, has no type information, and records in pure Python anyway; the layout
is forty lines.
"""

from __future__ import annotations

import math

import msgspec

_SUB_BITS = 11  # 2,048 buckets below 2 ms; 1,024 per power of two above
_HALF = 1 << (_SUB_BITS - 1)
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class Percentiles(msgspec.Struct, frozen=True, kw_only=True):
    """A latency distribution in milliseconds."""

    count: int
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    mean: float


class Histogram:
    """Counts of values in microseconds (non-negative integers)."""

    __slots__ = ("_counts", "count", "max", "min", "total")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def record(self, value: int) -> None:
        value = max(0, value)
        key = _bucket(value)
        self._counts[key] = self._counts.get(key, 0) + 1
        if self.count == 0 or value < self.min:
            self.min = value
        self.max = max(self.max, value)
        self.count += 1
        self.total += value

    def record_seconds(self, seconds: float) -> None:
        self.record(round(seconds * 1_000_000))

    def add(self, other: Histogram) -> None:
        """Add ``other``'s counts to these: the histogram of both periods together."""
        for key, n in other._counts.items():
            self._counts[key] = self._counts.get(key, 0) + n
        if other.count:
            self.min = other.min if self.count == 0 else min(self.min, other.min)
            self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    def percentile(self, p: float) -> int:
        """The value (µs) that ``p`` percent of the recorded values do not exceed; 0 if empty."""
        if self.count == 0:
            return 0
        if p >= 100:
            return self.max
        # HdrHistogram's rank: the nearest whole number of values, at least one.
        wanted = max(1, math.floor(p / 100 * self.count + 0.5))
        seen = 0
        for key in sorted(self._counts):
            seen += self._counts[key]
            if seen >= wanted:
                return min(_highest_in(key), self.max)
        return self.max

    def percentiles(self) -> Percentiles:
        """The usual summary, in milliseconds."""
        p50, p90, p99, p999 = (self.percentile(p) / 1000 for p in PERCENTILES)
        return Percentiles(
            count=self.count,
            p50=p50,
            p90=p90,
            p99=p99,
            p999=p999,
            max=self.max / 1000,
            mean=round(self.total / self.count / 1000, 3) if self.count else 0.0,
        )


def _bucket(value: int) -> int:
    # The shift keeps the top _SUB_BITS bits of the value; the key orders like the value.
    shift = max(0, value.bit_length() - _SUB_BITS)
    return (shift << (_SUB_BITS - 1)) + (value >> shift)


def _highest_in(key: int) -> int:
    if key < 2 * _HALF:
        return key
    shift = (key >> (_SUB_BITS - 1)) - 1
    mantissa = key - (shift << (_SUB_BITS - 1))
    return ((mantissa + 1) << shift) - 1
