"""Service identities for tests that serve or call an interface over HTTP themselves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from colony.platform.runtime import Runtime
from colony.platform.runtime.interface import MethodSpec, interface_methods
from colony.platform.security import Actor
from colony.platform.trust import InMemoryKeys, TokenIssuer, TokenVerifier

KEYS = InMemoryKeys()


def issuer(identity: str) -> TokenIssuer:
    """Signs as ``identity``, with keys every :func:`verifier` here trusts."""
    return TokenIssuer(identity, KEYS)


def verifier(identity: str) -> TokenVerifier:
    """Verifies calls to ``identity``."""
    return TokenVerifier(identity, KEYS)


class AllowedCaller:
    """A service's client for tests of the service's own rules, not of who may call it: each
    call is made as an identity the method's list allows. A person's call comes from the
    gateway; the system's from the service it names when the list has it, else from the
    first the list names, as itself (a test's ``Actor.system("orders")`` reading an audit
    reads it as ``verify`` would); a person's call to a method no person may reach through the
    marketplace goes to the service itself, to test the service's own refusal. Who may call
    what is tested in ``test_service_trust``."""

    def __init__(self, runtime: Runtime, api: type) -> None:
        self._runtime = runtime
        self._api = api
        self._methods = interface_methods(api)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        spec = self._methods[name]

        def call(*args: Any, **kwargs: Any) -> Awaitable[Any]:
            actor = spec.actor_of(args, kwargs)
            if actor is not None and actor.role != "system" and not spec.for_users:
                # A person asking for what only services may: the service's own rule answers
                # (the list, checked first in the marketplace, would refuse it anyway).
                service = self._runtime.services[self._api.service_name]  # type: ignore[attr-defined]
                return getattr(service, name)(*args, **kwargs)  # type: ignore[no-any-return]
            caller = sorted(spec.for_users)[0] if spec.for_users else sorted(spec.callers)[0]
            if actor is None or actor.role == "system":
                caller = sorted(spec.callers)[0]
                if actor is not None and actor.id in spec.callers:
                    caller = actor.id
                elif actor is not None:
                    args, kwargs = _with_actor(spec, args, kwargs, Actor.system(caller))
            client = self._runtime.client(self._api, caller=caller)
            return getattr(client, name)(*args, **kwargs)  # type: ignore[no-any-return]

        return call


def _with_actor(
    spec: MethodSpec, args: tuple[Any, ...], kwargs: dict[str, Any], actor: Actor
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    index = spec.actor_index
    assert index is not None
    if len(args) > index:
        return (*args[:index], actor, *args[index + 1 :]), kwargs
    return args, {**kwargs, "actor": actor}
