"""The spec grammar: one line names a fault, ``FAMILY:ARGUMENTS``.

Parsing (:func:`parse`) checks the form and the values and needs no running system; building
(:meth:`Spec.build`) checks the names against the running topology and makes the
:class:`~colony.faults.base.Fault`. Both raise :class:`FaultSpecError` with a message meant
for the person who typed the spec.

Durations carry their unit (``200ms``, ``1.5s``, ``2m``); shares are ``0.3`` or ``30%``. A
TARGET is a service (every one of its processes) or one process (``orders-2``); a link goes
from a caller (a service or one of its processes) to a callee service or ``payment-provider``,
``smtp``, ``webhooks``.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from colony.distributed.nats_server import NATS
from colony.faults.base import Fault, FaultSpecError
from colony.faults.topology import EXTERNAL, GATEWAY, RunningTopology


@dataclass(frozen=True)
class Family:
    name: str
    grammar: str
    examples: tuple[str, ...]
    summary: str


FAMILIES = (
    Family(
        "kill",
        "kill:TARGET",
        ("kill:payments", "kill:orders-1"),
        "SIGKILL; healed when the supervisor has started it again and it is ready",
    ),
    Family(
        "pause",
        "pause:TARGET",
        ("pause:orders-1",),
        "SIGSTOP until healed (SIGCONT): connections open, nothing answered",
    ),
    Family(
        "latency",
        "latency:CALLER->CALLEE:DELAY[~JITTER][:SHARE]",
        ("latency:orders->payments:200ms", "latency:gateway->catalog:50ms~20ms:0.5"),
        "calls on one link wait before they are sent",
    ),
    Family(
        "errors",
        "errors:CALLER->CALLEE[:reset|unavailable|drop|lost][:SHARE]",
        ("errors:gateway->orders:reset:0.5", "errors:payments->payment-provider:lost:0.2"),
        "calls on one link fail: connection reset, 503, dropped (hang until the caller's"
        " timeout), or made but the answer lost",
    ),
    Family(
        "partition",
        "partition:SERVICE|SERVICE",
        ("partition:orders|payments",),
        "calls between two services, both ways, are dropped",
    ),
    Family(
        "broker",
        "broker:kill|pause",
        ("broker:kill", "broker:pause"),
        "the topology's nats-server killed (the supervisor restarts it) or paused",
    ),
    Family(
        "database",
        "database:SERVICE",
        ("database:payments",),
        "the service's database refuses it: SQLite file locked, PostgreSQL connections"
        " terminated; lasts while the injecting command runs",
    ),
    Family(
        "duplicate",
        "duplicate:SERVICE[:SHARE]",
        ("duplicate:notifications",),
        "each event the service consumes is delivered twice",
    ),
    Family(
        "reorder",
        "reorder:SERVICE[:WINDOW]",
        ("reorder:delivery", "reorder:notifications:500ms"),
        "events the service consumes are held for a window (200ms) and delivered shuffled",
    ),
    Family(
        "slow-consumer",
        "slow-consumer:SERVICE:DELAY",
        ("slow-consumer:notifications:500ms",),
        "the service waits before applying each event it consumes",
    ),
    Family(
        "provider",
        "provider:outage | provider:timeouts:SHARE | provider:errors:SHARE"
        " | provider:latency:P50[:P99]",
        ("provider:outage", "provider:timeouts:0.3", "provider:errors:0.5"),
        "the payment provider down, timing out, failing or slow",
    ),
    Family(
        "skew",
        "skew:TARGET:±DURATION",
        ("skew:payments:+30s", "skew:orders-2:-5m"),
        "the process's clock runs ahead (+) or behind (-)",
    ),
)
_FAMILIES = {family.name: family for family in FAMILIES}

_DURATION = re.compile(r"^([+-]?)(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
ERROR_KINDS = {
    "reset": "reset",
    "unavailable": "unavailable",
    "503": "unavailable",
    "5xx": "unavailable",
    "drop": "drop",
    "lost": "lose-response",
}


def parse_duration(text: str, what: str = "a duration", signed: bool = False) -> float:
    """``200ms`` → 0.2, ``1.5s`` → 1.5, ``2m`` → 120 (``+``/``-`` only when ``signed``)."""
    match = _DURATION.match(text.strip())
    if match is None or (match[1] and not signed):
        sign = "a sign (+ or -), " if signed else ""
        raise FaultSpecError(
            f"{what} is {sign}a number and a unit (ms, s, m, h), like 200ms or 1.5s; got {text!r}"
        )
    seconds = float(match[2]) * _UNITS[match[3]]
    return -seconds if match[1] == "-" else seconds


def parse_share(text: str, what: str = "the share") -> float:
    """``0.3`` or ``30%`` → 0.3, between 0 and 1."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise FaultSpecError(f"{what} is between 0 and 1 (or 0% and 100%); got {text!r}")
    return value


def _name(text: str, what: str) -> str:
    if not _NAME.match(text):
        raise FaultSpecError(f"{what} is a name like orders or orders-2; got {text!r}")
    return text


def _link(text: str) -> tuple[str, str]:
    caller, arrow, callee = text.partition("->")
    if not arrow:
        raise FaultSpecError(f"a link is CALLER->CALLEE, like orders->payments; got {text!r}")
    return _name(caller, "the caller"), _name(callee, "the callee")


def _arguments(family: Family, text: str, least: int, most: int) -> list[str]:
    parts = text.split(":") if text else []
    if not least <= len(parts) <= most:
        raise FaultSpecError(f"{family.name} is {family.grammar}; e.g. {family.examples[0]}")
    return parts


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def fault_id(*parts: str) -> str:
    """The id a table fault is installed under on every process: from what it is and where,
    not how strong, so injecting it again replaces it and a heal by spec finds it."""
    return ".".join(re.sub(r"[^A-Za-z0-9_~-]+", "_", part) for part in parts)


# --- the specs ---------------------------------------------------------------------------


class Spec(abc.ABC):
    text: str

    @abc.abstractmethod
    def build(self, topology: RunningTopology) -> Fault: ...


@dataclass(frozen=True)
class ProcessSpec(Spec):
    text: str
    action: str  # kill, pause
    target: str

    def build(self, topology: RunningTopology) -> Fault:
        from colony.faults.signals import ProcessKill, ProcessPause

        names = topology.targets(self.target)
        which = ", ".join(names)
        broker = names == [NATS]
        if self.action == "kill":
            what = f"kill (SIGKILL) {which}; the supervisor starts each again"
            return ProcessKill(self.text, what, topology, names, then_all_ready=broker)
        what = f"pause (SIGSTOP) {which} until healed"
        return ProcessPause(self.text, what, topology, names, then_all_ready=broker)


@dataclass(frozen=True)
class BrokerSpec(Spec):
    text: str
    action: str

    def build(self, topology: RunningTopology) -> Fault:
        if not topology.has_broker:
            raise FaultSpecError(
                "the broker is not one of this topology's processes (COLONY_NATS_URL named"
                " one of its own): it cannot be killed or paused from here"
            )
        return ProcessSpec(self.text, self.action, NATS).build(topology)


@dataclass(frozen=True)
class LinkSpec(Spec):
    text: str
    caller: str
    callee: str
    fault: dict[str, Any]  # the in-process fault's JSON, without dependency and id
    what: str

    def build(self, topology: RunningTopology) -> Fault:
        from colony.faults.table import TableFault

        callers = topology.targets(self.caller)
        if callers == [NATS]:
            raise FaultSpecError("the broker makes no calls; fault the link of a service")
        callee = self.callee
        if callee not in EXTERNAL:
            callee = topology.service(callee, "the callee")
        key = fault_id(str(self.fault["kind"]), self.caller, callee)
        body = {**self.fault, "dependency": callee, "id": key}
        description = f"{self.what} from {self.caller} to {callee}"
        return TableFault(self.text, description, topology, [(n, body) for n in callers])


@dataclass(frozen=True)
class PartitionSpec(Spec):
    text: str
    sides: tuple[str, str]

    def build(self, topology: RunningTopology) -> Fault:
        from colony.faults.table import TableFault

        one, other = (topology.service(side, "a side of a partition") for side in self.sides)
        if one == other:
            raise FaultSpecError(f"a partition is between two services; got {one} twice")
        key = fault_id("partition", *sorted((one, other)))
        installs = [
            (name, {"kind": "drop", "dependency": callee, "id": key})
            for caller, callee in ((one, other), (other, one))
            for name in topology.services[caller]
        ]
        description = f"calls between {one} and {other} dropped, both ways"
        return TableFault(self.text, description, topology, installs)


@dataclass(frozen=True)
class ConsumerSpec(Spec):
    text: str
    service: str
    fault: dict[str, Any]  # without consumer and id
    what: str  # with {service} where the service's name goes

    def build(self, topology: RunningTopology) -> Fault:
        from colony.faults.table import TableFault

        service = topology.service(self.service)
        if service == GATEWAY:
            raise FaultSpecError("the gateway consumes no events; name a service that does")
        body = {**self.fault, "consumer": service, "id": fault_id(str(self.fault["kind"]), service)}
        installs = [(name, body) for name in topology.services[service]]
        return TableFault(self.text, self.what.format(service=service), topology, installs)


@dataclass(frozen=True)
class SkewSpec(Spec):
    text: str
    target: str
    seconds: float

    def build(self, topology: RunningTopology) -> Fault:
        from colony.faults.table import TableFault

        names = topology.targets(self.target)
        if names == [NATS]:
            raise FaultSpecError("the broker's clock is not Colony's to skew")
        # One id for every skew: a process has one clock, and a new skew replaces the old.
        body = {"kind": "clock-skew", "seconds": self.seconds, "id": "clock-skew"}
        direction = "ahead" if self.seconds >= 0 else "behind"
        description = f"the clock of {', '.join(names)} {abs(self.seconds):g} s {direction}"
        return TableFault(self.text, description, topology, [(n, body) for n in names])


@dataclass(frozen=True)
class DatabaseSpec(Spec):
    text: str
    service: str

    def build(self, topology: RunningTopology) -> Fault:
        from colony.faults.database import DatabaseOutage

        service = topology.service(self.service)
        if service == GATEWAY:
            raise FaultSpecError("the gateway has no database")
        what = f"the database of {service} out (while the injecting process holds it)"
        return DatabaseOutage(self.text, what, topology, service)


@dataclass(frozen=True)
class ProviderSpec(Spec):
    text: str
    changes: dict[str, Any]
    what: str

    def build(self, topology: RunningTopology) -> Fault:
        from colony.faults.provider import ProviderFault

        return ProviderFault(self.text, self.what, topology, self.changes)


# --- parsing -----------------------------------------------------------------------------


def parse(text: str) -> Spec:
    """A spec from its text; FaultSpecError saying what is wrong with it."""
    text = text.strip()
    name, _, rest = text.partition(":")
    family = _FAMILIES.get(name)
    if family is None:
        raise FaultSpecError(
            f"no fault family {name!r}; the families: {', '.join(_FAMILIES)}"
            " (`colony faults list` shows them with examples)"
        )
    return _PARSERS[family.name](family, text, rest)


def _process(family: Family, text: str, rest: str) -> Spec:
    [target] = _arguments(family, rest, 1, 1)
    return ProcessSpec(text, family.name, _name(target, "the target"))


def _latency(family: Family, text: str, rest: str) -> Spec:
    link, *values = _arguments(family, rest, 2, 3)
    caller, callee = _link(link)
    delay, _, jitter = values[0].partition("~")
    delay_s = parse_duration(delay, "the delay")
    jitter_s = parse_duration(jitter, "the jitter") if jitter else 0.0
    share = parse_share(values[1]) if len(values) > 1 else 1.0
    fault = {
        "kind": "latency",
        "delay_ms": _ms(delay_s),
        "jitter_ms": _ms(jitter_s),
        "probability": share,
    }
    what = f"{_ms(delay_s):g} ms latency" + (f" (±{_ms(jitter_s):g} ms)" if jitter else "")
    return LinkSpec(text, caller, callee, fault, what + _of_calls(share))


def _errors(family: Family, text: str, rest: str) -> Spec:
    link, *values = _arguments(family, rest, 1, 3)
    caller, callee = _link(link)
    kind, share = "unavailable", 1.0
    if values and values[0] in ERROR_KINDS:
        kind = ERROR_KINDS[values.pop(0)]
    if len(values) > 1:
        raise FaultSpecError(
            f"the kind of error is one of {', '.join(ERROR_KINDS)}; got {values[0]!r}"
        )
    if values:
        try:
            share = parse_share(values[0])
        except FaultSpecError:
            raise FaultSpecError(
                f"after the link come the kind of error ({', '.join(ERROR_KINDS)}) and/or"
                f" the share of calls (0.5 or 50%); got {values[0]!r}"
            ) from None
    what = {
        "reset": "connections reset",
        "unavailable": "503 answers",
        "drop": "requests dropped",
        "lose-response": "answers lost",
    }[kind]
    fault = {"kind": kind, "probability": share}
    return LinkSpec(text, caller, callee, fault, what + _of_calls(share))


def _partition(family: Family, text: str, rest: str) -> Spec:
    [sides] = _arguments(family, rest, 1, 1)
    one, bar, other = sides.partition("|")
    if not bar:
        raise FaultSpecError(f"partition is {family.grammar}; e.g. {family.examples[0]}")
    return PartitionSpec(text, (_name(one, "a side"), _name(other, "a side")))


def _broker(family: Family, text: str, rest: str) -> Spec:
    [action] = _arguments(family, rest, 1, 1)
    if action not in ("kill", "pause"):
        raise FaultSpecError(f"broker is broker:kill or broker:pause; got {text!r}")
    return BrokerSpec(text, action)


def _database(family: Family, text: str, rest: str) -> Spec:
    [service] = _arguments(family, rest, 1, 1)
    return DatabaseSpec(text, _name(service, "the service"))


def _duplicate(family: Family, text: str, rest: str) -> Spec:
    service, *values = _arguments(family, rest, 1, 2)
    share = parse_share(values[0]) if values else 1.0
    fault = {"kind": "duplicate", "probability": share}
    which = "every event" if share == 1.0 else f"{share:.0%} of the events"
    what = which + " to {service} delivered twice"
    return ConsumerSpec(text, _name(service, "the service"), fault, what)


def _reorder(family: Family, text: str, rest: str) -> Spec:
    service, *values = _arguments(family, rest, 1, 2)
    window = parse_duration(values[0], "the window") if values else 0.2
    if window <= 0:
        raise FaultSpecError(f"the window is longer than 0; got {values[0]!r}")
    fault = {"kind": "reorder", "window_ms": _ms(window)}
    what = f"events to {{service}} held {_ms(window):g} ms and delivered shuffled"
    return ConsumerSpec(text, _name(service, "the service"), fault, what)


def _slow_consumer(family: Family, text: str, rest: str) -> Spec:
    service, delay = _arguments(family, rest, 2, 2)
    seconds = parse_duration(delay, "the delay")
    fault = {"kind": "slow-consumer", "delay_ms": _ms(seconds)}
    what = f"{{service}} waits {_ms(seconds):g} ms before applying each event"
    return ConsumerSpec(text, _name(service, "the service"), fault, what)


def _provider(family: Family, text: str, rest: str) -> Spec:
    mode, *values = _arguments(family, rest, 1, 3)
    if mode == "outage" and not values:
        return ProviderSpec(text, {"outage": True}, "the payment provider down (503s)")
    if mode in ("timeouts", "errors") and len(values) == 1:
        share = parse_share(values[0])
        field = "timeout_rate" if mode == "timeouts" else "error_rate"
        noun = "time out" if mode == "timeouts" else "fail (500/503)"
        return ProviderSpec(
            text, {field: share}, f"{share:.0%} of the payment provider's answers {noun}"
        )
    if mode == "latency" and 1 <= len(values) <= 2:
        p50 = parse_duration(values[0], "the median latency")
        p99 = parse_duration(values[1], "the 99th percentile") if len(values) == 2 else 2 * p50
        if p50 <= 0 or p99 < p50:
            raise FaultSpecError("provider latency is P50[:P99], with 0 < P50 ≤ P99")
        latency = {"p50_ms": _ms(p50), "p99_ms": _ms(p99)}
        what = f"the payment provider slow (p50 {_ms(p50):g} ms, p99 {_ms(p99):g} ms)"
        return ProviderSpec(text, {"latency": latency}, what)
    raise FaultSpecError(f"provider is {family.grammar}; got {text!r}")


def _skew(family: Family, text: str, rest: str) -> Spec:
    target, offset = _arguments(family, rest, 2, 2)
    seconds = parse_duration(offset, "the skew", signed=True)
    if abs(seconds) > 365 * 24 * 3600:
        raise FaultSpecError(f"a skew of more than a year is not a skew; got {offset!r}")
    return SkewSpec(text, _name(target, "the target"), seconds)


def _of_calls(share: float) -> str:
    return " on every call" if share == 1.0 else f" on {share:.0%} of calls"


_PARSERS: dict[str, Callable[[Family, str, str], Spec]] = {
    "kill": _process,
    "pause": _process,
    "latency": _latency,
    "errors": _errors,
    "partition": _partition,
    "broker": _broker,
    "database": _database,
    "duplicate": _duplicate,
    "reorder": _reorder,
    "slow-consumer": _slow_consumer,
    "provider": _provider,
    "skew": _skew,
}
