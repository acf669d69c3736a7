"""The in-process binding: a service called in the caller's own process, without serializing
anything, but behind the same list of allowed callers as over HTTP, so a caller refused by a
service in another process is refused here too, and tests find the same refusals in either
topology. Nothing is signed: no boundary is crossed, and the caller's identity is the one the
runtime handed the client to."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from colony.platform.runtime.interface import MethodSpec, interface_methods


def guarded(api: type, implementation: Any, caller: str) -> Any:
    """``implementation``'s interface methods, each checking ``caller`` (and the actor it is
    given) against the method's list before calling through."""
    methods = interface_methods(api)
    namespace: dict[str, Any] = {
        name: _checked(spec, getattr(implementation, name), caller)
        for name, spec in methods.items()
    }
    namespace["__repr__"] = lambda self: f"<{api.__name__} in-process, called as {caller}>"
    cls = types.new_class(f"InProcess{api.__name__}", (), {}, lambda ns: ns.update(namespace))
    return cls()


def _checked(spec: MethodSpec, target: Callable[..., Any], caller: str) -> Any:
    # A plain function returning the implementation's coroutine, not a coroutine of its own:
    # every in-process call passes here, and a second coroutine frame would cost more than
    # the check.
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        spec.authorize(caller, spec.actor_of(args, kwargs))
        return target(*args, **kwargs)

    method.__name__ = spec.name
    return method
