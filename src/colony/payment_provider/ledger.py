"""The provider's books: payment intents, refunds and idempotency records in SQLite.

Each command runs in one transaction that checks the idempotency record, applies the effect
and stores the response, so a key and its result are written together or not at all, and
concurrent requests with one key serialize on the write lock: one effect, the rest replays.
A refused command (404, 409) has no effect and records nothing; a retry is judged afresh.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import msgspec

from colony.payment_provider.api import (
    CARD_DECLINED,
    CARD_INSUFFICIENT_FUNDS,
    AuthorizeRequest,
    DeclineCode,
    PaymentIntent,
    Refund,
    Totals,
)
from colony.platform.clock import utc_now_iso
from colony.platform.context import IdempotencyRequest
from colony.platform.errors import Conflict, NotFound
from colony.platform.idempotency import run_once
from colony.platform.ids import new_id
from colony.platform.storage import Row
from colony.platform.storage.migrations import PLATFORM_MIGRATIONS, migrate
from colony.platform.storage.sqlite import SqliteDatabase

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T", PaymentIntent, Refund)
_encode = msgspec.json.Encoder().encode
_COLUMNS = (
    "id, status, amount, currency, captured_amount, refunded_amount, decline_code,"
    " card_last4, metadata, idempotency_key, created_at"
)
MAGIC_DECLINES: dict[str, DeclineCode] = {
    CARD_DECLINED: "card_declined",
    CARD_INSUFFICIENT_FUNDS: "insufficient_funds",
}


class Idempotency(msgspec.Struct, frozen=True):
    """One request's key, where it was sent, and the fingerprint of its body."""

    endpoint: str
    key: str
    fingerprint: str


def _intent(row: Row) -> PaymentIntent:
    return PaymentIntent(
        id=row[0],
        status=row[1],
        amount=row[2],
        currency=row[3],
        captured_amount=row[4],
        refunded_amount=row[5],
        decline_code=row[6],
        card_last4=row[7],
        metadata=msgspec.json.decode(row[8]),
        idempotency_key=row[9],
        created_at=row[10],
    )


class Ledger:
    def __init__(self, path: str) -> None:
        self.db = SqliteDatabase("payment_provider", path)

    async def open(self) -> None:
        await self.db.open()
        # The platform's tables include the idempotency keys that run_once keeps.
        await migrate(self.db, "platform", PLATFORM_MIGRATIONS)
        await migrate(self.db, "payment_provider", MIGRATIONS)

    async def close(self) -> None:
        await self.db.close()

    async def _once(
        self, idem: Idempotency, kind: type[T], effect: Callable[[], Awaitable[T]]
    ) -> tuple[T, bool]:
        """The effect's result, or the stored one if this key was seen; and whether replayed."""
        # A key is scoped to the endpoint it was sent to.
        request = IdempotencyRequest(f"{idem.endpoint} {idem.key}", idem.fingerprint)
        return await run_once(self.db, request, kind, effect)

    async def authorize(
        self, idem: Idempotency, request: AuthorizeRequest, random_decline: bool
    ) -> tuple[PaymentIntent, bool]:
        async def effect() -> PaymentIntent:
            decline = MAGIC_DECLINES.get(request.card_number)
            if decline is None and random_decline:
                decline = "generic_decline"
            now = utc_now_iso()
            intent = PaymentIntent(
                id="pi_" + new_id(),
                status="declined" if decline else "authorized",
                amount=request.amount,
                currency=request.currency,
                captured_amount=0,
                refunded_amount=0,
                decline_code=decline,
                card_last4=request.card_number[-4:],
                metadata=request.metadata,
                idempotency_key=idem.key,
                created_at=now,
            )
            await self.db.execute(
                f"INSERT INTO payment_intents ({_COLUMNS}, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    intent.id,
                    intent.status,
                    intent.amount,
                    intent.currency,
                    0,
                    0,
                    intent.decline_code,
                    intent.card_last4,
                    _encode(intent.metadata).decode(),
                    intent.idempotency_key,
                    now,
                    now,
                ),
            )
            return intent

        return await self._once(idem, PaymentIntent, effect)

    async def capture(
        self, idem: Idempotency, intent_id: str, amount: int | None
    ) -> tuple[PaymentIntent, bool]:
        async def effect() -> PaymentIntent:
            intent = await self._require(intent_id)
            if intent.status != "authorized":
                raise Conflict(f"A {intent.status} payment intent cannot be captured.")
            to_capture = intent.amount if amount is None else amount
            if to_capture > intent.amount:
                raise Conflict(f"Cannot capture {to_capture}: only {intent.amount} is authorized.")
            return await self._update(intent_id, "captured", captured_amount=to_capture)

        return await self._once(idem, PaymentIntent, effect)

    async def void(self, idem: Idempotency, intent_id: str) -> tuple[PaymentIntent, bool]:
        async def effect() -> PaymentIntent:
            intent = await self._require(intent_id)
            if intent.status != "authorized":
                raise Conflict(f"A {intent.status} payment intent cannot be voided.")
            return await self._update(intent_id, "voided")

        return await self._once(idem, PaymentIntent, effect)

    async def refund(self, idem: Idempotency, intent_id: str, amount: int) -> tuple[Refund, bool]:
        async def effect() -> Refund:
            intent = await self._require(intent_id)
            if intent.status != "captured":
                raise Conflict(f"A {intent.status} payment intent cannot be refunded.")
            refundable = intent.captured_amount - intent.refunded_amount
            if amount > refundable:
                raise Conflict(f"Cannot refund {amount}: only {refundable} is left to refund.")
            refunded = intent.refunded_amount + amount
            status = "refunded" if refunded == intent.captured_amount else "captured"
            await self._update(intent_id, status, refunded_amount=refunded)
            refund = Refund(
                id="re_" + new_id(),
                payment_intent=intent_id,
                amount=amount,
                currency=intent.currency,
                status="succeeded",
                created_at=utc_now_iso(),
            )
            await self.db.execute(
                "INSERT INTO refunds (id, payment_intent_id, amount, created_at)"
                " VALUES (?, ?, ?, ?)",
                (refund.id, intent_id, amount, refund.created_at),
            )
            return refund

        return await self._once(idem, Refund, effect)

    async def get(self, intent_id: str) -> PaymentIntent | None:
        row = await self.db.fetch_one(
            f"SELECT {_COLUMNS} FROM payment_intents WHERE id = ?", (intent_id,)
        )
        return None if row is None else _intent(row)

    async def by_idempotency_key(self, key: str) -> PaymentIntent | None:
        row = await self.db.fetch_one(
            f"SELECT {_COLUMNS} FROM payment_intents WHERE idempotency_key = ?", (key,)
        )
        return None if row is None else _intent(row)

    async def _require(self, intent_id: str) -> PaymentIntent:
        intent = await self.get(intent_id)
        if intent is None:
            raise NotFound(f"No payment intent {intent_id}.")
        return intent

    async def _update(self, intent_id: str, status: str, **amounts: int) -> PaymentIntent:
        # Column names come from this module's callers only, never from a request.
        sets = "".join(f", {column} = ?" for column in amounts)
        await self.db.execute(
            f"UPDATE payment_intents SET status = ?, updated_at = ?{sets} WHERE id = ?",
            (status, utc_now_iso(), *amounts.values(), intent_id),
        )
        return await self._require(intent_id)

    async def counts(self) -> dict[str, int]:
        row = await self.db.fetch_one(
            "SELECT"
            " count(*) FILTER (WHERE status != 'declined'),"
            " count(*) FILTER (WHERE status = 'declined'),"
            " count(*) FILTER (WHERE captured_amount > 0),"
            " count(*) FILTER (WHERE status = 'voided'),"
            " (SELECT count(*) FROM refunds)"
            " FROM payment_intents"
        )
        assert row is not None
        names = ("authorizations", "declines", "captures", "voids", "refunds")
        return dict(zip(names, row, strict=True))

    async def totals(self) -> dict[str, Totals]:
        rows = await self.db.fetch_all(
            "SELECT currency, sum(amount), sum(captured_amount), sum(refunded_amount)"
            " FROM payment_intents WHERE status != 'declined' GROUP BY currency ORDER BY currency"
        )
        return {
            row[0]: Totals(
                authorized=row[1], captured=row[2], refunded=row[3], net_charged=row[2] - row[3]
            )
            for row in rows
        }
