"""The marketplace as its code declares it, for the service map and the event catalogue: the
services and who may call each of their methods (each interface's ``@callers``), the events
each service publishes and consumes (the AsyncAPI document the gateway serves), and the two
third parties outside it.

Nothing here is drawn by hand but the third parties, whose callers no interface names (they
are reached through the platform's HTTP and SMTP clients, configured per dependency).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from colony.platform.runtime.interface import interface_methods
from colony.services.cart.api import CartApi
from colony.services.catalog.api import CatalogApi
from colony.services.delivery.api import DeliveryApi
from colony.services.identity.api import IdentityApi
from colony.services.inventory.api import InventoryApi
from colony.services.notifications.api import NotificationsApi
from colony.services.orders.api import OrdersApi
from colony.services.payments.api import PaymentsApi
from colony.services.recommendations.api import RecommendationsApi

GATEWAY = "gateway"
SERVICE_APIS: tuple[type, ...] = (
    IdentityApi,
    CatalogApi,
    InventoryApi,
    CartApi,
    OrdersApi,
    PaymentsApi,
    DeliveryApi,
    NotificationsApi,
    RecommendationsApi,
)
"""The interfaces the gateway knows the services by (those of :class:`Backends`)."""


@dataclass(frozen=True)
class External:
    """A third party outside the marketplace: who calls it, and the name of the dependency
    its calls go through (the breaker's name in ``/admin/dependencies``)."""

    name: str
    label: str
    caller: str
    dependency: str


EXTERNALS = (
    External("payment-provider", "Payment provider", "payments", "payment-provider"),
    External("mail-sink", "Mail sink (SMTP)", "notifications", "smtp"),
)


@dataclass(frozen=True)
class Method:
    name: str
    callers: tuple[str, ...]
    repeatable: bool
    summary: str


@dataclass(frozen=True)
class Service:
    name: str
    methods: tuple[Method, ...]
    publishes: tuple[str, ...]
    consumes: tuple[str, ...]


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool


@dataclass(frozen=True)
class Channel:
    topic: str
    title: str
    summary: str
    publishers: tuple[str, ...]
    consumers: tuple[str, ...]
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class Catalogue:
    services: dict[str, Service]
    """The services behind the gateway, by name, in name order."""
    calls: tuple[tuple[str, str], ...]
    """(caller, callee) for every caller an interface names that is the gateway or a service."""
    tools: dict[str, tuple[str, ...]]
    """The operators' tools an interface names as callers (``verify``, ``cli``, ``seed``),
    each with the services it may call."""
    channels: dict[str, Channel]
    """The event catalogue by topic; empty when the gateway was given no document."""

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every box of the map: the gateway, the services, the third parties."""
        return (GATEWAY, *self.services, *(external.name for external in EXTERNALS))


def build_catalogue(document: Mapping[str, Any] | None) -> Catalogue:
    channels = _channels(document) if document is not None else {}
    services: dict[str, Service] = {}
    calls: set[tuple[str, str]] = set()
    tools: dict[str, set[str]] = {}
    names = {api.service_name for api in SERVICE_APIS}  # type: ignore[attr-defined]
    for api in sorted(SERVICE_APIS, key=lambda api: api.service_name):  # type: ignore[attr-defined]
        name: str = api.service_name  # type: ignore[attr-defined]
        methods = []
        for spec in sorted(interface_methods(api).values(), key=lambda spec: spec.name):
            methods.append(
                Method(
                    spec.name,
                    tuple(sorted(spec.callers)),
                    spec.repeatable,
                    _first_line(getattr(api, spec.name)),
                )
            )
            for caller in spec.callers:
                if caller == GATEWAY or caller in names:
                    calls.add((caller, name))
                else:
                    tools.setdefault(caller, set()).add(name)
        services[name] = Service(
            name,
            tuple(methods),
            tuple(t for t, c in channels.items() if name in c.publishers),
            tuple(t for t, c in channels.items() if name in c.consumers),
        )
    return Catalogue(
        services=services,
        calls=tuple(sorted(calls)),
        tools={tool: tuple(sorted(found)) for tool, found in sorted(tools.items())},
        channels=channels,
    )


def _first_line(function: Any) -> str:
    doc = inspect.getdoc(function) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _channels(document: Mapping[str, Any]) -> dict[str, Channel]:
    """Each channel of an AsyncAPI 3.0 document with its publishers (``send``), consumers
    (``receive``) and payload fields."""
    operations = document.get("operations", {})
    components = document.get("components", {})
    schemas = components.get("schemas", {})
    messages = components.get("messages", {})
    found: dict[str, Channel] = {}
    for key, channel in sorted(document.get("channels", {}).items()):
        topic = str(channel.get("address", key))
        reference = f"#/channels/{key.replace('~', '~0').replace('/', '~1')}"
        sides: dict[str, list[str]] = {"send": [], "receive": []}
        for operation in operations.values():
            if operation.get("channel", {}).get("$ref") == reference:
                for tag in operation.get("tags", []):
                    sides.setdefault(operation.get("action", ""), []).append(str(tag["name"]))
        fields: tuple[Field, ...] = ()
        summary = ""
        for message in channel.get("messages", {}).values():
            name = str(message.get("$ref", "")).rsplit("/", 1)[-1]
            declared = messages.get(name, {})
            summary = str(declared.get("summary", ""))
            fields = _fields(declared.get("payload", {}), schemas)
        found[topic] = Channel(
            topic=topic,
            title=str(channel.get("title", topic)),
            summary=summary,
            publishers=tuple(sorted(sides["send"])),
            consumers=tuple(sorted(sides["receive"])),
            fields=fields,
        )
    return found


def _fields(payload: Mapping[str, Any], schemas: Mapping[str, Any]) -> tuple[Field, ...]:
    schema = _resolved(payload, schemas)
    required = set(schema.get("required", ()))
    return tuple(
        Field(name, _type_of(value, schemas), name in required)
        for name, value in schema.get("properties", {}).items()
    )


def _resolved(schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> Mapping[str, Any]:
    reference = schema.get("$ref")
    if isinstance(reference, str):
        return schemas.get(reference.rsplit("/", 1)[-1], {})  # type: ignore[no-any-return]
    return schema


def _type_of(schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> str:
    """A JSON Schema's type as people read it: ``string``, ``array of OrderLine``,
    ``integer | null``."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    for combined in ("anyOf", "oneOf"):
        if combined in schema:
            return " | ".join(_type_of(part, schemas) for part in schema[combined])
    kind = schema.get("type")
    if kind == "array":
        return "array of " + _type_of(schema.get("items", {}), schemas)
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    return str(kind or "any")
