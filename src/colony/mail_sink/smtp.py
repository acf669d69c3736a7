"""The SMTP side: aiosmtpd's protocol served by ``loop.create_server`` on the running loop.

No ``aiosmtpd.controller.Controller``: it runs its own loop in a thread, whereas here the sink
shares the loop of whatever embeds it (``colony up``, a test), like the HTTP servers do.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from colony.mail_sink.store import MailStore
from colony.platform.logging import get_logger

HOSTNAME = "colony-mail-sink"
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# aiosmtpd logs every connection at INFO on "mail.log"; the sink logs what it stores itself.
logging.getLogger("mail.log").setLevel(logging.WARNING)
_log = get_logger("mail-sink")


class StoringHandler:
    """aiosmtpd's handler hooks: accept every recipient, keep every message."""

    def __init__(self, store: MailStore) -> None:
        self.store = store

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="replace")
        message_id = await self.store.add(
            envelope.mail_from or "", list(envelope.rcpt_tos), raw, session.peer
        )
        _log.info("mail stored", id=message_id, to=envelope.rcpt_tos, size=len(raw))
        return f"250 Message accepted as {message_id}"


class _TrackedSMTP(SMTP):
    """Remembers live connections so stopping the sink can close them rather than leak them
    (on 3.11 ``Server.wait_closed`` does not wait for connections)."""

    def __init__(self, live: set[_TrackedSMTP], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._live = live

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._live.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._live.discard(self)
        super().connection_lost(error)


class SmtpServer:
    def __init__(self, store: MailStore, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._handler = StoringHandler(store)
        self._server: asyncio.Server | None = None
        self._live: set[_TrackedSMTP] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TrackedSMTP(
                self._live,
                self._handler,
                hostname=HOSTNAME,  # the default asks for the FQDN, which can stall on DNS
                ident="Colony mail sink",
                data_size_limit=MAX_MESSAGE_BYTES,
                timeout=60,
            ),
            self.host,
            self.port,
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for protocol in list(self._live):
            if protocol.transport is not None:
                protocol.transport.close()
        await self._server.wait_closed()
        self._server = None
