"""The dispatcher: sends the e-mails and webhooks the handlers queued, durably.

Rows in ``deliveries`` are the queue. The dispatcher claims due rows by pushing their
``next_attempt_at`` a lease ahead (so another replica's dispatcher on the same database leaves
them alone), sends each, then records the outcome: ``delivered``; or another attempt later,
after an exponential backoff with jitter; or, once the budget is spent, ``dead`` and a row in
the platform's ``dead_letters`` table, where ``colony dlq list`` shows it and ``colony dlq
replay`` re-queues it (see :class:`DeliveryGaveUp`). A crash between a send and its record
leaves the row pending; it is sent again once the lease lapses: at-least-once (receivers
deduplicate webhooks on ``X-Colony-Event-Id``, mail systems on the ``Message-ID``).

Every send goes out through the platform's clients (:class:`SmtpClient`, :class:`HttpClient`)
and its dependency's policies, once: the durable schedule here is the one layer that retries.
An open circuit (the mail server or a seller's endpoint kept failing) is a failed attempt like
any other, and the row waits for its next one; nothing is dropped. A webhook goes out only to
an address on the public internet (or one ``internal_hosts_allowed`` names); its row records
what its seller may read of a failure (:attr:`DeliveryFailed.shown`), the logs and the dead
letter why.

It wakes when a handler's transaction commits (``db.after_commit``), when a send finishes, at
the next due time, and on a slow poll for rows other processes changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import ClassVar

import msgspec

from colony.platform.clock import utc_now_iso
from colony.platform.config import Settings
from colony.platform.http_client import HttpClient
from colony.platform.ids import new_id
from colony.platform.logging import get_logger
from colony.platform.messaging import Event, Message
from colony.platform.messaging.consumer import record_dead_letter
from colony.platform.outbound_addresses import OutboundGuard
from colony.platform.smtp import SendFailed, SmtpClient
from colony.platform.storage import Database, Row
from colony.platform.tasks import cancelled
from colony.services.notifications import mailer, messages, webhooks
from colony.services.notifications.webhooks import DeliveryFailed

_COLUMNS = "id, channel, recipient_id, event_type, subject, payload, target"


class DeliveryGaveUp(Event, frozen=True, kw_only=True):
    """What a dead delivery's dead letter carries. Never published: replaying the dead letter
    (``colony dlq replay``, i.e. ``Consumer.replay``) applies it to notifications' own
    consumer, whose handler puts the delivery back in the queue with a fresh budget."""

    topic: ClassVar[str] = "notifications.delivery.gave_up"
    delivery_id: str
    channel: str
    recipient_id: str
    event: str
    target: str | None
    error: str


def backoff(failures: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try after ``failures`` in a row: doubling from ``base`` up to
    ``cap``, of which a random half ("equal jitter"), so receivers that failed together are not
    retried in lockstep, yet the wait still grows."""
    ceiling = min(cap, base * 2.0 ** max(failures - 1, 0))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


class Dispatcher:
    # Attributes rather than settings: tests shrink them on a running service.
    backoff_base: float = 5.0
    backoff_cap: float = 3600.0
    mail_attempts: int = 8
    recipient_wait: float = 60.0
    """How long an e-mail whose recipient is unknown waits before looking again (it is also
    woken when the recipient's AccountRegistered arrives)."""
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    concurrency: int = 16

    def __init__(
        self,
        db: Database,
        settings: Settings,
        consumer: str,
        *,
        http: HttpClient,
        smtp: SmtpClient,
    ) -> None:
        """``http`` and ``smtp`` are the platform's clients, owned by whoever built them: the
        dispatcher sends through them and never closes them."""
        self.db = db
        self.settings = settings
        self.consumer = consumer
        self.http = http
        self.smtp = smtp
        self.site_url = f"http://{settings.host}:{settings.port}"
        self.guard = OutboundGuard.allowing(settings.internal_hosts_allowed)
        """Where sellers' webhooks may go: their URLs are theirs, not the operator's."""
        self._signal = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._log = get_logger("notifications.dispatcher")

    def wake(self) -> None:
        self._signal.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notifications-dispatcher")

    async def stop(self) -> None:
        await cancelled(self._task)
        self._task = None
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)

    # The loop

    async def _run(self) -> None:
        while True:
            self._signal.clear()
            try:
                free = self.concurrency - len(self._inflight)
                if free > 0:
                    for row in await self._claim(free):
                        self._spawn(row)
                delay = await self._until_next_due(full=len(self._inflight) >= self.concurrency)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("dispatch failed")
                delay = self.poll_seconds
            # asyncio.timeout, not wait_for (see OutboxRelay._run).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._signal.wait()

    async def _until_next_due(self, full: bool) -> float:
        if full:
            return self.poll_seconds  # a finishing send wakes the loop
        due: float | None = await self.db.fetch_value(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'"
        )
        if due is None:
            return self.poll_seconds
        return min(self.poll_seconds, max(0.001, due - time.time()))

    async def _claim(self, limit: int) -> list[Row]:
        now = time.time()
        # A read first, so an idle dispatcher never takes the write lock.
        if not await self.db.fetch_value(
            "SELECT 1 FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ? LIMIT 1",
            (now,),
        ):
            return []
        async with self.db.transaction():
            rows = await self.db.fetch_all(
                f"SELECT {_COLUMNS} FROM deliveries WHERE status = 'pending'"
                " AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
                (now, limit),
            )
            for row in rows:
                await self.db.execute(
                    "UPDATE deliveries SET next_attempt_at = ? WHERE id = ?",
                    (now + self.lease_seconds, row["id"]),
                )
        return rows

    def _spawn(self, row: Row) -> None:
        task = asyncio.create_task(self._attempt(row), name=f"delivery-{row['id']}")
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # Recording the outcome failed (the database?): the lease lapses and it is retried.
            self._log.error("delivery attempt failed to record", error=repr(error))
        self.wake()

    # One delivery

    async def _attempt(self, row: Row) -> None:
        try:
            if row["channel"] == "email":
                target = await self._send_mail(row)
                if target is None:
                    return
            else:
                target = await self._send_webhook(row)
        except asyncio.CancelledError:
            # Stopping mid-send: give the row back rather than leave it leased for a minute.
            await self.db.execute(
                "UPDATE deliveries SET next_attempt_at = ? WHERE id = ? AND status = 'pending'",
                (time.time(), row["id"]),
            )
            raise
        except DeliveryFailed as exc:
            await self._failed(row, str(exc), exc.target, exc.shown)
        except Exception as exc:
            self._log.exception("delivery crashed", delivery_id=row["id"])
            reason = f"{exc.__class__.__name__}: {exc}"
            shown = webhooks.FAILED if row["channel"] == "webhook" else reason
            await self._failed(row, reason, None, shown)
        else:
            await self._delivered(row, target)

    async def _send_mail(self, row: Row) -> str | None:
        """The address it went to; None when the recipient is not known yet (re-queued)."""
        recipient = await self.db.fetch_one(
            "SELECT email, name FROM recipients WHERE account_id = ?", (row["recipient_id"],)
        )
        if recipient is None:
            await self._await_recipient(row)
            return None
        message = mailer.compose(
            row["id"],
            self.settings.mail_from,
            recipient["name"],
            recipient["email"],
            row["subject"] or "",
            messages.greeted(recipient["name"], bytes(row["payload"]).decode()),
        )
        try:
            await self.smtp.send(message)
        except SendFailed as exc:
            raise DeliveryFailed(str(exc), recipient["email"]) from None
        return str(recipient["email"])

    async def _await_recipient(self, row: Row) -> None:
        # Rechecked under the write lock: the AccountRegistered handler may have committed
        # since the read above, and its wake-up would otherwise be lost until recipient_wait.
        async with self.db.transaction():
            known = await self.db.fetch_value(
                "SELECT 1 FROM recipients WHERE account_id = ?", (row["recipient_id"],)
            )
            wait = 0.0 if known else self.recipient_wait
            await self.db.execute(
                "UPDATE deliveries SET awaiting_recipient = ?, next_attempt_at = ?,"
                " last_error = ?, updated_at = ? WHERE id = ? AND status = 'pending'",
                (
                    0 if known else 1,
                    time.time() + wait,
                    None if known else "the recipient's address is not known yet",
                    utc_now_iso(),
                    row["id"],
                ),
            )
        if known:
            self.wake()

    async def _send_webhook(self, row: Row) -> str:
        endpoint = await self.db.fetch_one(
            "SELECT url, secret FROM webhook_endpoints WHERE seller_id = ?",
            (row["recipient_id"],),
        )
        if endpoint is None:
            raise DeliveryFailed("the seller has no webhook endpoint", shown=webhooks.FAILED)
        try:
            await webhooks.post(
                self.http,
                endpoint["url"],
                endpoint["secret"],
                row["id"],
                bytes(row["payload"]),
                self.guard,
            )
        except DeliveryFailed as exc:
            exc.target = endpoint["url"]
            raise
        return str(endpoint["url"])

    async def _delivered(self, row: Row, target: str) -> None:
        now = utc_now_iso()
        await self.db.execute(
            "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1,"
            " awaiting_recipient = 0, target = ?, delivered_at = ?, updated_at = ?"
            " WHERE id = ? AND status = 'pending'",
            (target, now, now, row["id"]),
        )
        self._log.debug("delivered", delivery_id=row["id"], channel=row["channel"], to=target)

    async def _failed(self, row: Row, error: str, target: str | None, shown: str) -> None:
        """``error`` is why, for the logs and a dead letter; ``shown`` what the row records
        for its recipient to read."""
        budget = (
            self.settings.webhook_attempts if row["channel"] == "webhook" else self.mail_attempts
        )
        async with self.db.transaction():
            current = await self.db.fetch_one(
                "SELECT status, attempts, round_base, target FROM deliveries WHERE id = ?",
                (row["id"],),
            )
            if current is None or current["status"] != "pending":
                return
            attempts = current["attempts"] + 1
            failures = attempts - current["round_base"]
            target = target or current["target"]
            now = utc_now_iso()
            if failures < budget:
                wait = backoff(failures, self.backoff_base, self.backoff_cap)
                await self.db.execute(
                    "UPDATE deliveries SET attempts = ?, next_attempt_at = ?, last_error = ?,"
                    " target = ?, updated_at = ? WHERE id = ?",
                    (attempts, time.time() + wait, shown, target, now, row["id"]),
                )
                self._log.info(
                    "delivery failed; will retry",
                    delivery_id=row["id"],
                    channel=row["channel"],
                    attempts=attempts,
                    retry_in=round(wait, 3),
                    error=error,
                )
                return
            await self.db.execute(
                "UPDATE deliveries SET status = 'dead', attempts = ?, last_error = ?, target = ?,"
                " updated_at = ? WHERE id = ?",
                (attempts, shown, target, now, row["id"]),
            )
            await self._dead_letter(row, error, target, failures)
        self._log.error(
            "delivery dead-lettered",
            delivery_id=row["id"],
            channel=row["channel"],
            attempts=attempts,
            error=error,
        )

    async def _dead_letter(self, row: Row, error: str, target: str | None, tries: int) -> None:
        event = DeliveryGaveUp(
            delivery_id=row["id"],
            channel=row["channel"],
            recipient_id=row["recipient_id"],
            event=row["event_type"],
            target=target,
            error=error,
        )
        # A fresh message id each time: the consumer's inbox would otherwise take a second
        # replay, after a delivery died again, for one already applied.
        message = Message(
            id=new_id(),
            topic=DeliveryGaveUp.topic,
            key=row["id"],
            payload=msgspec.Raw(msgspec.json.encode(event)),
            created_at=utc_now_iso(),
            source=self.consumer,
        )
        await record_dead_letter(self.db, self.consumer, message, error, tries)
