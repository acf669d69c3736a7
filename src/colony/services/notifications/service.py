"""Notifications' service layer: the implementation of :class:`NotificationsApi`.

Handlers run inside the consumer's transaction, so they do no network I/O: they write the
in-app notifications and queue e-mails and webhooks as ``deliveries`` rows in that same
transaction, and wake the :class:`Dispatcher` once it commits. Every row's id derives from
what happened (the event's natural identity, the channel and the recipient), and inserts
ignore a row that already exists: the inbox stops a redelivered message, this stops the same
event arriving under another message id.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec

from colony.platform.clock import utc_now_iso
from colony.platform.errors import InvalidInput, NotFound
from colony.platform.messaging.consumer import Handler
from colony.platform.outbound_addresses import ForbiddenDestination, OutboundGuard
from colony.platform.runtime import ServiceContext
from colony.platform.security import Actor
from colony.platform.smtp import SmtpClient
from colony.platform.storage import Row
from colony.services.delivery.api import ShipmentStatusChanged
from colony.services.identity.api import AccountRegistered
from colony.services.notifications import messages, webhooks
from colony.services.notifications.api import (
    Notification,
    NotificationFeed,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookUrl,
)
from colony.services.notifications.dispatcher import DeliveryGaveUp, Dispatcher
from colony.services.notifications.messages import Note, WebhookEvent
from colony.services.orders.api import OrderCancelled, OrderCompleted, OrderRefunded

_NOTIFICATION = "id, user_id, kind, title, body, link, created_at, read_at"
_DELIVERY = "id, recipient_id, event_type, target, status, attempts, last_error, updated_at"
_encode = msgspec.json.Encoder().encode


def derived_id(*parts: str) -> str:
    """A stable id for a row that must exist once: the same parts, the same id."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _notification(row: Row) -> Notification:
    return Notification(
        id=row["id"],
        user_id=row["user_id"],
        kind=row["kind"],
        title=row["title"],
        body=row["body"],
        link=row["link"],
        created_at=row["created_at"],
        read=row["read_at"] is not None,
    )


def _endpoint(row: Row) -> WebhookEndpoint:
    return WebhookEndpoint(
        seller_id=row["seller_id"],
        url=row["url"],
        secret=row["secret"],
        created_at=row["created_at"],
    )


def _delivery(row: Row) -> WebhookDelivery:
    return WebhookDelivery(
        id=row["id"],
        seller_id=row["recipient_id"],
        event=row["event_type"],
        url=row["target"] or "",
        status=row["status"],
        attempts=row["attempts"],
        last_error=webhooks.shown_error(row["last_error"]),
        updated_at=row["updated_at"],
    )


def _limit(limit: int) -> None:
    # The HTTP binding validates this from the contract; an in-process caller reaches us as is.
    if not 1 <= limit <= 100:
        raise InvalidInput("The limit must be between 1 and 100.", field="limit")


def _valid_url(url: str, guard: OutboundGuard) -> str:
    try:
        msgspec.convert(url, WebhookUrl)
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except (msgspec.ValidationError, ValueError):
        raise InvalidInput("The webhook URL must be an http or https URL.", field="url") from None
    if not parts.hostname:
        raise InvalidInput("The webhook URL has no host.", field="url")
    # Checked again at each delivery, on the addresses the name then resolves to: here it
    # can only be judged as written, and a name may point anywhere later.
    why = guard.refusal(url)
    if why is not None:
        raise ForbiddenDestination(
            f"The webhook URL {why}: webhooks go only to addresses on the public internet.",
            field="url",
        )
    return url


class NotificationsService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.db = ctx.db
        self.settings = ctx.settings
        # The service owns its SMTP client (its kept connections); HTTP is the runtime's.
        self.smtp = SmtpClient(ctx.resilience, ctx.settings.smtp_host, ctx.settings.smtp_port)
        self.dispatcher = Dispatcher(ctx.db, ctx.settings, ctx.name, http=ctx.http, smtp=self.smtp)

    async def start_workers(self) -> None:
        # Only when the runtime runs in the background: a one-off command (``colony dlq
        # replay``, ``colony seed``) leaves sending to the running marketplace, whose dispatcher
        # finds re-queued rows on its next poll.
        self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.smtp.close()

    def subscriptions(self) -> dict[type[Any], Handler]:
        return {
            AccountRegistered: self.on_account_registered,
            OrderCompleted: self.on_order_completed,
            OrderCancelled: self.on_order_cancelled,
            OrderRefunded: self.on_order_refunded,
            ShipmentStatusChanged: self.on_shipment_status_changed,
            DeliveryGaveUp: self.on_delivery_replayed,
        }

    # Handlers

    async def on_account_registered(self, event: AccountRegistered) -> None:
        await self.db.execute(
            "INSERT INTO recipients (account_id, email, name, role, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET"
            " email = excluded.email, name = excluded.name, role = excluded.role,"
            " updated_at = excluded.updated_at",
            (event.account_id, event.email, event.name, event.role, utc_now_iso()),
        )
        # E-mails that arrived before their recipient did go out now.
        woken = await self.db.execute(
            "UPDATE deliveries SET awaiting_recipient = 0, next_attempt_at = ?"
            " WHERE recipient_id = ? AND channel = 'email' AND status = 'pending'"
            " AND awaiting_recipient = 1",
            (time.time(), event.account_id),
        )
        if woken:
            self.db.after_commit(self.dispatcher.wake)

    async def on_order_completed(self, event: OrderCompleted) -> None:
        await self._notify(messages.order_completed(event))

    async def on_order_cancelled(self, event: OrderCancelled) -> None:
        await self._notify(messages.order_cancelled(event))

    async def on_order_refunded(self, event: OrderRefunded) -> None:
        await self._notify(messages.order_refunded(event))

    async def on_shipment_status_changed(self, event: ShipmentStatusChanged) -> None:
        await self._notify(messages.shipment_status_changed(event))

    async def on_delivery_replayed(self, event: DeliveryGaveUp) -> None:
        """A dead delivery's dead letter replayed: back in the queue with a fresh budget."""
        requeued = await self.db.execute(
            "UPDATE deliveries SET status = 'pending', round_base = attempts,"
            " awaiting_recipient = 0, next_attempt_at = ?, updated_at = ?"
            " WHERE id = ? AND status = 'dead'",
            (time.time(), utc_now_iso(), event.delivery_id),
        )
        if requeued:
            self.db.after_commit(self.dispatcher.wake)

    async def _notify(self, notes: list[Note | WebhookEvent]) -> None:
        queued = False
        now, due = utc_now_iso(), time.time()
        for item in notes:
            if isinstance(item, WebhookEvent):
                queued |= await self._queue_webhook(item, now, due)
                continue
            await self.db.execute(
                "INSERT INTO notifications (id, event_key, user_id, kind, title, body, link,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (
                    derived_id(item.key, "feed", item.user_id),
                    item.key,
                    item.user_id,
                    item.kind,
                    item.title,
                    item.body,
                    item.link,
                    now,
                ),
            )
            if item.email:
                queued |= await self._queue(
                    item.key,
                    "email",
                    item.user_id,
                    item.kind,
                    item.title,
                    messages.mail_body(item, self.dispatcher.site_url).encode(),
                    None,
                    now,
                    due,
                )
        if queued:
            self.db.after_commit(self.dispatcher.wake)

    async def _queue_webhook(self, webhook: WebhookEvent, now: str, due: float) -> bool:
        seller_id = webhook.note.user_id
        endpoint = await self.db.fetch_one(
            "SELECT url FROM webhook_endpoints WHERE seller_id = ?", (seller_id,)
        )
        if endpoint is None:
            return False  # no endpoint yet: webhooks are not sent for what came before it
        delivery_id = derived_id(webhook.note.key, "webhook", seller_id)
        body = _encode(
            {"id": delivery_id, "type": webhook.type, "created_at": now, "data": webhook.data}
        )
        return await self._queue(
            webhook.note.key,
            "webhook",
            seller_id,
            webhook.type,
            None,
            body,
            endpoint["url"],
            now,
            due,
            delivery_id,
        )

    async def _queue(
        self,
        key: str,
        channel: str,
        recipient_id: str,
        event_type: str,
        subject: str | None,
        payload: bytes,
        target: str | None,
        now: str,
        due: float,
        delivery_id: str | None = None,
    ) -> bool:
        inserted = await self.db.execute(
            "INSERT INTO deliveries (id, event_key, channel, recipient_id, event_type, subject,"
            " payload, target, status, next_attempt_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                delivery_id or derived_id(key, channel, recipient_id),
                key,
                channel,
                recipient_id,
                event_type,
                subject,
                payload,
                target,
                due,
                now,
                now,
            ),
        )
        return inserted > 0

    # The API

    async def feed(self, actor: Actor, limit: int = 20) -> NotificationFeed:
        _limit(limit)
        rows = await self.db.fetch_all(
            f"SELECT {_NOTIFICATION} FROM notifications WHERE user_id = ?"
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            (actor.id, limit),
        )
        unread = await self.db.fetch_value(
            "SELECT COUNT(*) FROM notifications WHERE user_id = ? AND read_at IS NULL",
            (actor.id,),
        )
        return NotificationFeed(items=[_notification(row) for row in rows], unread=unread)

    async def mark_read(self, actor: Actor, notification_id: str) -> Notification:
        async with self.db.transaction():
            row = await self.db.fetch_one(
                f"SELECT {_NOTIFICATION} FROM notifications WHERE id = ?", (notification_id,)
            )
            if row is None:
                raise NotFound("No such notification.")
            actor.require_owner(row["user_id"], "notification")
            await self.db.execute(
                "UPDATE notifications SET read_at = COALESCE(read_at, ?) WHERE id = ?",
                (utc_now_iso(), notification_id),
            )
            row = await self.db.fetch_one(
                f"SELECT {_NOTIFICATION} FROM notifications WHERE id = ?", (notification_id,)
            )
        return _notification(row)

    async def set_webhook(self, actor: Actor, url: str) -> WebhookEndpoint:
        actor.require("seller")
        url = _valid_url(url, self.dispatcher.guard)
        now = utc_now_iso()
        async with self.db.transaction():
            # The secret is made once and kept across URL changes: receivers keep verifying.
            await self.db.execute(
                "INSERT INTO webhook_endpoints (seller_id, url, secret, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (seller_id) DO UPDATE SET"
                " url = excluded.url, updated_at = excluded.updated_at",
                (actor.id, url, secrets.token_hex(32), now, now),
            )
            row = await self.db.fetch_one(
                "SELECT * FROM webhook_endpoints WHERE seller_id = ?", (actor.id,)
            )
        return _endpoint(row)

    async def get_webhook(self, actor: Actor) -> WebhookEndpoint:
        actor.require("seller")
        row = await self.db.fetch_one(
            "SELECT * FROM webhook_endpoints WHERE seller_id = ?", (actor.id,)
        )
        if row is None:
            raise NotFound("No webhook is set.")
        return _endpoint(row)

    async def webhook_deliveries(self, actor: Actor, limit: int = 20) -> list[WebhookDelivery]:
        actor.require("seller")
        _limit(limit)
        rows = await self.db.fetch_all(
            f"SELECT {_DELIVERY} FROM deliveries WHERE recipient_id = ? AND channel = 'webhook'"
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            (actor.id, limit),
        )
        return [_delivery(row) for row in rows]
