"""The platform's client for the mail server: how a service sends e-mail.

A service never opens an SMTP connection of its own: it composes a message and hands it to
this client, and each send goes through the ``smtp`` dependency's policy pipeline (deadline,
breaker, bulkhead; :mod:`colony.platform.resilience`), so a mail server that is down makes
sends fail at once instead of each waiting out a connection of its own. A send is made once
(``repeatable=False``): whoever sends mail keeps it and retries it durably (the notifications
dispatcher does), and a repeat here could send again a message the server had accepted just
before its answer was lost.

Every failure is one error, :class:`SendFailed`, saying why and naming the server. What counts
against the server's breaker is the server failing (no connection, no answer, a dropped or
temporary-error session), not the server refusing one message for good (a 5xx such as an
unknown recipient): that server is working, and a few bad addresses must not hold back
everyone else's mail.
"""

from __future__ import annotations

import asyncio
import contextlib
from email.message import Message

import aiosmtplib
from opentelemetry.trace import SpanKind

from colony.platform.errors import ColonyError
from colony.platform.observability import tracing
from colony.platform.resilience import Dependency, Resilience

DEPENDENCY = "smtp"
# aiosmtplib would otherwise ask the resolver for this host's FQDN, which can stall.
LOCAL_HOSTNAME = "colony.local"
_FAILURES = (aiosmtplib.SMTPException, OSError, TimeoutError)
_MESSAGE_REFUSALS = (
    aiosmtplib.SMTPSenderRefused,
    aiosmtplib.SMTPRecipientRefused,
    aiosmtplib.SMTPDataError,
)


class SendFailed(Exception):
    """The message was not accepted, or it is not known whether it was; ``refused`` when the
    server answered and declined it for good (a 5xx), so sending it again will not help."""

    def __init__(self, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused


class SmtpClient:
    """Sends over up to ``connections`` SMTP connections kept open between messages: opening
    one per message (TCP, greeting, EHLO) cost more than the message itself at checkout
    rates. A kept connection the server has since closed is replaced and the message sent
    again on the new one, once, within the same call: the stale connection is the client's
    problem, not a repeat of the call.

    A send waits for one of its connections before the pipeline starts timing it, so a queue
    for a connection is not mistaken for a slow server. A refused connection counts as one
    failure of the server (rather than :class:`~colony.platform.resilience.NotSent`, which
    rests an endpoint at the first refusal to send elsewhere): there is one mail server and
    nowhere else to send, and its breaker opens after the dependency's few failures in a row."""

    def __init__(self, resilience: Resilience, host: str, port: int, connections: int = 4) -> None:
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.dependency: Dependency = resilience.dependency(DEPENDENCY, [self.address])
        if self.address not in self.dependency.endpoints:
            raise ValueError(f"{DEPENDENCY} is at {self.dependency.endpoints}, not {self.address}")
        self._span_attributes = {"server.address": self.address}
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(connections)

    async def send(self, message: Message) -> None:
        """Send ``message`` to the recipients in its headers, or raise :class:`SendFailed`."""

        async def attempt(endpoint: str, seconds: float) -> aiosmtplib.SMTPException | None:
            return await self._deliver(message, seconds)

        async with self._slots:
            with tracing.child("smtp send", SpanKind.CLIENT, self._span_attributes):
                try:
                    refusal = await self.dependency.call(attempt, repeatable=False)
                except ColonyError as exc:
                    # Not sent: the breaker is open, the bulkhead full, or no time was left.
                    raise SendFailed(f"SMTP {self.address}: {exc.detail}") from None
                except TimeoutError as exc:
                    reason = str(exc) or f"no answer within {self.dependency.policy.timeout:g} s"
                    raise SendFailed(f"SMTP {self.address}: {reason}") from None
                except ConnectionError as exc:
                    raise SendFailed(f"SMTP {self.address}: {exc}") from None
        if refusal is not None:
            raise SendFailed(f"SMTP {self.address}: {_describe(refusal)}", refused=True)

    async def close(self) -> None:
        while self._idle:
            client = self._idle.pop()
            with contextlib.suppress(*_FAILURES):
                await client.quit()

    async def _deliver(self, message: Message, seconds: float) -> aiosmtplib.SMTPException | None:
        """One call: on a kept connection, else (or if it went stale) on a new one. Returns
        the server's refusal of this message; raises :class:`ConnectionError` when the server
        failed. A connection is closed on anything else that stops it mid-session (the
        pipeline's timeout, a stop), since its state is then unknown."""
        client = self._idle.pop() if self._idle else None
        if client is not None:
            try:
                await client.send_message(message)
            except _FAILURES:
                client.close()  # gone stale while idle: try once on a fresh one
            except BaseException:
                client.close()
                raise
            else:
                self._idle.append(client)
                return None
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, timeout=seconds, local_hostname=LOCAL_HOSTNAME
        )
        try:
            await client.connect()
            await client.send_message(message)
        except _FAILURES as exc:
            client.close()
            if isinstance(exc, aiosmtplib.SMTPException) and _refused(exc):
                return exc
            raise _ServerFailed(_describe(exc)) from exc
        except BaseException:
            client.close()
            raise
        self._idle.append(client)
        return None


class _ServerFailed(ConnectionError):
    """What the pipeline counts against the server's breaker."""


def _refused(exc: aiosmtplib.SMTPException) -> bool:
    """The server refused this message's sender, recipients or content for good (5xx): an
    answer about the message, not a failing session (a greeting or EHLO refused is that)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(r.code >= 500 for r in exc.recipients)
    return isinstance(exc, _MESSAGE_REFUSALS) and exc.code >= 500


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"
