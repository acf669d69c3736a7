"""What a load run is asked to do, checked when it is made: a nonsense setting (a negative
rate, a zero duration, an unknown kind of request, a URL that is not one) is refused with a
message that names it, before anything is sent. The CLI turns that message into exit code 2.
"""

from __future__ import annotations

import math
import urllib.parse
from typing import Any

import msgspec

from colony.load.pacing import Step, check_steps, constant
from colony.load.workload import DEFAULT_MIX, KINDS

DEFAULT_URL = "http://127.0.0.1:8080"


class InvalidLoadConfig(ValueError):
    """A setting that cannot be; ``field`` names it (``rate``, ``mix``…)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class LoadConfig(msgspec.Struct, frozen=True, kw_only=True):
    url: str = DEFAULT_URL
    """The marketplace's base URL; requests go to ``url + /api/v1/...``."""
    rate: float = 20.0
    """Arrivals a second, when ``steps`` is empty."""
    duration: float = 10.0
    """Seconds of arrivals at ``rate``, when ``steps`` is empty."""
    steps: tuple[Step, ...] = ()
    """A stepped schedule instead of ``rate`` for ``duration``."""
    mix: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_MIX))
    """Relative weight of each kind of arrival; kinds left out are not sent."""
    timeout: float = 5.0
    """Seconds a request may take before its outcome is recorded as unknown."""
    max_in_flight: int = 1000
    """Arrivals under way at once; one more is recorded as failed (dropped), not delayed."""
    connections: int = 200
    """Keep-alive connections to the marketplace at most."""
    buyers: int = 0
    """Buyer accounts to register (or reuse) besides the five demo buyers."""
    seed: int = 1
    """Same seed, same marketplace: the same kinds, words and listings in the same order."""
    history: str | None = None
    """A file to write every arrival's entry to, one JSON object a line."""

    def __post_init__(self) -> None:
        _check_url(self.url)
        if self.steps:
            try:
                check_steps(self.steps)
            except ValueError as exc:
                raise InvalidLoadConfig("steps", str(exc)) from None
        else:
            _positive("rate", self.rate)
            _positive("duration", self.duration)
        _check_mix(self.mix)
        _positive("timeout", self.timeout)
        _at_least("max_in_flight", self.max_in_flight, 1)
        _at_least("connections", self.connections, 1)
        _at_least("buyers", self.buyers, 0)

    def plan(self) -> tuple[Step, ...]:
        """The arrival schedule: the steps, or one step of ``rate`` for ``duration``."""
        return self.steps or constant(self.rate, self.duration)


def parse_mix(text: str) -> dict[str, float]:
    """``"browse=30,search=30,checkout=10"`` as weights; InvalidLoadConfig otherwise."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        kind, equals, weight_text = (p.strip() for p in part.partition("="))
        if not equals or not kind:
            raise InvalidLoadConfig("mix", f"{part.strip()!r} is not KIND=WEIGHT (e.g. search=30)")
        if kind in mix:
            raise InvalidLoadConfig("mix", f"{kind} is given twice")
        try:
            mix[kind] = float(weight_text)
        except ValueError:
            message = f"weight {weight_text!r} of {kind} is not a number"
            raise InvalidLoadConfig("mix", message) from None
    _check_mix(mix)
    return mix


def _check_mix(mix: dict[str, float]) -> None:
    unknown = sorted(set(mix) - set(KINDS))
    if unknown:
        raise InvalidLoadConfig(
            "mix", f"unknown kind {', '.join(unknown)}; the kinds are {', '.join(KINDS)}"
        )
    for kind, weight in mix.items():
        if not math.isfinite(weight) or weight < 0:
            raise InvalidLoadConfig("mix", f"weight {weight:g} of {kind} must be a number >= 0")
    if not any(weight > 0 for weight in mix.values()):
        raise InvalidLoadConfig("mix", "at least one kind needs a weight above 0")


def _check_url(url: str) -> None:
    problem = _url_problem(url)
    if problem:
        raise InvalidLoadConfig("url", f"{url!r} {problem}")


def _url_problem(url: str) -> str | None:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "has no host"
    if port == 0:
        return "has port 0"
    if parts.query or parts.fragment:
        return "must be a base URL, without ?query or #fragment"
    if any(c.isspace() for c in url):
        return "contains white space"
    return None


def _positive(field: str, value: Any) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidLoadConfig(field, f"{value!r} must be a number above 0")


def _at_least(field: str, value: Any, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise InvalidLoadConfig(field, f"{value!r} must be a whole number >= {least}")
