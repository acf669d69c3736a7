"""The event catalogue, an AsyncAPI 3.0 document served at /api/asyncapi.json, tells the truth
about the code: every event a service declares is a channel with its payload's schema, every
subscription is a ``receive`` of its service, every event a real checkout publishes is there
(and its payload fits the schema), and a service cannot subscribe to what it does not declare.

No package on the package index ships the AsyncAPI 3.0 JSON Schema, so its structure is
checked here by hand: the fields each object may have, every reference resolving, every
payload schema a valid JSON Schema. The checks return what they find wrong, so that
``test_the_checks_report_what_is_missing`` can show each one failing on a broken document.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.util
import pkgutil
import re
from collections import defaultdict
from types import ModuleType
from typing import Any

import httpx
import jsonschema
import msgspec
import pytest

import colony.services
from checkout_helpers import add_to_cart, place, wait_for
from colony.composition import service_definitions
from colony.marketplace import Marketplace
from colony.platform.messaging import Event
from colony.platform.messaging.asyncapi import asyncapi_document, declared_events
from colony.platform.messaging.message import owner_of
from colony.platform.runtime import Runtime
from colony.services.orders.api import OrderCompleted
from conftest import list_product, settings_for, sign_up

Topics = dict[str, set[str]]
"""topic -> the services that publish (or consume) it."""

CHECKOUT_TOPICS = {
    "identity.account.registered",
    "catalog.listing.created",
    "inventory.stock.changed",
    "orders.order.completed",
    "payments.payment.captured",
    "delivery.shipment.status_changed",
}
"""What one checkout publishes at least, from signing up to the order's shipment moving."""

# The fields each AsyncAPI 3.0 object may have (besides x- extensions), from the spec.
ROOT = {
    "asyncapi",
    "id",
    "info",
    "servers",
    "defaultContentType",
    "channels",
    "operations",
    "components",
}
INFO = {
    "title",
    "version",
    "description",
    "termsOfService",
    "contact",
    "license",
    "tags",
    "externalDocs",
}
CHANNEL = {
    "address",
    "messages",
    "title",
    "summary",
    "description",
    "servers",
    "parameters",
    "tags",
    "externalDocs",
    "bindings",
}
OPERATION = {
    "action",
    "channel",
    "title",
    "summary",
    "description",
    "security",
    "tags",
    "externalDocs",
    "bindings",
    "traits",
    "messages",
    "reply",
}
MESSAGE_TRAIT = {
    "headers",
    "correlationId",
    "contentType",
    "name",
    "title",
    "summary",
    "description",
    "tags",
    "externalDocs",
    "bindings",
    "examples",
}
MESSAGE = MESSAGE_TRAIT | {"payload", "traits"}
TAG = {"name", "description", "externalDocs"}
COMPONENT_KEY = re.compile(r"^[\w\d.\-_]+$")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document(service_definitions())


# The checks


def resolve(document: dict[str, Any], ref: str) -> Any:
    """The object a local ``$ref`` points at (RFC 6901); KeyError if nothing is there."""
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _extra(where: str, obj: Any, allowed: set[str]) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where} is not an object"]
    return [f"{where} has {key!r}" for key in obj if key not in allowed and key[:2] != "x-"]


def _is_reference(obj: Any, prefix: str) -> bool:
    return isinstance(obj, dict) and set(obj) == {"$ref"} and obj["$ref"].startswith(prefix)


def structure_problems(document: dict[str, Any]) -> list[str]:
    """What makes ``document`` not an AsyncAPI 3.0 document, checked by hand."""
    problems = _extra("the document", document, ROOT)
    if document.get("asyncapi") != "3.0.0":
        problems.append(f"asyncapi is {document.get('asyncapi')!r}, not '3.0.0'")
    info = document.get("info", {})
    problems += _extra("info", info, INFO)
    problems += [f"info.{k} is missing" for k in ("title", "version") if k not in info]
    for tag in info.get("tags", []):
        problems += _extra("an info tag", tag, TAG)
    for key, channel in document.get("channels", {}).items():
        problems += _extra(f"channel {key}", channel, CHANNEL)
        if not isinstance(channel.get("address"), str):
            problems.append(f"channel {key} has no address")
        for name, message in channel.get("messages", {}).items():
            if not _is_reference(message, "#/components/messages/"):
                problems.append(f"channel {key}'s message {name} is not a reference to one")
    for key, operation in document.get("operations", {}).items():
        problems += _extra(f"operation {key}", operation, OPERATION)
        if operation.get("action") not in ("send", "receive"):
            problems.append(f"operation {key}'s action is {operation.get('action')!r}")
        channel = operation.get("channel")
        if not _is_reference(channel, "#/channels/"):
            problems.append(f"operation {key}'s channel is not a reference to one")
            continue
        for message in operation.get("messages", []):
            # A subset of the channel's messages, by reference to them.
            if not _is_reference(message, channel["$ref"] + "/messages/"):
                problems.append(f"operation {key} names a message not of its channel")
        for tag in operation.get("tags", []):
            problems += _extra(f"operation {key}'s tag", tag, TAG)
    components = document.get("components", {})
    for kind in ("schemas", "messages", "messageTraits"):
        problems += [
            f"components.{kind} key {key!r} is not allowed there"
            for key in components.get(kind, {})
            if not COMPONENT_KEY.match(key)
        ]
    for name, schema in components.get("schemas", {}).items():
        try:
            jsonschema.Draft7Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            problems.append(f"schema {name}: {exc.message}")
    for name, message in components.get("messages", {}).items():
        problems += _extra(f"message {name}", message, MESSAGE)
        if "payload" not in message:
            problems.append(f"message {name} has no payload")
    for name, trait in components.get("messageTraits", {}).items():
        problems += _extra(f"message trait {name}", trait, MESSAGE_TRAIT)
        correlation = trait.get("correlationId", {"location": ""})
        if not correlation.get("location", "").startswith("$message."):
            problems.append(f"message trait {name}'s correlationId has no location")
    for ref in _refs(document):
        try:
            resolve(document, ref)
        except (KeyError, TypeError):
            problems.append(f"{ref} points at nothing")
    return problems


def _operations(document: dict[str, Any], topic: str, action: str) -> set[str]:
    """The services tagged on the ``action`` operations of ``topic``'s channel."""
    channel = f"#/channels/{topic}"
    return {
        tag["name"]
        for operation in document["operations"].values()
        if operation["action"] == action and operation["channel"] == {"$ref": channel}
        for tag in operation.get("tags", [])
    }


def catalogue_problems(
    document: dict[str, Any], published: Topics | None = None, consumed: Topics | None = None
) -> list[str]:
    """Each topic published or consumed has its channel, with a ``send`` by each publisher
    and a ``receive`` by each consumer."""
    problems = []
    for action, topics in (("send", published or {}), ("receive", consumed or {})):
        for topic, services in sorted(topics.items()):
            channel = document["channels"].get(topic)
            if channel is None or channel.get("address") != topic:
                problems.append(f"{topic} has no channel")
                continue
            missing = services - _operations(document, topic, action)
            problems += [f"{topic}: no {action} by {service}" for service in sorted(missing)]
    return problems


def payload_schema(document: dict[str, Any], topic: str) -> dict[str, Any]:
    (message,) = document["channels"][topic]["messages"].values()
    payload: dict[str, Any] = resolve(document, message["$ref"])["payload"]
    return payload


def payload_problems(document: dict[str, Any], topic: str, payload: bytes) -> list[str]:
    """What in an event's JSON disagrees with its channel's payload schema."""
    schema = {"allOf": [payload_schema(document, topic)], "components": document["components"]}
    validator = jsonschema.Draft7Validator(schema)
    event = msgspec.json.decode(payload)
    return [f"{topic}: {error.message}" for error in validator.iter_errors(event)]


def api_modules() -> list[ModuleType]:
    """Every service's public interface, found on disk rather than in the composition."""
    modules = []
    for package in pkgutil.iter_modules(colony.services.__path__):
        name = f"colony.services.{package.name}.api"
        if package.ispkg and importlib.util.find_spec(name) is not None:
            modules.append(importlib.import_module(name))
    return modules


def events_in(module: ModuleType) -> list[type[Event]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Event)
        and value.__module__ == module.__name__
    ]


# The document


def test_the_document_is_valid_asyncapi_3(document):
    assert structure_problems(document) == []
    assert len(document["channels"]) >= 10 and len(document["operations"]) >= 20
    # Tools read the service of an operation from its tags; its id says it as well.
    for key, operation in document["operations"].items():
        (tag,) = operation["tags"]
        assert key.startswith(f"{tag['name']}.{operation['action']}."), key


def test_every_declared_event_is_a_channel_with_its_payload_schema(document):
    modules = api_modules()
    assert {m.__name__ for m in modules} == {d.api.__module__ for d in service_definitions()}
    declared = [event for module in modules for event in events_in(module)]
    assert len(declared) >= 10  # the walk found them at all
    published = {event.topic: {owner_of(event.topic)} for event in declared}
    assert catalogue_problems(document, published=published) == []
    for event in declared:
        (ref,), components = msgspec.json.schema_components(
            [event], ref_template="#/components/schemas/{name}"
        )
        assert payload_schema(document, event.topic) == ref, event.topic
        for name, schema in components.items():
            assert document["components"]["schemas"][name] == schema, name


def test_every_subscription_is_a_receive_of_its_service(document):
    consumed: Topics = defaultdict(set)
    for definition in service_definitions():
        for event in definition.consumes or ():
            consumed[event.topic].add(definition.name)
    assert {"delivery", "notifications", "payments"} <= {s for ss in consumed.values() for s in ss}
    assert catalogue_problems(document, consumed=consumed) == []


async def test_the_running_marketplace_consumes_what_the_document_says(marketplace: Marketplace):
    """What the runtime really subscribed, against the document the gateway serves."""
    consumed: Topics = defaultdict(set)
    for name, consumer in marketplace.runtime.consumers.items():
        for topic in consumer.topics:
            consumed[topic].add(name)
    assert len(consumed) >= 8
    served = asyncapi_document(marketplace.runtime.definitions.values())
    assert catalogue_problems(served, consumed=consumed) == []
    documented: Topics = defaultdict(set)
    for topic in served["channels"]:
        for service in _operations(served, topic, "receive"):
            documented[topic].add(service)
    assert documented == consumed  # and no consumer the code does not have


async def test_every_event_a_checkout_publishes_is_in_the_document(
    client: httpx.AsyncClient, marketplace: Marketplace
):
    seller = await sign_up(client, "seller")
    listing = await list_product(client, seller, stock=3)
    buyer = await sign_up(client, "buyer")
    await add_to_cart(client, buyer, listing)
    order_id = await place(client, buyer)
    assert (await wait_for(client, buyer, order_id))["status"] == "completed"
    await marketplace.runtime.drain()

    document = (await client.get("/api/asyncapi.json")).json()
    published: Topics = defaultdict(set)
    problems = []
    for service, db in marketplace.runtime.databases.items():
        rows = await db.fetch_all(
            "SELECT topic, payload FROM outbox WHERE published_at IS NOT NULL"
            " ORDER BY seq DESC LIMIT 500"
        )
        for row in rows:
            published[row["topic"]].add(service)
            if row["topic"] in document["channels"]:
                problems += payload_problems(document, row["topic"], bytes(row["payload"]))
    assert set(published) >= CHECKOUT_TOPICS, sorted(published)
    assert catalogue_problems(document, published=published) == []
    assert problems == []


# The checks can fail


def test_the_checks_report_what_is_missing(document):
    topic = OrderCompleted.topic
    published, consumed = {topic: {"orders"}}, {topic: {"delivery", "notifications"}}
    assert catalogue_problems(document, published, consumed) == []

    without_channel = copy.deepcopy(document)
    del without_channel["channels"][topic]
    assert catalogue_problems(without_channel, published) == [f"{topic} has no channel"]
    assert f"#/channels/{topic}" + " points at nothing" in structure_problems(without_channel)

    without_receiver = copy.deepcopy(document)
    del without_receiver["operations"][f"delivery.receive.{topic}"]
    assert catalogue_problems(without_receiver, consumed=consumed) == [
        f"{topic}: no receive by delivery"
    ]

    broken = copy.deepcopy(document)
    broken["asyncapi"] = "2.6.0"
    broken["operations"][f"orders.send.{topic}"]["action"] = "publish"
    broken["components"]["schemas"]["OrderCompleted"]["type"] = "record"
    problems = structure_problems(broken)
    assert "asyncapi is '2.6.0', not '3.0.0'" in problems
    assert f"operation orders.send.{topic}'s action is 'publish'" in problems
    assert any(p.startswith("schema OrderCompleted:") for p in problems)

    event = OrderCompleted(order_id="o", buyer_id="b", lines=[], total_minor=1, currency="EUR")
    assert payload_problems(document, topic, msgspec.json.encode(event)) == []
    assert payload_problems(document, topic, b'{"order_id": "o", "lines": "none"}') != []


def test_a_service_must_declare_what_it_consumes(document):
    (recommendations,) = (d for d in service_definitions() if d.name == "recommendations")
    with pytest.raises(ValueError, match="does not declare"):
        asyncapi_document([dataclasses.replace(recommendations, consumes=None)])
    assert declared_events(recommendations.api) == []


async def test_the_runtime_refuses_a_service_subscribing_to_what_it_does_not_declare(tmp_path):
    (recommendations,) = (d for d in service_definitions() if d.name == "recommendations")
    wrong = dataclasses.replace(recommendations, consumes=())
    runtime = Runtime(settings_for(tmp_path), [wrong])
    with pytest.raises(
        ValueError, match=re.escape("handled but undeclared ['orders.order.completed']")
    ):
        await runtime.start(background=False)
    await runtime.stop()


# The route


async def test_the_document_is_served_to_anyone_and_only_read(
    client: httpx.AsyncClient, marketplace: Marketplace
):
    answer = await client.get("/api/asyncapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    expected = asyncapi_document(marketplace.runtime.definitions.values())
    assert answer.json() == msgspec.json.decode(msgspec.json.encode(expected))
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        refused = await client.request(method, "/api/asyncapi.json")
        assert refused.status_code == 405, (method, refused.text)
        assert {m.strip() for m in refused.headers["allow"].split(",")} >= {"GET"}
