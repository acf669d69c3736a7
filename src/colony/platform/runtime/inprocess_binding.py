"""The in-process binding: a service called in the caller's own process, without serializing
anything, but behind the same list of allowed callers as over HTTP, so a caller refused by a
service in another process is refused here too, and tests find the same refusals in either
topology. Nothing is signed: no boundary is crossed, and the caller's identity is the one the
runtime handed the client to."""

from __future__ import annotations

import types
from collections.abc import Callable
from time import perf_counter
from typing import Any

from colony.platform.observability import tracing
from colony.platform.observability.recorder import RECORDING
from colony.platform.observability.rpc_metrics import CallTimers
from colony.platform.runtime.interface import MethodSpec, interface_methods


def guarded(api: type, implementation: Any, caller: str, service: str | None = None) -> Any:
    """``implementation``'s interface methods, each checking ``caller`` (and the actor it is
    given) against the method's list before calling through, and timed as the call served
    by ``service`` (by default the interface's)."""
    methods = interface_methods(api)
    service = service or getattr(api, "service_name", "") or api.__name__
    namespace: dict[str, Any] = {
        name: _checked(spec, getattr(implementation, name), caller, service)
        for name, spec in methods.items()
    }
    namespace["__repr__"] = lambda self: f"<{api.__name__} in-process, called as {caller}>"
    cls = types.new_class(f"InProcess{api.__name__}", (), {}, lambda ns: ns.update(namespace))
    return cls()


def _checked(spec: MethodSpec, target: Callable[..., Any], caller: str, service: str) -> Any:
    # Timed once, on the serving side: caller and callee share the process, so one figure
    # is both sides' (rpc_server_call_duration_seconds, with the caller as a label).
    timers = CallTimers(service, spec.name, caller)
    name = f"{service}/{spec.name}"
    attributes = {"rpc.system": "colony", "rpc.method": spec.name, "rpc.caller": caller}
    ok = timers.ok

    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        spec.authorize(caller, spec.actor_of(args, kwargs))
        started = perf_counter()
        try:
            if RECORDING.get() is not None:  # tracing.recording(), without a call per call
                # An internal span, and only inside a sampled trace: no boundary is crossed.
                with tracing.child(name, attributes=attributes, service=service):
                    result = await target(*args, **kwargs)
            else:
                result = await target(*args, **kwargs)
        except BaseException as exc:
            timers.failed(exc, started)
            raise
        ok.observe(perf_counter() - started)
        return result

    method.__name__ = spec.name
    return method
