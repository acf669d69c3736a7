"""What travels between services: events, and the envelope that carries them."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event a service publishes; ``topic`` names it in the event catalogue."""

    topic: ClassVar[str]


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """The envelope: ``payload`` is the event's JSON, carried as-is between services."""

    id: str
    topic: str
    key: str
    payload: msgspec.Raw
    headers: dict[str, str] = {}
    created_at: str
    source: str

    def decode(self, event_type: type[Any]) -> Any:
        return msgspec.json.decode(self.payload, type=event_type)


def owner_of(topic: str) -> str:
    """The service that owns an event type: the first part of its topic, by the catalogue's
    convention (``orders.order.completed`` is orders')."""
    return topic.split(".", 1)[0]


encode_message = msgspec.json.Encoder().encode
decode_message = msgspec.json.Decoder(Message).decode
