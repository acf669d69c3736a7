"""Percentiles from the log-linear histogram: exact below 2 ms, within 0.1 % above."""

from __future__ import annotations

import random

import pytest

from colony.load.histogram import Histogram


def filled(values: list[int]) -> Histogram:
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    return histogram


def exact(values: list[int], p: float) -> int:
    """The nearest-rank percentile HdrHistogram reports, from the sorted values."""
    ordered = sorted(values)
    rank = max(1, int(p / 100 * len(ordered) + 0.5))
    return ordered[rank - 1]


def test_small_values_are_exact():
    histogram = filled(list(range(1, 101)))
    assert histogram.percentile(50) == 50
    assert histogram.percentile(99) == 99
    assert histogram.percentile(100) == histogram.max == 100
    assert histogram.min == 1 and histogram.count == 100


@pytest.mark.parametrize("p", [50.0, 90.0, 99.0, 99.9, 99.99])
def test_large_values_are_within_a_thousandth(p):
    rng = random.Random(7)
    values = [int(rng.lognormvariate(10, 1.5)) for _ in range(20_000)]  # µs, up to minutes
    histogram = filled(values)
    expected = exact(values, p)
    reported = histogram.percentile(p)
    assert expected <= reported <= expected * 1.001 + 1


def test_a_percentile_never_exceeds_the_maximum():
    histogram = filled([1_000_003])
    assert histogram.percentile(50) == histogram.percentile(99.9) == 1_000_003


def test_adding_histograms_is_the_histogram_of_both():
    rng = random.Random(3)
    first = [rng.randrange(0, 5_000_000) for _ in range(3000)]
    second = [rng.randrange(0, 50_000) for _ in range(1000)]
    combined = filled(first)
    combined.add(filled(second))
    together = filled(first + second)
    for p in (1, 25, 50, 75, 90, 99, 99.9, 100):
        assert combined.percentile(p) == together.percentile(p)
    assert (combined.count, combined.min, combined.max, combined.total) == (
        together.count,
        together.min,
        together.max,
        together.total,
    )


def test_an_empty_histogram_reports_zeros():
    summary = Histogram().percentiles()
    assert summary.count == 0 and summary.p99 == 0 and summary.max == 0 and summary.mean == 0


def test_the_summary_is_in_milliseconds():
    histogram = Histogram()
    for seconds in (0.001, 0.002, 0.003, 0.004, 1.5):
        histogram.record_seconds(seconds)
    summary = histogram.percentiles()
    assert summary.p50 == pytest.approx(3.0, rel=0.001)
    assert summary.max == 1500.0
    assert summary.p90 == pytest.approx(1500.0, rel=0.001)
    assert summary.mean == pytest.approx(302.0)
