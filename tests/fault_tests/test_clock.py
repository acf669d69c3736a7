"""Clock skew in one process: utc_now and utc_now_iso move together, at once, and back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from colony.platform import clock, faults
from colony.platform.faults import ClockSkew


@pytest.fixture(autouse=True)
def right_clock():
    faults.heal_all()
    yield
    faults.heal_all()


def _iso_seconds_ahead() -> float:
    return (datetime.fromisoformat(clock.utc_now_iso()) - datetime.now(UTC)).total_seconds()


def test_unskewed_the_clock_is_right():
    assert abs((clock.utc_now() - datetime.now(UTC)).total_seconds()) < 0.1
    assert abs(_iso_seconds_ahead()) < 0.1


def test_skew_moves_both_clocks_and_the_cached_second():
    clock.utc_now_iso()  # fills the once-a-second cache before the skew
    faults.install(ClockSkew(seconds=30))
    assert 29.9 < (clock.utc_now() - datetime.now(UTC)).total_seconds() < 30.1
    assert 29.9 < _iso_seconds_ahead() < 30.1
    assert clock.skew_seconds() == 30
    faults.install(ClockSkew(seconds=-90.5))
    assert -90.6 < _iso_seconds_ahead() < -90.4
    assert -90.6 < (clock.utc_now() - datetime.now(UTC)).total_seconds() < -90.4
    faults.heal_all()
    assert abs(_iso_seconds_ahead()) < 0.1
    assert clock.skew_seconds() == 0


def test_iso_format_is_unchanged_under_skew():
    faults.install(ClockSkew(seconds=0.25))
    stamp = clock.utc_now_iso()
    assert stamp.endswith("+00:00") and len(stamp) == len("2025-01-01T00:00:00.000000+00:00")
    assert datetime.fromisoformat(stamp).tzinfo is not None
