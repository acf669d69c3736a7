"""Reading a service's public interface: its async methods and their typed parameters.

The HTTP binding uses this to build, once per interface, a parameters struct per method, so
a call that crosses a process is validated and serialized by msgspec, and a call that stays
in the process is never serialized at all.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    signature: inspect.Signature
    params: type[msgspec.Struct]
    returns: Any
    encoder: msgspec.json.Encoder
    params_decoder: msgspec.json.Decoder[Any]
    result_decoder: msgspec.json.Decoder[Any] | None


@cache
def interface_methods(api: type[Any]) -> dict[str, MethodSpec]:
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
            signature=signature,
            params=params,
            returns=returns,
            encoder=msgspec.json.Encoder(),
            params_decoder=msgspec.json.Decoder(params),
            result_decoder=None if returns in (None, type(None)) else msgspec.json.Decoder(returns),
        )
    return methods
