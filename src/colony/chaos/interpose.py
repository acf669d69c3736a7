"""Interposers: what stands between a caller and the service it calls, to count or break calls.

The runtime hands every client through ``interpose(service, client)`` (see
:class:`colony.platform.runtime.Runtime`), so a proxy installed there sees every call one
service makes to another, and every call the gateway makes, in any binding. Only the methods
of the callee's public interface are calls; any other attribute passes straight through (in
one process the client *is* the service object, with its ``idle``, ``stop`` and the rest).

A call is named by its **site**: who called (the service whose code made the call, read off
the stack), which service and method, and the how-manieth such call of the run it is. A run
that does the same work makes the same calls in the same order, so a site recorded in a clean
run names the same call in a rerun, and a fault can be aimed at it (the Filibuster approach:
CMU, SoCC '21).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

from colony.platform.errors import ServiceUnavailable
from colony.platform.runtime.interface import interface_methods

FaultKind = Literal["unavailable", "timeout-before", "timeout-after", "duplicate"]
FAULT_KINDS: tuple[FaultKind, ...] = ("unavailable", "timeout-before", "timeout-after", "duplicate")
"""What can go wrong with one call between services:

- ``unavailable``: refused before the callee saw it (no effect);
- ``timeout-before``: the caller gave up before the callee acted (no effect, but the caller
  cannot know that);
- ``timeout-after``: the callee acted, the caller never heard (the effect without the answer);
- ``duplicate``: the call arrived twice (a retry whose first attempt did get through)."""

_PASS_THROUGH_MODULES = ("colony.platform.", "colony.chaos.")


@dataclass(frozen=True, order=True)
class Site:
    """One call between services in a run: ``occurrence`` counts from 1 among the calls with
    the same caller, callee and method."""

    caller: str
    callee: str
    method: str
    occurrence: int

    def __str__(self) -> str:
        return f"{self.caller}->{self.callee}.{self.method}#{self.occurrence}"


@dataclass(frozen=True, order=True)
class Fault:
    site: Site
    kind: FaultKind

    def __str__(self) -> str:
        return f"{self.kind} at {self.site}"


Call = Callable[[], Awaitable[Any]]


def caller_of(frame: FrameType | None) -> str:
    """The service whose code is running in ``frame`` or below it: the first module on the
    stack outside the platform and this package, named by its service package (``orders``
    for ``colony.services.orders.sagas``), else by its last dotted part (``verify``)."""
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith("colony.services."):
            return module.split(".")[2]
        if not module.startswith(_PASS_THROUGH_MODULES):
            return module.rsplit(".", 1)[-1] or "?"
        frame = frame.f_back
    return "?"


class Interposer:
    """Counts the calls through every client it wraps; ``invoke`` decides what a call does.

    Only while ``armed``: calls made to set a scenario up, or to check it afterwards, pass
    through uncounted, so the sites are those of the part under test."""

    def __init__(self, apis: Mapping[str, Any] | None = None) -> None:
        if apis is None:
            from colony.composition import service_definitions

            apis = {d.name: d.api for d in service_definitions()}
        self._methods = {name: frozenset(interface_methods(api)) for name, api in apis.items()}
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self.armed = False

    def __call__(self, service: str, client: Any) -> Any:
        """The runtime's ``interpose`` hook."""
        return _Proxy(client, service, self._methods.get(service, frozenset()), self)

    def site(self, caller: str, callee: str, method: str) -> Site:
        key = (caller, callee, method)
        self._counts[key] += 1
        return Site(caller, callee, method, self._counts[key])

    async def invoke(self, site: Site, call: Call) -> Any:
        """Make the call (a subclass may break it instead)."""
        return await call()


class _Proxy:
    """A client with every interface method routed through the interposer."""

    __slots__ = ("_interposer", "_methods", "_service", "_target")

    def __init__(
        self, target: Any, service: str, methods: frozenset[str], interposer: Interposer
    ) -> None:
        self._target = target
        self._service = service
        self._methods = methods
        self._interposer = interposer

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name not in self._methods:
            return attribute
        interposer, service = self._interposer, self._service

        def call(*args: Any, **kwargs: Any) -> Awaitable[Any]:
            if not interposer.armed:
                return attribute(*args, **kwargs)  # type: ignore[no-any-return]
            # Read here, not in the coroutine: a call handed to a task is still its caller's.
            site = interposer.site(caller_of(sys._getframe(1)), service, name)
            return interposer.invoke(site, lambda: attribute(*args, **kwargs))

        return call

    def __repr__(self) -> str:
        return f"<interposed {self._service}: {self._target!r}>"


class RecordingInterposer(Interposer):
    """Records every site of a run, in the order the calls were made."""

    def __init__(self, apis: Mapping[str, Any] | None = None) -> None:
        super().__init__(apis)
        self.sites: list[Site] = []

    async def invoke(self, site: Site, call: Call) -> Any:
        self.sites.append(site)
        return await call()


class FaultInterposer(Interposer):
    """Breaks the calls at the given sites, each in its way; every other call goes through.
    ``injected`` lists the faults in the order they fired (a site a run never reaches fires
    nothing)."""

    def __init__(self, faults: Iterable[Fault], apis: Mapping[str, Any] | None = None) -> None:
        super().__init__(apis)
        self.faults = {fault.site: fault for fault in faults}
        self.injected: list[Fault] = []

    async def invoke(self, site: Site, call: Call) -> Any:
        fault = self.faults.get(site)
        if fault is None:
            return await call()
        self.injected.append(fault)
        return await inject(fault.kind, site, call)


async def inject(kind: FaultKind, site: Site, call: Call) -> Any:
    """Make ``call`` fail as ``kind`` says. The errors are those the runtime's HTTP binding
    raises (a refused connection names its URL), so a caller that lets one through to a
    person shows it."""
    if kind == "unavailable":
        raise ServiceUnavailable(
            f"http://{site.callee}.colony.invalid/rpc/{site.method}:"
            " ClientConnectorError: Cannot connect (a fault injected by the sweep)"
        )
    if kind == "timeout-before":
        raise TimeoutError
    if kind == "timeout-after":
        await call()
        raise TimeoutError
    if kind == "duplicate":
        await call()
        return await call()
    raise ValueError(f"unknown fault kind {kind!r}")
