"""Event sourcing: append-only streams with optimistic concurrency, and rebuildable projections."""

from colony.platform.eventsourcing.projection import Projection, ProjectionRunner
from colony.platform.eventsourcing.store import (
    EVENT_STORE_MIGRATIONS,
    ConcurrencyConflict,
    EventStore,
    RecordedEvent,
)

__all__ = [
    "EVENT_STORE_MIGRATIONS",
    "ConcurrencyConflict",
    "EventStore",
    "Projection",
    "ProjectionRunner",
    "RecordedEvent",
]
