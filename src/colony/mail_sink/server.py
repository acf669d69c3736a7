"""Running the sink: its SMTP and HTTP servers on the running loop, over one mailbox."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from colony.mail_sink.app import create_app
from colony.mail_sink.smtp import SmtpServer
from colony.mail_sink.store import MailStore, database_path
from colony.platform.logging import get_logger
from colony.platform.web.server import HttpServer, ensure_port_free

DEFAULT_SMTP_PORT = 8025
DEFAULT_HTTP_PORT = 8026
_log = get_logger("mail-sink")


@dataclass
class MailSink:
    store: MailStore
    smtp: SmtpServer
    http: HttpServer

    @property
    def smtp_port(self) -> int:
        return self.smtp.port

    @property
    def url(self) -> str:
        """Where the HTTP listing answers."""
        return self.http.url


@contextlib.asynccontextmanager
async def running_mail_sink(
    smtp_port: int = DEFAULT_SMTP_PORT,
    http_port: int = DEFAULT_HTTP_PORT,
    data_dir: Path | str = ":memory:",
    host: str = "127.0.0.1",
) -> AsyncIterator[MailSink]:
    """The sink on this loop until the block ends: messages kept in ``data_dir`` (a SQLite
    file, or ``":memory:"``)."""
    # Both ports are checked before anything binds, so a taken port fails without side effects.
    ensure_port_free(host, smtp_port)
    store = MailStore(database_path(data_dir))
    await store.open()
    smtp = SmtpServer(store, host, smtp_port)
    http = HttpServer(create_app(store), host, http_port)
    try:
        await smtp.start()
        try:
            await http.start()
            try:
                _log.info("mail sink listening", smtp=f"{host}:{smtp.port}", http=http.url)
                yield MailSink(store, smtp, http)
            finally:
                await http.stop()
        finally:
            await smtp.stop()
    finally:
        await store.close()


async def serve(host: str, smtp_port: int, http_port: int, data_dir: Path | str) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_mail_sink(smtp_port, http_port, data_dir, host):
        await stop.wait()
    _log.info("mail sink stopped")


def run(host: str, smtp_port: int, http_port: int, data_dir: Path | str) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(host, smtp_port, http_port, data_dir))
    else:
        uvloop.run(serve(host, smtp_port, http_port, data_dir))
