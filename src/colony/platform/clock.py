"""Time as the services see it: aware UTC timestamps, stored as ISO-8601 text.

A fault injector may skew this process's clock (:func:`set_skew`): every timestamp read here
is then off by that much, as on a machine whose clock drifted. Unskewed, it costs an addition
of zero.
"""

import time
from datetime import UTC, datetime, timedelta

_second: list[tuple[int, str]] = [(-1, "")]
_skew_micros = 0
_skew = timedelta(0)


def set_skew(seconds: float) -> None:
    """Move this process's clock by ``seconds`` (negative: behind); 0 puts it right."""
    global _skew, _skew_micros
    _skew_micros = round(seconds * 1_000_000)
    _skew = timedelta(microseconds=_skew_micros)


def skew_seconds() -> float:
    return _skew_micros / 1_000_000


def utc_now() -> datetime:
    now = datetime.now(UTC)
    return now + _skew if _skew_micros else now


def utc_now_iso() -> str:
    """``datetime.now(UTC).isoformat(timespec="microseconds")``, in a third of the time: the
    date and time to the second are formatted once a second. A checkout stamps ~90 rows."""
    # The cache is keyed on the skewed second, so a skew set or lifted shows at once.
    micros = time.time_ns() // 1000 + _skew_micros
    second, fraction = divmod(micros, 1_000_000)
    cached, prefix = _second[0]
    if second != cached:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second[0] = (second, prefix)
    return f"{prefix}.{fraction:06d}+00:00"
