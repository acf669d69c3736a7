"""Sellers' webhooks: signing, verifying, and posting one delivery.

The body is ``{"id", "type", "created_at", "data"}``, fixed when the delivery is queued, so
every retry posts the same bytes. ``X-Colony-Signature: t=<unix seconds>,v1=<hex>`` where
``<hex>`` is HMAC-SHA256, keyed with the endpoint's secret (its UTF-8 bytes), of
``f"{t}.{body}"``: the timestamp is signed too, so a receiver can refuse old replays.

Delivery is at-least-once: a retry after a timeout, or a crash between the receiver's 2xx and
our marking the delivery done, posts it again. ``X-Colony-Event-Id`` (the body's ``id``) is
the same on every try; receivers deduplicate on it.

A post goes through the platform's HTTP client as the dependency ``webhooks:<origin>``, one
per seller's origin, so an endpoint that keeps failing has its own breaker and bulkhead and
holds back no other seller's webhooks. It is made once (``repeatable=False``): the
dispatcher's durable schedule, with its backoff and dead letters, is the one layer that
retries, so an attempt here is an attempt there. (A repeat here would be harmless, since
receivers deduplicate on ``X-Colony-Event-Id``, but it would multiply the dispatcher's
attempts behind its back.)

The URL is the seller's, so it is sent with the platform's guard
(:mod:`colony.platform.outbound_addresses`): a host inside our network, written so or
resolving so, is refused and nothing is posted. What the seller is told of a failed try is
"failed", and the HTTP status when their receiver answered one: never why a connection could
not be made, which would tell them what listens where inside. The reason goes to the logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from urllib.parse import unquote, urlsplit

from colony.platform.errors import ColonyError
from colony.platform.http_client import HttpClient
from colony.platform.outbound_addresses import OutboundGuard
from colony.services.notifications.api import SIGNATURE_HEADER

EVENT_ID_HEADER = "X-Colony-Event-Id"
SIGNATURE_TOLERANCE_SECONDS = 300
USER_AGENT = "Colony-Webhooks/1"
_STATUS = re.compile(r"\bHTTP ([1-5][0-9]{2})\b")


FAILED = "failed"
"""All a seller is told of a try that got no answer from their receiver."""


class DeliveryFailed(Exception):
    """One try that did not succeed: its message is the reason, for the logs and the dead
    letter; ``shown`` what the delivery records as ``last_error`` for its recipient to read
    (the reason itself unless told otherwise); ``target`` where it was sent (set by whoever
    knows it)."""

    def __init__(self, reason: str, target: str | None = None, shown: str | None = None) -> None:
        super().__init__(reason)
        self.target = target
        self.shown = reason if shown is None else shown


def failed_with_status(status: int) -> str:
    return f"{FAILED} (HTTP {status})"


def shown_error(recorded: str | None) -> str | None:
    """What a seller may read of a recorded ``last_error``: ``failed``, with the HTTP status
    if there was one, and nothing else, whatever an older version of us recorded."""
    if recorded is None:
        return None
    answered = _STATUS.search(recorded)
    return failed_with_status(int(answered.group(1))) if answered else FAILED


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
    http: HttpClient,
    url: str,
    secret: str,
    event_id: str,
    body: bytes,
    guard: OutboundGuard,
) -> None:
    """One try: a 2xx within the ``webhooks`` policy's timeout succeeds; anything else, an
    open circuit for the seller's endpoint or a destination ``guard`` refuses included, raises
    :class:`DeliveryFailed`, for the dispatcher to try again on its schedule. Redirects are not
    followed: a moved endpoint is the seller's to update, and following one would post the
    body where the seller never said, past the guard."""
    origin, path, authorization = _split(url)
    dependency = f"webhooks:{origin}"
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        SIGNATURE_HEADER: signature_header(secret, body),
        EVENT_ID_HEADER: event_id,
    }
    if authorization is not None:
        headers["authorization"] = authorization
    try:
        response = await http.request(
            dependency,
            origin,
            "POST",
            path,
            body=body,
            headers=headers,
            repeatable=False,
            guard=guard,
        )
    except ColonyError as exc:
        # Not sent: the destination is inside, the seller's circuit is open, too many posts
        # to it at once, or nothing answered at its address.
        raise DeliveryFailed(exc.detail, shown=FAILED) from None
    except TimeoutError:
        seconds = http.resilience.policy(dependency).timeout
        raise DeliveryFailed(f"no answer within {seconds:g} s", shown=FAILED) from None
    except ConnectionError as exc:
        raise DeliveryFailed(str(exc), shown=FAILED) from None
    if not 200 <= response.status < 300:
        raise DeliveryFailed(f"HTTP {response.status}", shown=failed_with_status(response.status))


def _split(url: str) -> tuple[str, str, str | None]:
    """The URL's origin (``scheme://host[:port]``), the path and query to post to, and the
    Basic credentials written in it, if any, as a header: kept out of the origin, which names
    the dependency in logs and metrics."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    origin = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port is not None else "")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
    return origin, path, authorization
