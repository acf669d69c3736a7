"""Notifications' public interface: the only module other services may import.

Notifications consumes order and shipment events and tells people: an e-mail over SMTP, an
entry in the in-app feed, and for sellers an HMAC-signed webhook to the URL they configured.
Delivery is at-least-once and deduplicated: a redelivered event never notifies twice.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Protocol

import msgspec

from colony.platform.runtime.interface import callers, repeatable
from colony.platform.security import Actor
from colony.platform.text import NO_SPACE

WebhookUrl = Annotated[str, msgspec.Meta(pattern=rf"^https?://{NO_SPACE}{{1,2000}}$")]
SIGNATURE_HEADER = "X-Colony-Signature"
"""``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the endpoint's secret>``."""


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    user_id: str
    kind: str
    """e.g. ``order.completed``, ``shipment.delivered``."""
    title: str
    body: str
    link: str | None
    created_at: str
    read: bool


class NotificationFeed(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Notification]
    unread: int


class WebhookEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    seller_id: str
    url: str
    secret: str
    """Shown to its seller only; the key of the HMAC signature."""
    created_at: str


class WebhookDelivery(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    seller_id: str
    event: str
    url: str
    status: str
    """``pending``, ``delivered`` or ``dead`` (in the dead-letter store)."""
    attempts: int
    last_error: str | None
    updated_at: str


class NotificationsApi(Protocol):
    service_name: ClassVar[str] = "notifications"

    @callers("gateway")
    @repeatable
    async def feed(
        self, actor: Actor, limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    ) -> NotificationFeed:
        """The caller's in-app notifications, newest first."""
        ...

    @callers("gateway")
    @repeatable
    async def mark_read(self, actor: Actor, notification_id: str) -> Notification: ...

    @callers("gateway")
    @repeatable
    async def set_webhook(self, actor: Actor, url: WebhookUrl) -> WebhookEndpoint:
        """A seller's webhook URL (replacing any before it; the secret is kept)."""
        ...

    @callers("gateway")
    @repeatable
    async def get_webhook(self, actor: Actor) -> WebhookEndpoint:
        """The seller's webhook (``NotFound`` when none is set)."""
        ...

    @callers("gateway")
    @repeatable
    async def webhook_deliveries(
        self, actor: Actor, limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    ) -> list[WebhookDelivery]: ...
