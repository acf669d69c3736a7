"""The event catalogue as an AsyncAPI 3.0 document, generated from the code, never by hand.

One channel per topic, its address the topic, its message the event type with the payload's
JSON Schema from msgspec (the same types the services encode and decode). Who publishes and
who consumes are operations: a ``send`` per (publisher, topic), a ``receive`` per (consumer,
topic), each tagged with its service and named ``<service>.<action>.<topic>``.

- **Publishers** are read from each service's public interface: every :class:`Event` declared
  in the module of its API is published by the service that owns its topic (:func:`owner_of`,
  the same rule the outbox and the consumers enforce).
- **Consumers** are what each service declares it consumes (``consumes``), a declaration the
  runtime holds against the service's ``subscriptions()`` when it starts it, so the catalogue
  can be built without building any service (the gateway builds it from the declarations).

The envelope every event travels in (:class:`Message`: id, key, topic, created_at, source and
its headers, the correlation id among them) is described once, as a message trait whose
``headers`` are the envelope's fields, and every message applies it.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterable
from typing import Any, Protocol

import msgspec

from colony.platform.messaging.message import Event, Message, owner_of

ASYNCAPI_VERSION = "3.0.0"
JSON = "application/json"
_ENVELOPE_TRAIT = "#/components/messageTraits/envelope"
_DESCRIPTION = (
    "The events Colony's services publish and consume. A service records an event in its"
    " transactional outbox, in the transaction of the change that caused it; a relay"
    " publishes it; each consumer applies it once (its inbox), retrying with backoff and"
    " dead-lettering what keeps failing: at-least-once delivery, exactly-once effect. In one"
    " process events are delivered in-process; between processes over NATS JetStream, on the"
    " subject that is the channel's address under the stream's prefix (`colony.` by"
    " default). Only the service that owns a topic (its first part) may publish it."
)


class EventParticipant(Protocol):
    """What the catalogue needs of a service: its name, its public interface (whose module
    declares the events it publishes), and the event types it consumes (None: undeclared)."""

    @property
    def name(self) -> str: ...

    @property
    def api(self) -> type[Any]: ...

    @property
    def consumes(self) -> tuple[type[Event], ...] | None: ...


def declared_events(api: type[Any]) -> list[type[Event]]:
    """The event types declared in the module that declares ``api``, by topic."""
    module = sys.modules[api.__module__]
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, Event)
        and value is not Event
        and value.__module__ == module.__name__
    ]
    return sorted(found, key=lambda event: event.topic)


def asyncapi_document(
    services: Iterable[EventParticipant],
    title: str = "Colony events",
    version: str = "1.0.0",
    description: str = _DESCRIPTION,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the events ``services`` publish and consume.

    Raises ``ValueError`` when the code cannot be described truthfully: a service that does
    not declare what it consumes, an interface declaring another service's event, or two
    types for one topic."""
    services = list(services)
    senders: dict[str, set[str]] = {}
    receivers: dict[str, set[str]] = {}
    types: dict[str, type[Event]] = {}
    for service in services:
        for event in declared_events(service.api):
            if owner_of(event.topic) != service.name:
                raise ValueError(
                    f"{service.name}'s interface declares {event.topic}, which"
                    f" {owner_of(event.topic)} owns: a service declares only its own events"
                )
            _add(types, event)
            senders.setdefault(event.topic, set()).add(service.name)
    for service in services:
        if service.consumes is None:
            raise ValueError(f"{service.name} does not declare the events it consumes")
        for event in service.consumes:
            _add(types, event)
            receivers.setdefault(event.topic, set()).add(service.name)

    topics = sorted(types)
    refs, schemas = msgspec.json.schema_components(
        [types[topic] for topic in topics], ref_template="#/components/schemas/{name}"
    )
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic, ref in zip(topics, refs, strict=True):
        event = types[topic]
        name = ref["$ref"].rsplit("/", 1)[1]
        publishers = sorted(senders.get(topic, ()))
        consumers = sorted(receivers.get(topic, ()))
        messages[name] = _message(event, name, ref)
        channels[topic] = {
            "address": topic,
            "title": name,
            "description": _channel_description(event, publishers, consumers),
            "messages": {name: {"$ref": f"#/components/messages/{_pointer(name)}"}},
        }
        channel = {"$ref": f"#/channels/{_pointer(topic)}"}
        message = {"$ref": f"#/channels/{_pointer(topic)}/messages/{_pointer(name)}"}
        for action, names in (("send", publishers), ("receive", consumers)):
            for service_name in names:
                verb = "publishes" if action == "send" else "consumes"
                operations[f"{service_name}.{action}.{topic}"] = {
                    "action": action,
                    "channel": channel,
                    "messages": [message],
                    "summary": f"{service_name} {verb} {topic}",
                    "tags": [{"name": service_name}],
                }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": description,
            "tags": [{"name": service.name} for service in services],
        },
        "defaultContentType": JSON,
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "messages": messages,
            "messageTraits": {"envelope": _envelope_trait()},
        },
    }


def _add(types: dict[str, type[Event]], event: type[Event]) -> None:
    known = types.setdefault(event.topic, event)
    if known is not event:
        raise ValueError(f"{event.topic} names two types: {_qualified(known)}, {_qualified(event)}")


def _message(event: type[Event], name: str, payload: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": name,
        "title": name,
        "contentType": JSON,
        "payload": payload,
        "traits": [{"$ref": _ENVELOPE_TRAIT}],
    }
    if event.__doc__:
        message["summary"] = _first_sentence(event.__doc__)
        message["description"] = inspect.cleandoc(event.__doc__)
    return message


def _channel_description(event: type[Event], publishers: list[str], consumers: list[str]) -> str:
    lines = [inspect.cleandoc(event.__doc__)] if event.__doc__ else []
    if publishers:
        lines.append(f"Published by {', '.join(publishers)}.")
    else:
        lines.append(
            "Declared in no service's public interface: no service publishes it to the broker."
        )
    lines.append(f"Consumed by {', '.join(consumers)}." if consumers else "Consumed by none.")
    return "\n\n".join(lines)


def _envelope_trait() -> dict[str, Any]:
    """The envelope's fields, from :class:`Message` itself, as every message's headers."""
    (ref,), schemas = msgspec.json.schema_components([Message])
    envelope = schemas[ref["$ref"].rsplit("/", 1)[1]]
    envelope["title"] = "Envelope"
    envelope["description"] = f"{Message.__name__}'s fields but its payload (the event)."
    envelope["properties"].pop("payload")
    envelope["required"] = [field for field in envelope["required"] if field != "payload"]
    envelope["properties"]["headers"]["properties"] = {
        "correlation_id": {
            "type": "string",
            "description": "The correlation id of the request that caused the event (the"
            " message's id when there was none), carried into its consumers' logs and calls.",
        }
    }
    return {
        "description": (
            "The envelope every event travels in; its fields are described here as the"
            " message's headers. In one process the envelope is an object whose `payload` is"
            " the event. Over NATS JetStream the message body is the envelope's JSON, the"
            " event's JSON its `payload` field, and the `Nats-Msg-Id` header carries the"
            " envelope's `id` (the broker's deduplication). `source` must be the service that"
            " owns the topic; consumers refuse anything else."
        ),
        "headers": envelope,
        "correlationId": {
            "description": "Ties the event to the request that caused it.",
            "location": "$message.header#/headers/correlation_id",
        },
    }


def _first_sentence(doc: str) -> str:
    paragraph = " ".join(inspect.cleandoc(doc).split("\n\n", 1)[0].split())
    sentence, stop, _ = paragraph.partition(". ")
    return sentence + stop.strip()


def _qualified(event: type[Event]) -> str:
    return f"{event.__module__}.{event.__qualname__}"


def _pointer(key: str) -> str:
    """``key`` as one JSON Pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")
