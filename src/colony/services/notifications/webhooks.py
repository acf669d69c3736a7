"""Sellers' webhooks: signing, verifying, and posting one delivery.

The body is ``{"id", "type", "created_at", "data"}``, fixed when the delivery is queued, so
every retry posts the same bytes. ``X-Colony-Signature: t=<unix seconds>,v1=<hex>`` where
``<hex>`` is HMAC-SHA256, keyed with the endpoint's secret (its UTF-8 bytes), of
``f"{t}.{body}"``: the timestamp is signed too, so a receiver can refuse old replays.

Delivery is at-least-once: a retry after a timeout, or a crash between the receiver's 2xx and
our marking the delivery done, posts it again. ``X-Colony-Event-Id`` (the body's ``id``) is
the same on every try; receivers deduplicate on it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import aiohttp

from colony.services.notifications.api import SIGNATURE_HEADER

EVENT_ID_HEADER = "X-Colony-Event-Id"
TIMEOUT_SECONDS = 5.0
SIGNATURE_TOLERANCE_SECONDS = 300
USER_AGENT = "Colony-Webhooks/1"


class DeliveryFailed(Exception):
    """One try that did not succeed; its message is what the delivery records as last_error,
    ``target`` where it was sent (set by whoever knows it)."""

    def __init__(self, reason: str, target: str | None = None) -> None:
        super().__init__(reason)
        self.target = target


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(secret, t, body)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    now: float | None = None,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: the signature matches and its timestamp is recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    return hmac.compare_digest(parts.get("v1", ""), signature(secret, timestamp, body))


async def post(
    session: aiohttp.ClientSession, url: str, secret: str, event_id: str, body: bytes
) -> None:
    """One try: a 2xx within :data:`TIMEOUT_SECONDS` succeeds; anything else raises
    :class:`DeliveryFailed`. Redirects are not followed: a moved endpoint is the seller's to
    update, and following one would post the body where the seller never said."""
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        SIGNATURE_HEADER: signature_header(secret, body),
        EVENT_ID_HEADER: event_id,
    }
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
        ) as response:
            status = response.status
    except TimeoutError:
        raise DeliveryFailed(f"no answer within {TIMEOUT_SECONDS:g} s") from None
    except aiohttp.ClientError as exc:
        raise DeliveryFailed(f"{exc.__class__.__name__}: {exc}") from None
    if not 200 <= status < 300:
        raise DeliveryFailed(f"HTTP {status}")
