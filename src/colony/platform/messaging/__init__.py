"""Messaging: transactional outbox, relay, broker, and consumers with inbox and dead letters."""

from colony.platform.messaging.broker import Broker, InProcessBroker
from colony.platform.messaging.consumer import Consumer
from colony.platform.messaging.message import Event, Message
from colony.platform.messaging.outbox import Outbox, OutboxRelay

__all__ = ["Broker", "Consumer", "Event", "InProcessBroker", "Message", "Outbox", "OutboxRelay"]
