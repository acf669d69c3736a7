"""Reading a service's public interface: its async methods and their typed parameters.

The HTTP binding uses this to build, once per interface, a parameters struct per method, so
a call that crosses a process is validated and serialized by msgspec, and a call that stays
in the process is never serialized at all.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import msgspec

F = TypeVar("F", bound=Callable[..., Any])


def repeatable(method: F) -> F:
    """Mark an interface method as safe to call again with the same arguments (a read, or a
    write the service deduplicates, as by order id): the platform may retry it after a
    failure that leaves its effect unknown. Unmarked methods are sent again only when the
    request never arrived, or when the call carries an Idempotency-Key."""
    # A mark on the function object, read back by interface_methods; F does not declare it.
    method.__colony_repeatable__ = True  # type: ignore[attr-defined]
    return method


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    repeatable: bool
    signature: inspect.Signature
    params: type[msgspec.Struct]
    returns: Any
    encoder: msgspec.json.Encoder
    params_decoder: msgspec.json.Decoder[Any]
    result_decoder: msgspec.json.Decoder[Any] | None


# api is a `type`, not a `type[Any]`: mypy counts the latter as unhashable, unfit for @cache.
@cache
def interface_methods(api: type) -> dict[str, MethodSpec]:
    methods: dict[str, MethodSpec] = {}
    for name, function in inspect.getmembers(api, inspect.iscoroutinefunction):
        if name.startswith("_"):
            continue
        hints = typing.get_type_hints(function)
        signature = inspect.signature(function)
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for param in list(signature.parameters.values())[1:]:
            if param.default is inspect.Parameter.empty:
                fields.append((param.name, hints[param.name]))
            else:
                fields.append((param.name, hints[param.name], param.default))
        params = msgspec.defstruct(
            f"{api.__name__}.{name}.params", fields, kw_only=True, forbid_unknown_fields=True
        )
        returns = hints.get("return", None)
        methods[name] = MethodSpec(
            name=name,
            repeatable=getattr(function, "__colony_repeatable__", False),
            signature=signature,
            params=params,
            returns=returns,
            encoder=msgspec.json.Encoder(),
            params_decoder=msgspec.json.Decoder(params),
            result_decoder=None if returns in (None, type(None)) else msgspec.json.Decoder(returns),
        )
    return methods
