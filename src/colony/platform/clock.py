"""Time as the services see it: aware UTC timestamps, stored as ISO-8601 text."""

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
