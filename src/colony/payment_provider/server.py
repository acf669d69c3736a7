"""Running the simulator as its own process: its books in a SQLite file, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from colony.payment_provider.app import Provider, create_app
from colony.payment_provider.ledger import Ledger
from colony.platform.logging import get_logger
from colony.platform.web.server import HttpServer

DEFAULT_PORT = 8181
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


async def serve(host: str, port: int, data_dir: Path | str) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_provider(database_path(data_dir)) as provider:
        server = HttpServer(create_app(provider), host, port)
        await server.start()
        _log.info("payment provider listening", url=server.url, data_dir=str(data_dir))
        try:
            await stop.wait()
        finally:
            await server.stop()
    _log.info("payment provider stopped")


def run(host: str, port: int, data_dir: Path | str) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(host, port, data_dir))
    else:
        uvloop.run(serve(host, port, data_dir))
