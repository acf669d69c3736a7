"""The sink's mailbox: every accepted message in SQLite (a file under the data dir, or memory)."""

from __future__ import annotations

import email
import email.errors
import email.header
import email.policy
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import msgspec

from colony.platform.clock import utc_now_iso
from colony.platform.ids import new_id
from colony.platform.storage import Row
from colony.platform.storage.migrations import migrate
from colony.platform.storage.sqlite import SqliteDatabase

MIGRATIONS = Path(__file__).parent / "migrations"
DATABASE_FILE = "mail_sink.db"
_SUMMARY = "seq, id, received_at, mail_from, recipients, subject, message_id, size"


class MessageSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    received_at: str
    mail_from: str
    to: list[str]
    """Envelope recipients (RCPT TO), which is where the message was actually delivered."""
    subject: str
    message_id: str | None
    size: int


class StoredMessage(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    received_at: str
    peer: str
    mail_from: str
    to: list[str]
    subject: str
    message_id: str | None
    size: int
    headers: list[tuple[str, str]]
    text: str
    raw: str


def database_path(data_dir: Path | str) -> str:
    """The SQLite file in ``data_dir``; ``:memory:`` keeps the messages in memory only."""
    if str(data_dir) == ":memory:":
        return ":memory:"
    return str(Path(data_dir) / DATABASE_FILE)


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _summary_of(raw: bytes) -> tuple[str, str | None, str]:
    """Subject, Message-ID and plain text, read with the compat32 parser: the default policy's
    header registry cost several times more, which a sink receiving a mail per order at
    checkout rates paid on every message."""
    message = email.message_from_bytes(raw)
    try:
        parts = email.header.decode_header(message["subject"] or "")
        subject = str(email.header.make_header(parts))
    except (LookupError, ValueError, email.errors.HeaderParseError):
        subject = str(message["subject"] or "")
    return subject, message["message-id"], _text_of(message)


def _text_of(message: Message) -> str:
    for wanted in ("text/plain", "text/html"):
        for part in message.walk():
            if part.get_content_type() == wanted and not part.is_multipart():
                payload = part.get_payload(decode=True)
                if not isinstance(payload, bytes):
                    return ""
                charset = part.get_content_charset() or "utf-8"
                try:
                    return payload.decode(charset, "replace").replace("\r\n", "\n")
                except LookupError:
                    return payload.decode("utf-8", "replace").replace("\r\n", "\n")
    return ""


def _summary(row: Row) -> MessageSummary:
    return MessageSummary(
        id=row["id"],
        received_at=row["received_at"],
        mail_from=row["mail_from"],
        to=msgspec.json.decode(row["recipients"]),
        subject=row["subject"],
        message_id=row["message_id"],
        size=row["size"],
    )


class MailStore:
    def __init__(self, path: str) -> None:
        self.db = SqliteDatabase("mail_sink", path)

    async def open(self) -> None:
        await self.db.open()
        await migrate(self.db, "mail_sink", MIGRATIONS)

    async def close(self) -> None:
        await self.db.close()

    async def add(self, mail_from: str, recipients: list[str], raw: bytes, peer: Any) -> str:
        subject, header_message_id, text = _summary_of(raw)
        message_id = new_id()
        async with self.db.transaction():
            await self.db.execute(
                "INSERT INTO messages (id, received_at, peer, mail_from, recipients, subject,"
                " message_id, text, size, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message_id,
                    utc_now_iso(),
                    str(peer),
                    mail_from,
                    msgspec.json.encode(recipients).decode(),
                    subject,
                    header_message_id,
                    text,
                    len(raw),
                    raw,
                ),
            )
            seq = await self.db.fetch_value("SELECT seq FROM messages WHERE id = ?", (message_id,))
            await self.db.execute_many(
                "INSERT OR IGNORE INTO message_recipients (seq, address) VALUES (?, ?)",
                [(seq, address.lower()) for address in recipients],
            )
        return message_id

    async def recent(self, to: str | None = None, limit: int = 100) -> list[MessageSummary]:
        """Newest first; ``to`` matches an envelope recipient exactly, ignoring case."""
        if to:
            rows = await self.db.fetch_all(
                f"SELECT {_SUMMARY} FROM messages WHERE seq IN"
                " (SELECT seq FROM message_recipients WHERE address = ?)"
                " ORDER BY seq DESC LIMIT ?",
                (to.strip().lower(), limit),
            )
        else:
            rows = await self.db.fetch_all(
                f"SELECT {_SUMMARY} FROM messages ORDER BY seq DESC LIMIT ?", (limit,)
            )
        return [_summary(row) for row in rows]

    async def get(self, message_id: str) -> StoredMessage | None:
        row = await self.db.fetch_one("SELECT * FROM messages WHERE id = ?", (message_id,))
        if row is None:
            return None
        raw = bytes(row["raw"])
        return StoredMessage(
            id=row["id"],
            received_at=row["received_at"],
            peer=row["peer"],
            mail_from=row["mail_from"],
            to=msgspec.json.decode(row["recipients"]),
            subject=row["subject"],
            message_id=row["message_id"],
            size=row["size"],
            headers=[(name, str(value)) for name, value in _parse(raw).items()],
            text=row["text"],
            raw=raw.decode("utf-8", errors="replace"),
        )

    async def clear(self) -> int:
        async with self.db.transaction():
            await self.db.execute("DELETE FROM message_recipients")
            return await self.db.execute("DELETE FROM messages")
