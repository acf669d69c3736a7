"""Running the simulator as its own process: its books in a SQLite file, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Receive, Scope, Send

from colony.payment_provider.app import Provider, create_app
from colony.payment_provider.ledger import Ledger
from colony.platform.http_client import HttpClient
from colony.platform.logging import get_logger
from colony.platform.observability import tracing
from colony.platform.observability.span_shipping import SpanShipper, to_gateway
from colony.platform.resilience import CallPolicy, Resilience
from colony.platform.web.server import HttpServer

DEFAULT_PORT = 8181
PROCESS = "payment-provider"
DATABASE_FILE = "payment_provider.db"
_log = get_logger("payment-provider")


def database_path(data_dir: Path | str) -> str:
    """The SQLite file in ``data_dir``; ``:memory:`` keeps the books in memory only."""
    if str(data_dir) == ":memory:":
        return ":memory:"
    return str(Path(data_dir) / DATABASE_FILE)


@contextlib.asynccontextmanager
async def open_provider(database: str) -> AsyncIterator[Provider]:
    ledger = Ledger(database)
    await ledger.open()
    try:
        yield Provider(ledger)
    finally:
        await ledger.close()


async def serve(host: str, port: int, data_dir: Path | str, traces_url: str | None = None) -> None:
    """Serve until SIGINT or SIGTERM; with ``traces_url`` (the marketplace's gateway), the
    spans of requests that came with a sampled trace context are sent there."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    shipper = None
    async with open_provider(database_path(data_dir)) as provider, _client() as http:
        app = create_app(provider)
        if traces_url:
            tracing.configure_tracing(PROCESS, PROCESS, ratio=0.0)
            app = TracedRequests(app)
            # Unsigned: the simulator holds no key of the marketplace's, so only a gateway on
            # its machine takes its spans (and any OTLP collector the variables name).
            shipper = SpanShipper(to_gateway(http, traces_url, None))
            shipper.start()
        server = HttpServer(app, host, port)
        await server.start()
        _log.info("payment provider listening", url=server.url, data_dir=str(data_dir))
        try:
            await stop.wait()
        finally:
            await server.stop()
            if shipper is not None:
                await shipper.stop()
    _log.info("payment provider stopped")


@contextlib.asynccontextmanager
async def _client() -> AsyncIterator[HttpClient]:
    http = HttpClient(Resilience({"traces": CallPolicy(timeout=2.0, attempts=1)}))
    try:
        yield http
    finally:
        await http.close()


class TracedRequests:
    """A server span for each request that carries a trace context (the marketplace's
    calls); the simulator never starts a trace of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parent = tracing.extract(headers)
        if parent is None:
            await self.app(scope, receive, send)
            return
        name = f"{scope['method']} {scope['path']}"
        with tracing.span(name, SpanKind.SERVER, {"url.path": scope["path"]}, PROCESS, parent):
            await self.app(scope, receive, send)


def run(host: str, port: int, data_dir: Path | str, traces_url: str | None = None) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(host, port, data_dir, traces_url))
    else:
        uvloop.run(serve(host, port, data_dir, traces_url))
