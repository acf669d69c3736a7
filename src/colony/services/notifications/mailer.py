"""E-mail over SMTP: one message per delivery, one connection per message."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr, formatdate

import aiosmtplib

from colony.services.notifications.webhooks import DeliveryFailed

TIMEOUT_SECONDS = 10.0
# aiosmtplib would otherwise ask the resolver for this host's FQDN, which can stall.
LOCAL_HOSTNAME = "colony.local"


def compose(
    delivery_id: str, sender: str, name: str, address: str, subject: str, text: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = formataddr((name, address))
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    # Derived from the delivery, so a message sent twice (at-least-once) carries one
    # Message-ID, and a mail system that deduplicates on it shows it once.
    message["Message-ID"] = f"<{delivery_id}@colony.example>"
    message["X-Colony-Delivery-Id"] = delivery_id
    message.set_content(text)
    return message


async def send(message: EmailMessage, host: str, port: int) -> None:
    try:
        await aiosmtplib.send(
            message,
            hostname=host,
            port=port,
            timeout=TIMEOUT_SECONDS,
            local_hostname=LOCAL_HOSTNAME,
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise DeliveryFailed(f"SMTP {host}:{port}: {exc.__class__.__name__}: {exc}") from None
