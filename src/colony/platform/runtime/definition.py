"""How a service describes itself to the runtime, and what the runtime hands it."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from colony.platform.config import Settings
from colony.platform.messaging import Event, Outbox
from colony.platform.storage import Database

if TYPE_CHECKING:
    from colony.platform.http_client import HttpClient
    from colony.platform.resilience import Resilience
    from colony.platform.runtime.runtime import Runtime

Api = TypeVar("Api")


class ServiceApi(Protocol):
    """Every public interface names the service that implements it."""

    service_name: str


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    api: type[Any]
    build: Callable[[ServiceContext], Any]
    migrations: Path | None = None
    depends_on: tuple[str, ...] = ()
    components: tuple[tuple[str, Path], ...] = ()
    """Platform parts the service keeps tables for (name, migrations), e.g. the event store."""
    consumes: tuple[type[Event], ...] | None = None
    """The event types the service's ``subscriptions()`` handle, declared so the event
    catalogue can be built without building the service; None leaves them undeclared."""

    def check_subscriptions(self, handled: Collection[type[Any]]) -> None:
        """Refuse a service that handles other events than its definition declares: the
        event catalogue would tell of consumers that are not there, or miss some."""
        if self.consumes is None:
            return
        declared, subscribed = set(self.consumes), set(handled)
        if declared != subscribed:
            undeclared = sorted(t.topic for t in subscribed - declared)
            unhandled = sorted(t.topic for t in declared - subscribed)
            raise ValueError(
                f"{self.name} subscribes to other events than its definition declares it"
                f" consumes: handled but undeclared {undeclared}, declared but not handled"
                f" {unhandled}"
            )


@dataclass
class ServiceContext:
    """What a service receives when it is built: its settings, its own database and outbox,
    and clients for the services it depends on."""

    name: str
    settings: Settings
    db: Database
    outbox: Outbox
    runtime: Runtime = field(repr=False)

    def client(self, api: type[Api]) -> Api:
        """The service behind ``api``, called as this service."""
        return self.runtime.client(api, caller=self.name)

    @property
    def http(self) -> HttpClient:
        """Calls to third parties over HTTP, through the platform's policies."""
        return self.runtime.http

    @property
    def resilience(self) -> Resilience:
        """The policies of this process's dependencies, for calls made by other means (SMTP)."""
        return self.runtime.resilience
