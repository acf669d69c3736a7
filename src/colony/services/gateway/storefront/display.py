"""How orders and times are written on the pages."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol, TypeVar


def order_ref(order_id: str) -> str:
    """The short reference people quote: "#3C5F8DA1".

    The same as in the e-mails and notifications. The tail of an id is its random part; the
    head is the time, alike for orders placed close together.
    """
    return "#" + order_id[-8:].upper()


def format_when(iso: str | None) -> str:
    """An ISO-8601 timestamp as "21 Nov 2026, 16:43 UTC"; text that is not one, as it is."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"  # no %-d: not on every platform


class _SellersLine(Protocol):
    @property
    def seller_id(self) -> str: ...


LineT = TypeVar("LineT", bound=_SellersLine)


def by_seller(lines: Iterable[LineT]) -> dict[str, list[LineT]]:
    """Lines grouped by seller, in the order the sellers first appear: one parcel each."""
    groups: dict[str, list[LineT]] = {}
    for line in lines:
        groups.setdefault(line.seller_id, []).append(line)
    return groups
