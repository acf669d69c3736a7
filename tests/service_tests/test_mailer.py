"""The notifications' mailer keeps SMTP connections open, and replaces one the server closed."""

from __future__ import annotations

import httpx
import pytest

from colony.mail_sink.server import running_mail_sink
from colony.platform.web.server import free_port
from colony.services.notifications.mailer import Mailer, compose
from colony.services.notifications.webhooks import DeliveryFailed


def message(n: int):
    return compose(f"d{n}", "shop@x.test", "Ada", "ada@example.com", f"Mail {n}", "Hello")


async def subjects(url: str) -> list[str]:
    async with httpx.AsyncClient(base_url=url) as http:
        return sorted(m["subject"] for m in (await http.get("/messages")).json()["items"])


async def test_messages_share_a_connection_and_survive_a_server_restart(tmp_path):
    smtp_port, http_port = free_port(), free_port()
    mailer = Mailer("127.0.0.1", smtp_port)
    try:
        async with running_mail_sink(smtp_port, http_port, tmp_path) as sink:
            await mailer.send(message(1))
            await mailer.send(message(2))
            assert len(mailer._idle) == 1  # the second message reused the first's connection
            assert await subjects(sink.url) == ["Mail 1", "Mail 2"]
        # The server restarted while the connection sat idle: the message goes on a fresh one.
        async with running_mail_sink(smtp_port, http_port, tmp_path) as sink:
            await mailer.send(message(3))
            assert await subjects(sink.url) == ["Mail 1", "Mail 2", "Mail 3"]
        # With the server gone, the failure is the dispatcher's to retry.
        with pytest.raises(DeliveryFailed):
            await mailer.send(message(4))
    finally:
        await mailer.close()
