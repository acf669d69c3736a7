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

from colony.platform.errors import Forbidden
from colony.platform.security import Actor

F = TypeVar("F", bound=Callable[..., Any])


def repeatable(method: F) -> F:
    """Mark an interface method as safe to call again with the same arguments (a read, or a
    write the service deduplicates, as by order id): the platform may retry it after a
    failure that leaves its effect unknown. Unmarked methods are sent again only when the
    request never arrived, or when the call carries an Idempotency-Key."""
    # A mark on the function object, read back by interface_methods; F does not declare it.
    method.__colony_repeatable__ = True  # type: ignore[attr-defined]
    return method


def callers(*identities: str, for_users: tuple[str, ...] = ("gateway",)) -> Callable[[F], F]:
    """Declare who may call an interface method: the identities (services, ``gateway``, the
    ``verify`` tool) whose calls it accepts; any other caller is refused with 403, in either
    binding. A call acting for a person (a buyer, seller or admin) is accepted only from
    ``for_users`` among them: by default the gateway, where people's tokens are checked; a
    call acting as the system is accepted only for the caller itself."""
    if not identities:
        raise ValueError("name at least one caller")

    def mark(method: F) -> F:
        method.__colony_callers__ = frozenset(identities)  # type: ignore[attr-defined]
        method.__colony_for_users__ = frozenset(for_users) & frozenset(identities)  # type: ignore[attr-defined]
        return method

    return mark


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    repeatable: bool
    callers: frozenset[str]
    """Who may call it (see :func:`callers`)."""
    for_users: frozenset[str]
    actor_index: int | None
    """The position of its ``actor`` parameter (after ``self``), if it takes one: the actor
    travels in the call's signed token, never among its parameters."""
    signature: inspect.Signature
    params: type[msgspec.Struct]
    returns: Any
    encoder: msgspec.json.Encoder
    params_decoder: msgspec.json.Decoder[Any]
    result_decoder: msgspec.json.Decoder[Any] | None

    def authorize(self, caller: str, actor: Actor | None) -> None:
        """Refuse (403) a call this method's list does not allow: from a caller not on it,
        for a person from a caller that may not act for people, or as the system from a
        caller naming another than itself."""
        if caller not in self.callers:
            raise Forbidden(f"{caller} may not call {self.name}.")
        if actor is None:
            if self.actor_index is not None:
                raise Forbidden(f"A call to {self.name} must say whom it acts for.")
        elif actor.role == "system":
            if actor.id != caller:
                raise Forbidden(f"{caller} may act as the system only as itself.")
        elif caller not in self.for_users:
            raise Forbidden(f"{caller} may not call {self.name} for a person.")

    def actor_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Actor | None:
        """The actor among a call's arguments (``self`` not included), if it takes one."""
        index = self.actor_index
        if index is None:
            return None
        actor = args[index] if len(args) > index else kwargs.get("actor")
        return actor if isinstance(actor, Actor) else None


# api is a `type`, not a `type[Any]`: mypy counts the latter as unhashable, unfit for @cache.
@cache
def interface_methods(api: type) -> dict[str, MethodSpec]:
    methods: dict[str, MethodSpec] = {}
    for name, function in inspect.getmembers(api, inspect.iscoroutinefunction):
        if name.startswith("_"):
            continue
        hints = typing.get_type_hints(function, include_extras=True)
        signature = inspect.signature(function)
        if not hasattr(function, "__colony_callers__"):
            raise TypeError(f"{api.__name__}.{name} does not say who may call it (@callers)")
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        actor_index = None
        for index, param in enumerate(list(signature.parameters.values())[1:]):
            if param.name == "actor" and hints[param.name] is Actor:
                actor_index = index
                continue
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
            callers=function.__colony_callers__,
            for_users=function.__colony_for_users__,
            actor_index=actor_index,
            signature=signature,
            params=params,
            returns=returns,
            encoder=msgspec.json.Encoder(),
            params_decoder=msgspec.json.Decoder(params),
            result_decoder=None if returns in (None, type(None)) else msgspec.json.Decoder(returns),
        )
    return methods
