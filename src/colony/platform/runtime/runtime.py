"""The runtime: what a topology places in this process is started here, the rest is called.

A service may define ``async start()`` (set-up, always run), ``async start_workers()`` (its
background work: sagas, timers, dispatchers; run only when the runtime runs in the
background, not for a command like ``colony seed``) and ``async stop()``.

For each local service it opens the service's own database, applies its migrations, builds
it, subscribes its consumers and starts its outbox relay; a service placed behind an HTTP
binding is also served over HTTP. ``client(Api)`` returns the implementation itself when
caller and service share the process, and an HTTP client otherwise.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from graphlib import TopologicalSorter
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from colony.platform import faults
from colony.platform.config import Settings
from colony.platform.errors import ServiceUnavailable
from colony.platform.http_client import HttpClient
from colony.platform.logging import get_logger
from colony.platform.messaging import Broker, Consumer, InProcessBroker, Outbox, OutboxRelay
from colony.platform.messaging.jetstream import JetStreamBroker
from colony.platform.observability import tracing
from colony.platform.observability.exposition import metrics_route
from colony.platform.observability.loop_lag import start_watching, stop_watching
from colony.platform.observability.span_shipping import (
    Deliver,
    SpanShipper,
    into_store,
    to_gateway,
)
from colony.platform.observability.state import ProcessState
from colony.platform.resilience import BulkheadPolicy, CallPolicy, Resilience
from colony.platform.runtime.definition import ServiceContext, ServiceDefinition
from colony.platform.runtime.http_binding import HttpClientFactory, rpc_app
from colony.platform.runtime.inprocess_binding import guarded
from colony.platform.runtime.operations import OperationsApi, ServiceOperations
from colony.platform.runtime.topology import Topology
from colony.platform.storage import Database, open_database
from colony.platform.storage.migrations import PLATFORM_MIGRATIONS, migrate
from colony.platform.trust import (
    InMemoryKeys,
    KeyDirectory,
    KeyStore,
    TokenIssuer,
    TokenVerifier,
)
from colony.platform.web.server import HttpServer

Api = TypeVar("Api")
_log = get_logger("runtime")
JSON = "application/json"


class Runtime:
    def __init__(
        self,
        settings: Settings,
        definitions: list[ServiceDefinition],
        topology: Topology | None = None,
        broker: Broker | None = None,
        interpose: Callable[[str, Any], Any] | None = None,
        identity: str = "cli",
    ) -> None:
        """``interpose(service, client)`` may wrap every client this runtime hands out: the
        seam where tests put faults between a caller and the service it calls. ``identity``
        is who calls through ``client(Api)`` when no caller is named (an operator's command:
        ``cli``, ``seed``, ``verify``); a service's own calls are made as that service."""
        self.settings = settings
        self.identity = identity
        self._interpose = interpose
        self.topology = topology or Topology.one_process()
        self.definitions = {d.name: d for d in definitions}
        self._given_broker = broker
        self.broker: Broker = broker or InProcessBroker()
        self.services: dict[str, Any] = {}
        self.databases: dict[str, Database] = {}
        self.relays: dict[str, OutboxRelay] = {}
        self.consumers: dict[str, Consumer] = {}
        self._operations: dict[str, ServiceOperations] = {}
        self.process_name = self._process_name()
        """Who this process is in its metrics: its one service, or ``gateway`` (the
        marketplace in one process, or the edge alone)."""
        self.resilience = _resilience(settings, self.process_name)
        self._http = HttpClientFactory(self.resilience)
        self.http = HttpClient(self.resilience)
        """The client for third parties over HTTP, for every service of this process."""
        self.servers: dict[str, HttpServer] = {}
        self._clients: dict[tuple[str, str], Any] = {}
        self._by_api = {d.api: d.name for d in definitions}
        self.keys = self._keys()
        self._issuers: dict[str, TokenIssuer] = {}
        self.state = ProcessState(
            self.process_name,
            lambda: self.databases,
            lambda name: any(part == "saga" for part, _ in self.definitions[name].components),
            self.resilience.snapshot,
            self._jetstream_pending,
        )
        self._loop_watch: asyncio.Task[None] | None = None
        self._shipper: SpanShipper | None = None

    def _process_name(self) -> str:
        local = [name for name in self.definitions if self.topology.placement(name).local]
        return local[0] if len(local) == 1 else "gateway"

    async def _jetstream_pending(self) -> dict[tuple[str, str], int]:
        pending = getattr(self.broker, "pending", None)
        return await pending() if pending is not None else {}

    def metrics_route(self, allowed: Callable[[Request], bool] | None = None) -> BaseRoute:
        """``GET /metrics`` for this process: what its code counted, and its state read now."""
        return metrics_route(self.state.refresh, allowed, self.state.registry)

    def _keys(self) -> KeyStore:
        """In memory when no call leaves this process's in-process binding; otherwise the
        keys directory every process of the topology shares (``colony up --distributed`` or
        ``colony keys init`` fills it, or a mounted Secret), where an identity without a key
        gets one if the directory can be written."""
        if self.settings.keys_dir is None and all(
            self.topology.placement(name).binding == "inprocess" for name in self.definitions
        ):
            return InMemoryKeys()
        path = self.settings.keys_dir or self.settings.data_dir / "keys"
        return KeyDirectory(path, create_missing=True)

    def issuer(self, identity: str) -> TokenIssuer:
        issuer = self._issuers.get(identity)
        if issuer is None:
            issuer = self._issuers[identity] = TokenIssuer(
                identity, self.keys, self.settings.service_token_ttl_seconds
            )
        return issuer

    def local_names(self) -> list[str]:
        graph = {d.name: set(d.depends_on) for d in self.definitions.values()}
        order = list(TopologicalSorter(graph).static_order())
        return [name for name in order if self.topology.placement(name).local]

    async def start(self, background: bool = True) -> None:
        """Start every local service; with ``background=False`` no relay or server runs
        (for commands such as ``colony seed`` that drive the services themselves)."""
        if background and self._given_broker is None and self.settings.nats_url:
            # Only a runtime that runs in the background takes messages from the broker: a
            # command driving the services directly delivers what it causes in-process.
            self.broker = JetStreamBroker(
                self.settings.nats_url, self.settings.instance, resilience=self.resilience
            )
        for name in self.local_names():
            await self._start_service(self.definitions[name])
        await self.broker.start()
        if background:
            self._loop_watch = start_watching(self.process_name)
            tracing.configure_tracing(
                self.process_name, self.settings.instance, self.settings.trace_sample_ratio
            )
            if self.process_name == "gateway":
                tracing.STORE.retain(
                    self.settings.trace_store_traces,
                    self.settings.trace_store_age_seconds,
                    self.settings.trace_store_spans,
                )
            self._shipper = SpanShipper(self._span_destination())
            self._shipper.start()
            for relay in self.relays.values():
                relay.start()
            for service in self.services.values():
                if hasattr(service, "start_workers"):
                    await service.start_workers()
            for name in self.local_names():
                placement = self.topology.placement(name)
                if placement.binding == "http":
                    address = urlsplit(placement.addresses[0])
                    await self.serve(name, address.hostname or "127.0.0.1", address.port or 80)

    async def _start_service(self, definition: ServiceDefinition) -> None:
        db = open_database(
            definition.name,
            self.settings.dsn_for(definition.name),
            sole_writer=not self.topology.placement(definition.name).replicated,
        )
        await db.open()
        await migrate(db, "platform", PLATFORM_MIGRATIONS)
        for component, folder in definition.components:
            await migrate(db, component, folder)
        if definition.migrations is not None:
            await migrate(db, definition.name, definition.migrations)
        outbox = Outbox(db, definition.name)
        ctx = ServiceContext(definition.name, self.settings, db, outbox, self)
        service = definition.build(ctx)
        handlers = service.subscriptions() if hasattr(service, "subscriptions") else {}
        try:
            definition.check_subscriptions(handlers)  # before any of its work starts
        except ValueError:
            await db.close()
            raise
        if hasattr(service, "start"):
            await service.start()
        self.services[definition.name] = service
        self.databases[definition.name] = db
        self.relays[definition.name] = OutboxRelay(outbox, self.broker)
        if handlers:
            consumer = Consumer(definition.name, db, handlers)
            self.consumers[definition.name] = consumer
            self.broker.subscribe(consumer)
        self._operations[definition.name] = ServiceOperations(
            definition.name,
            db,
            self.consumers.get(definition.name),
            jetstream_pending=self._jetstream_pending,
        )

    async def serve(self, name: str, host: str, port: int) -> HttpServer:
        """Serve a local service's interface over HTTP, with its health probes."""

        async def ready() -> str | None:
            try:
                await self._ping_database(name, self.settings.ready_timeout_seconds)
            except ServiceUnavailable as exc:
                return str(exc)
            return None if self.broker.connected else "the message broker is unreachable"

        async def dependencies(request: Request) -> Response:
            return Response(msgspec.json.encode(self.resilience.snapshot()), media_type=JSON)

        routes: list[BaseRoute] = [Route("/admin/dependencies", dependencies), self.metrics_route()]
        if self.settings.fault_injection:
            routes.extend(faults.admin_routes())
        verifier = TokenVerifier(name, self.keys)
        app = rpc_app(
            self.definitions[name].api,
            self.services[name],
            verifier,
            ready,
            routes,
            operations=self._operations[name],
        )
        server = HttpServer(app, host, port)
        await server.start()
        self.servers[name] = server
        return server

    def client(self, api: type[Api], caller: str | None = None) -> Api:
        """The service behind ``api``, called as ``caller`` (by default this runtime's
        identity): in-process, its implementation behind the same list of allowed callers the
        HTTP binding checks; otherwise an HTTP client sending a token signed as ``caller``."""
        caller = caller or self.identity
        name = self._by_api[api]
        known = self._clients.get((caller, name))
        if known is not None:
            return known  # type: ignore[no-any-return]
        placement = self.topology.placement(name)
        if placement.binding == "inprocess":
            client = guarded(api, self.services[name], caller)
        else:
            client = self._http.client(api, placement.addresses, self.issuer(caller), name)
        if self._interpose is not None:
            client = self._interpose(name, client)
        self._clients[(caller, name)] = client
        return client  # type: ignore[no-any-return]

    def operations(self, name: str, caller: str | None = None) -> OperationsApi:
        """What service ``name`` answers about its outbox and dead letters, asked as
        ``caller`` (by default this runtime's identity), wherever the service runs."""
        caller = caller or self.identity
        if name not in self.definitions:
            raise KeyError(name)
        known = self._clients.get((caller, "platform:" + name))
        if known is not None:
            return known  # type: ignore[no-any-return]
        placement = self.topology.placement(name)
        if placement.binding == "inprocess":
            client = guarded(OperationsApi, self._operations[name], caller, name)
        else:
            client = self._http.client(
                OperationsApi,
                placement.addresses,
                self.issuer(caller),
                name,
                audience=name,
                prefix="/platform/",
            )
        self._clients[(caller, "platform:" + name)] = client
        return client  # type: ignore[no-any-return]

    async def ping(self, name: str, timeout_seconds: float | None = None) -> None:
        """Raise ServiceUnavailable unless the service answers where its callers reach it,
        within ``timeout_seconds`` if given: a frozen process accepts connections and never
        answers, and a probe must not wait for it longer than its own caller waits."""
        placement = self.topology.placement(name)
        try:
            async with asyncio.timeout(timeout_seconds):
                if placement.binding == "http":
                    await self._ping_any_replica(placement.addresses, timeout_seconds)
                await self._ping_database(name)
        except TimeoutError as exc:
            raise ServiceUnavailable(f"{name} did not answer within {timeout_seconds} s") from exc

    async def _ping_any_replica(
        self, addresses: Sequence[str], timeout_seconds: float | None
    ) -> None:
        """Ask every replica at once and take the first yes: asked in turn, one frozen replica
        would spend the whole bound and hide the live ones behind it."""
        probes = [
            asyncio.ensure_future(self._http.ping([address], timeout_seconds))
            for address in addresses
        ]
        problems = []
        try:
            for answer in asyncio.as_completed(probes):
                try:
                    await answer
                    return
                except ServiceUnavailable as exc:
                    problems.append(str(exc))
            raise ServiceUnavailable("; ".join(problems))
        finally:
            for probe in probes:
                probe.cancel()
            # Collect what the losers raised, so no "exception was never retrieved" is logged.
            await asyncio.gather(*probes, return_exceptions=True)

    async def _ping_database(self, name: str, timeout_seconds: float | None = None) -> None:
        if name in self.databases:
            try:
                async with asyncio.timeout(timeout_seconds):
                    await self.databases[name].fetch_value("SELECT 1")
            except Exception as exc:
                raise ServiceUnavailable(f"{name}'s database: {exc!r}") from exc

    async def drain(self) -> int:
        """Publish every pending outbox row, until the whole system is quiet."""
        total = 0
        while True:
            published = 0
            for relay in self.relays.values():
                published += await relay.drain()
            total += published
            if not published:
                return total

    def _span_destination(self) -> Deliver:
        """The gateway's process keeps its spans (the console's store); any other sends them
        to the gateway, signed as itself, if it knows where that is."""
        if self.process_name == "gateway":
            return into_store(tracing.STORE)
        if self.settings.traces_url:
            return to_gateway(self.http, self.settings.traces_url, self.issuer(self.process_name))

        async def nowhere(spans: list[Any]) -> None:
            return None

        return nowhere

    async def stop(self) -> None:
        await stop_watching(self._loop_watch)
        self._loop_watch = None
        if self._shipper is not None:
            await self._shipper.stop()
            self._shipper = None
        for server in reversed(self.servers.values()):
            await server.stop()
        self.servers.clear()
        for relay in self.relays.values():
            await relay.stop()
        await self.broker.stop()
        for name, service in reversed(list(self.services.items())):
            stop = getattr(service, "stop", None)
            if stop is not None and inspect.iscoroutinefunction(stop):
                await stop()
            _log.debug("service stopped", service=name)
        await self._http.close()
        await self.http.close()
        for db in self.databases.values():
            await db.close()
        self.services.clear()
        self.databases.clear()
        self.relays.clear()
        self.consumers.clear()
        self._operations.clear()
        self._clients.clear()


def _resilience(settings: Settings, owner: str) -> Resilience:
    """Each kind of dependency's call policy: services by default, then the third parties
    (whose own retries the payments service and the notification dispatcher already make
    durable, hence fewer attempts here), then the overrides from settings."""
    third_party = BulkheadPolicy(limit=16, queue=256)
    return Resilience(
        {
            "*": CallPolicy(timeout=settings.call_timeout_seconds),
            "payment-provider": CallPolicy(
                timeout=settings.payment_timeout_seconds,
                attempts=2,
                bulkhead=BulkheadPolicy(limit=64, queue=1024),
            ),
            "smtp": CallPolicy(timeout=5.0, attempts=1, bulkhead=third_party),
            # The outbox relay is the layer that publishes again (durably, with backoff).
            "nats": CallPolicy(timeout=10.0, attempts=1),
            "webhooks": CallPolicy(timeout=5.0, attempts=1, bulkhead=third_party),
        },
        settings.resilience,
        owner=owner,
    )
