"""Payments' service layer: the implementation of :class:`PaymentsApi`.

Every provider call happens *outside* a database transaction, so a slow provider never holds
the write lock: the call is keyed by the order (a repeat is harmless), made first, and its
result recorded afterwards in one transaction together with its ledger entries and outbox
event. Each recording step re-reads the payment inside its transaction, so concurrent repeats
record once. A refund is written ``pending`` before the provider is asked, so that whoever
comes next finishes that same refund (same key, same amount) rather than starting another.

None of the commands uses ``@idempotent``: that stores the result in a transaction wrapped
around the whole command, which would span the provider call. They are idempotent by order
instead, which is what the saga that calls them needs.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from colony.platform.clock import utc_now_iso
from colony.platform.errors import (
    ColonyError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PaymentDeclined,
    ServiceUnavailable,
)
from colony.platform.logging import get_logger
from colony.platform.messaging.consumer import Handler
from colony.platform.runtime import ServiceContext
from colony.platform.security import Actor
from colony.services.delivery.api import ShipmentStatusChanged
from colony.services.payments import ledger
from colony.services.payments.api import (
    LedgerEntry,
    Payment,
    PaymentCaptured,
    PaymentRefunded,
    PaymentsAudit,
)
from colony.services.payments.provider import (
    Intent,
    OutcomeUnknown,
    ProviderClient,
    ProviderError,
    ProviderRefused,
    ProviderUnavailable,
    UntrustedAnswer,
    auditing,
    expect_authorization,
)
from colony.services.payments.provider import Refund as ProviderRefund

T = TypeVar("T")
_log = get_logger("payments")

# What the provider accepts; checked here so a bad request never reaches it.
SUPPORTED_CURRENCIES = frozenset(
    {"EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "JPY"}
)
MAX_AMOUNT_MINOR = 1_000_000_000
MAX_SELLERS = 100
MAX_REASON_LENGTH = 500
AUDIT_CONCURRENCY = 16
# Ids go into Idempotency-Keys (visible ASCII, at most 255 characters in all).
_ID = re.compile(r"^[\x21-\x7e]{1,100}$")
_CARD = re.compile(r"^[0-9]{12,19}$")
_COLUMNS = (
    "order_id, buyer_id, status, amount_minor, currency, captured_minor, refunded_minor,"
    " decline_code, card_last4, provider_intent_id, created_at, updated_at"
)
_SELLER_COLUMNS = (
    "seller_id, share_minor, refunded_minor, paid_out_minor, fee_minor,"
    " reversed_payout_minor, reversed_fee_minor"
)
# The provider status each of ours corresponds to.
_PROVIDER_STATUS = {
    "authorized": "authorized",
    "declined": "declined",
    "captured": "captured",
    "partially_refunded": "captured",
    "refunded": "refunded",
    "voided": "voided",
}
_breakdown_codec = msgspec.json.Decoder(dict[str, int])


def authorize_key(order_id: str) -> str:
    return f"colony-{order_id}-authorize"


@dataclass(frozen=True, slots=True)
class _Seller:
    seller_id: str
    share: int
    refunded: int
    paid_out: int | None
    fee: int | None
    reversed_payout: int
    reversed_fee: int

    @property
    def in_escrow(self) -> int:
        # A payout empties the seller's part of escrow; later refunds come from seller and fee.
        return 0 if self.paid_out is not None else self.share - self.refunded


@dataclass(frozen=True, slots=True)
class _PendingRefund:
    order_id: str
    seq: int
    seller_id: str | None
    amount: int
    breakdown: dict[str, int]
    key: str


def _declined(payment: Payment) -> PaymentDeclined:
    return PaymentDeclined(
        f"The card was declined ({payment.decline_code}).", decline_code=payment.decline_code
    )


def _unavailable(exc: ProviderError) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"The payment provider could not be reached or did not answer ({exc}); retrying is safe."
    )


def _refused(exc: ProviderRefused) -> ColonyError:
    if exc.status == 409 or exc.slug == "idempotency-key-reused":
        return Conflict(f"The payment provider refused: {exc.detail}")
    if exc.status == 422:
        return InvalidInput(f"The payment provider refused: {exc.detail}")
    # Anything else is a request we should never have sent.
    return ColonyError(f"The payment provider refused the request: {exc}")


def _check_id(value: str, field: str) -> None:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInput(f"{field} must be 1 to 100 visible ASCII characters.", field=field)


def _validate_authorization(
    order_id: str,
    buyer_id: str,
    amount_minor: int,
    currency: str,
    card_number: str,
    seller_shares: dict[str, int],
) -> None:
    _check_id(order_id, "order_id")
    _check_id(buyer_id, "buyer_id")
    if not isinstance(amount_minor, int) or not 1 <= amount_minor <= MAX_AMOUNT_MINOR:
        raise InvalidInput(
            f"The amount must be between 1 and {MAX_AMOUNT_MINOR} minor units.",
            field="amount_minor",
        )
    if currency not in SUPPORTED_CURRENCIES:
        raise InvalidInput(f"Unsupported currency {currency!r}.", field="currency")
    if not isinstance(card_number, str) or not _CARD.match(card_number):
        raise InvalidInput("The card number must be 12 to 19 digits.", field="card_number")
    if not seller_shares or len(seller_shares) > MAX_SELLERS:
        raise InvalidInput(
            f"Name between 1 and {MAX_SELLERS} sellers' shares.", field="seller_shares"
        )
    for seller_id, share in seller_shares.items():
        _check_id(seller_id, "seller_shares")
        if not isinstance(share, int) or share < 0:
            raise InvalidInput("A seller's share cannot be negative.", field="seller_shares")
    if sum(seller_shares.values()) != amount_minor:
        raise InvalidInput("The sellers' shares must add up to the amount.", field="seller_shares")


def _payment(row: Any, sellers: list[_Seller]) -> Payment:
    return Payment(
        order_id=row[0],
        buyer_id=row[1],
        status=row[2],
        amount_minor=row[3],
        currency=row[4],
        captured_minor=row[5],
        refunded_minor=row[6],
        decline_code=row[7],
        card_last4=row[8],
        provider_intent_id=row[9],
        created_at=row[10],
        updated_at=row[11],
        seller_shares={s.seller_id: s.share for s in sellers},
        paid_out={s.seller_id: s.paid_out for s in sellers if s.paid_out is not None},
    )


def _seller_view(payment: Payment, part: _Seller) -> Payment:
    """The payment as one seller in it may see it: their part as if it were the whole, without
    the buyer, the card, or any other seller's share, refund or payout."""
    status = payment.status
    if status in ("partially_refunded", "refunded"):
        if part.refunded == 0:
            status = "captured"
        else:
            status = "refunded" if part.refunded >= part.share else "partially_refunded"
    return msgspec.structs.replace(
        payment,
        buyer_id=None,
        status=status,
        amount_minor=part.share,
        # A capture takes the whole authorization, every seller's part at once.
        captured_minor=part.share if payment.captured_minor else 0,
        refunded_minor=part.refunded,
        seller_shares={part.seller_id: part.share},
        paid_out={} if part.paid_out is None else {part.seller_id: part.paid_out},
        decline_code=None,
        card_last4=None,
        provider_intent_id=None,
    )


def _buyer(payment: Payment) -> str:
    # Payments read here are whole; only a seller's view, never written back, lacks the buyer.
    assert payment.buyer_id is not None
    return payment.buyer_id


def _buyer_account(payment: Payment) -> str:
    return ledger.buyer_account(_buyer(payment))


def _seller(row: Any) -> _Seller:
    return _Seller(
        seller_id=row[0],
        share=row[1],
        refunded=row[2],
        paid_out=row[3],
        fee=row[4],
        reversed_payout=row[5],
        reversed_fee=row[6],
    )


class PaymentsService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.db = ctx.db
        self.outbox = ctx.outbox
        self.fee_bps = ctx.settings.marketplace_fee_bps
        self.provider = ProviderClient(ctx.http, ctx.settings.payment_provider_url)

    def subscriptions(self) -> dict[type[Any], Handler]:
        return {ShipmentStatusChanged: self.on_shipment_status_changed}

    # Reading

    async def _sellers(self, order_id: str) -> list[_Seller]:
        rows = await self.db.fetch_all(
            f"SELECT {_SELLER_COLUMNS} FROM payment_sellers WHERE order_id = ? ORDER BY seller_id",
            (order_id,),
        )
        return [_seller(row) for row in rows]

    async def _load(self, order_id: str) -> Payment | None:
        row = await self.db.fetch_one(
            f"SELECT {_COLUMNS} FROM payments WHERE order_id = ?", (order_id,)
        )
        return None if row is None else _payment(row, await self._sellers(order_id))

    async def _require(self, order_id: str) -> Payment:
        payment = await self._load(order_id)
        if payment is None:
            raise NotFound(f"No payment for order {order_id}.")
        return payment

    async def _viewable(self, actor: Actor, order_id: str) -> tuple[Payment, _Seller | None]:
        """The payment, and None when the actor may see the whole of it (its buyer, an admin,
        the system) or the actor's own part when they are a seller in it; else Forbidden."""
        row = await self.db.fetch_one(
            f"SELECT {_COLUMNS} FROM payments WHERE order_id = ?", (order_id,)
        )
        if row is None:
            raise NotFound(f"No payment for order {order_id}.")
        parts = await self._sellers(order_id)
        payment = _payment(row, parts)
        if actor.role in ("system", "admin") or actor.id == payment.buyer_id:
            return payment, None
        own = [part for part in parts if part.seller_id == actor.id]
        if actor.role == "seller" and own:
            return payment, own[0]
        raise Forbidden("This payment belongs to another account.")

    async def get_payment(self, actor: Actor, order_id: str) -> Payment:
        payment, part = await self._viewable(actor, order_id)
        return payment if part is None else _seller_view(payment, part)

    async def ledger(self, actor: Actor, order_id: str) -> list[LedgerEntry]:
        _, part = await self._viewable(actor, order_id)
        entries = await ledger.entries_for(self.db, order_id)
        if part is None:
            return entries
        own = ledger.seller_account(part.seller_id)
        return [entry for entry in entries if entry.account == own]

    # Talking to the provider

    async def _settled(self, call: Callable[[], Awaitable[T]]) -> T:
        """A keyed provider command; when its outcome is unknown it is sent once more with the
        same key, which the provider either replays (it took effect) or performs (it did not).
        ``ProviderRefused`` is left to the caller, which knows what a refusal means."""
        try:
            try:
                return await call()
            except OutcomeUnknown:
                return await call()
        except (OutcomeUnknown, ProviderUnavailable) as exc:
            raise _unavailable(exc) from exc

    async def _intent(self, payment: Payment) -> Intent:
        """The provider's view of the payment, to settle a refusal we did not expect."""
        assert payment.provider_intent_id is not None
        try:
            intent = await self.provider.get(payment.provider_intent_id)
        except ProviderRefused as exc:
            raise _refused(exc) from exc
        except ProviderError as exc:
            raise _unavailable(exc) from exc
        if intent is None:
            raise ColonyError(f"The provider has no intent {payment.provider_intent_id}.")
        if (intent.amount, intent.currency) != (payment.amount_minor, payment.currency):
            raise _unavailable(
                UntrustedAnswer(f"the provider's intent is of {intent.amount} {intent.currency}")
            )
        return intent

    # Authorize

    async def authorize(
        self,
        actor: Actor,
        order_id: str,
        buyer_id: str,
        amount_minor: int,
        currency: str,
        card_number: str,
        seller_shares: dict[str, int],
    ) -> Payment:
        actor.require("system")
        _validate_authorization(
            order_id, buyer_id, amount_minor, currency, card_number, seller_shares
        )
        payment = await self._load(order_id)
        if payment is None:
            released = await self.db.fetch_value(
                "SELECT released_at FROM unsettled_authorizations WHERE order_id = ?",
                (order_id,),
            )
            if released is not None:
                # The provider would replay its old "authorized" answer for a voided intent.
                raise Conflict("This order's authorization was voided.")
            intent = await self._authorize_at_provider(
                order_id, amount_minor, currency, card_number
            )
            payment = await self._record_authorization(intent, order_id, buyer_id, seller_shares)
        if payment.status == "declined":
            raise _declined(payment)
        return payment

    async def _authorize_at_provider(
        self, order_id: str, amount_minor: int, currency: str, card_number: str
    ) -> Intent:
        key = authorize_key(order_id)

        async def attempt() -> Intent:
            return await self.provider.authorize(
                key, amount_minor, currency, card_number, {"order_id": order_id}
            )

        # Noted before the provider is asked: from here until its answer is recorded the card
        # may be held (a lost or untrusted answer, a crash), and a void, or the audit, must
        # ask the provider. Recording the authorization removes the note.
        noted = await self.db.execute(
            "INSERT INTO unsettled_authorizations (order_id, at) VALUES (?, ?)"
            " ON CONFLICT (order_id) DO NOTHING",
            (order_id, utc_now_iso()),
        )
        ambiguous = False
        try:
            try:
                intent = await attempt()
            except OutcomeUnknown:
                ambiguous = True
                # Ask about the key rather than guess; only a 404 (the authorization never
                # took effect) allows another attempt, and it reuses the key.
                found = await self.provider.find_by_key(key)
                if found is None:
                    return await attempt()
                expect_authorization(found, key, amount_minor, currency)
                intent = found
        except ProviderError as exc:
            if noted and not ambiguous:
                # A refusal or a request never sent: certainly nothing is held.
                await self.db.execute(
                    "DELETE FROM unsettled_authorizations WHERE order_id = ?", (order_id,)
                )
            if isinstance(exc, ProviderRefused):
                raise _refused(exc) from exc
            if isinstance(exc, UntrustedAnswer):
                _log.warning(
                    "untrusted answer from the provider", order_id=order_id, error=str(exc)
                )
            raise _unavailable(exc) from exc
        return intent

    async def _record_authorization(
        self, intent: Intent, order_id: str, buyer_id: str, seller_shares: dict[str, int]
    ) -> Payment:
        if intent.status not in ("authorized", "declined"):
            # Only possible if our record was lost after the provider moved on.
            raise Conflict(
                f"The provider's intent for this order is already {intent.status};"
                " it needs reconciling by hand."
            )
        now = utc_now_iso()
        async with self.db.transaction():
            existing = await self._load(order_id)
            if existing is not None:
                return existing  # a concurrent call recorded the same intent first
            await self.db.execute(
                f"INSERT INTO payments ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?, ?)",
                (
                    order_id,
                    buyer_id,
                    intent.status,
                    intent.amount,
                    intent.currency,
                    intent.decline_code,
                    intent.card_last4,
                    intent.id,
                    now,
                    now,
                ),
            )
            await self.db.execute_many(
                "INSERT INTO payment_sellers (order_id, seller_id, share_minor, refunded_minor)"
                " VALUES (?, ?, ?, 0)",
                [(order_id, seller, share) for seller, share in seller_shares.items()],
            )
            await self.db.execute(
                "DELETE FROM unsettled_authorizations WHERE order_id = ?", (order_id,)
            )
            return Payment(
                order_id=order_id,
                buyer_id=buyer_id,
                status=intent.status,
                amount_minor=intent.amount,
                currency=intent.currency,
                captured_minor=0,
                refunded_minor=0,
                seller_shares=dict(sorted(seller_shares.items())),
                paid_out={},
                decline_code=intent.decline_code,
                card_last4=intent.card_last4,
                provider_intent_id=intent.id,
                created_at=now,
                updated_at=now,
            )

    # Capture and void

    async def capture(self, actor: Actor, order_id: str) -> Payment:
        actor.require("system")
        payment = await self._require(order_id)
        if payment.status in ("captured", "partially_refunded", "refunded"):
            return payment
        if payment.status != "authorized":
            raise Conflict(f"A {payment.status} payment cannot be captured.")
        intent_id = payment.provider_intent_id
        assert intent_id is not None
        try:
            await self._settled(
                lambda: self.provider.capture(
                    intent_id, f"colony-{order_id}-capture", payment.amount_minor
                )
            )
        except ProviderRefused as exc:
            # Our record may lag the provider (a void whose answer was lost): ask it.
            intent = await self._intent(payment)
            if intent.status == "voided":
                await self._record_void(order_id)
                raise Conflict("The payment was voided; it cannot be captured.") from exc
            if intent.status not in ("captured", "refunded"):
                raise _refused(exc) from exc
        return await self._record_capture(order_id)

    async def _record_capture(self, order_id: str) -> Payment:
        async with self.db.transaction():
            payment = await self._require(order_id)
            if payment.status != "authorized":
                return payment  # recorded by a concurrent call
            amount = payment.amount_minor
            now = utc_now_iso()
            await self.db.execute(
                "UPDATE payments SET status = 'captured', captured_minor = ?, updated_at = ?"
                " WHERE order_id = ?",
                (amount, now, order_id),
            )
            await ledger.post(
                self.db,
                order_id,
                "capture",
                payment.currency,
                {_buyer_account(payment): -amount, ledger.ESCROW: amount},
            )
            await self.outbox.add(
                PaymentCaptured(
                    order_id=order_id,
                    buyer_id=_buyer(payment),
                    amount_minor=amount,
                    currency=payment.currency,
                ),
                key=order_id,
            )
            return msgspec.structs.replace(
                payment, status="captured", captured_minor=amount, updated_at=now
            )

    async def void(self, actor: Actor, order_id: str) -> Payment | None:
        actor.require("system")
        payment = await self._load(order_id)
        if payment is None:
            unsettled = await self.db.fetch_one(
                "SELECT 1 FROM unsettled_authorizations WHERE order_id = ? AND released_at IS NULL",
                (order_id,),
            )
            if unsettled is not None:
                await self._release_unrecorded(order_id)
            return None
        if payment.status in ("declined", "voided"):
            return payment
        if payment.status != "authorized":
            return await self._refund(order_id, None, "voided")
        intent_id = payment.provider_intent_id
        assert intent_id is not None
        try:
            await self._settled(
                lambda: self.provider.void(
                    intent_id, f"colony-{order_id}-void", payment.amount_minor
                )
            )
        except ProviderRefused as exc:
            intent = await self._intent(payment)
            if intent.status in ("captured", "refunded"):
                # A capture took effect whose answer we never recorded: book it, then undo it.
                await self._record_capture(order_id)
                return await self._refund(order_id, None, "voided")
            if intent.status != "voided":
                raise _refused(exc) from exc
        return await self._record_void(order_id)

    async def _release_unrecorded(self, order_id: str) -> None:
        """An authorize whose answer was lost or not believed (ServiceUnavailable to the
        caller), or cut short by a crash, may still have put a hold on the card; the caller's
        void is then the only chance to release it (or to refund it, had it been captured)."""
        try:
            intent = await self.provider.find_by_key(authorize_key(order_id))
            if intent is not None and intent.status == "authorized":
                intent_id, amount = intent.id, intent.amount
                await self._settled(
                    lambda: self.provider.void(intent_id, f"colony-{order_id}-void", amount)
                )
            elif intent is not None and intent.charged > 0:
                intent_id, amount = intent.id, intent.charged
                await self._settled(
                    lambda: self.provider.refund(
                        intent_id, f"colony-{order_id}-refund-unrecorded", amount
                    )
                )
        except ProviderRefused as exc:
            raise _refused(exc) from exc
        except ProviderError as exc:
            raise _unavailable(exc) from exc
        await self.db.execute(
            "UPDATE unsettled_authorizations SET released_at = ? WHERE order_id = ?",
            (utc_now_iso(), order_id),
        )

    async def _record_void(self, order_id: str) -> Payment:
        async with self.db.transaction():
            await self.db.execute(
                "UPDATE payments SET status = 'voided', updated_at = ?"
                " WHERE order_id = ? AND status = 'authorized'",
                (utc_now_iso(), order_id),
            )
            return await self._require(order_id)

    # Refund

    async def refund(
        self, actor: Actor, order_id: str, seller_id: str | None, reason: str
    ) -> Payment:
        if actor.role not in ("system", "seller"):
            raise Forbidden("Only the system, or a seller for their own part, can refund.")
        payment = await self._require(order_id)
        if actor.role == "seller" and (
            seller_id != actor.id or actor.id not in payment.seller_shares
        ):
            raise Forbidden("A seller can refund only their own part of an order.")
        if seller_id is not None and seller_id not in payment.seller_shares:
            raise InvalidInput(f"Seller {seller_id} has no part in this order.", field="seller_id")
        reason = reason.strip()
        if not 1 <= len(reason) <= MAX_REASON_LENGTH:
            raise InvalidInput(
                f"Give a reason of 1 to {MAX_REASON_LENGTH} characters.", field="reason"
            )
        refunded = await self._refund(order_id, seller_id, reason)
        if actor.role == "seller":
            return await self.get_payment(actor, order_id)  # their part, as they may see it
        return refunded

    async def _refund(self, order_id: str, seller_id: str | None, reason: str) -> Payment:
        # At most two rounds: finish a refund an earlier call left pending, then this one.
        while True:
            async with self.db.transaction():
                payment = await self._require(order_id)
                if payment.status == "authorized":
                    raise Conflict("Nothing is captured yet: void the payment instead.")
                if payment.status in ("declined", "voided"):
                    return payment
                pending = await self._pending_refund(order_id)
                ours = pending is None
                if pending is None:
                    breakdown = {
                        s.seller_id: s.share - s.refunded
                        for s in await self._sellers(order_id)
                        if (seller_id is None or s.seller_id == seller_id) and s.share > s.refunded
                    }
                    if not breakdown:
                        return payment  # nothing left to refund
                    pending = await self._open_refund(order_id, seller_id, breakdown, reason)
            refund = await self._refund_at_provider(payment, pending)
            payment = await self._record_refund(pending, refund)
            if ours:
                return payment

    async def _pending_refund(self, order_id: str) -> _PendingRefund | None:
        row = await self.db.fetch_one(
            "SELECT seq, seller_id, amount_minor, breakdown, idempotency_key FROM refunds"
            " WHERE order_id = ? AND status = 'pending'",
            (order_id,),
        )
        if row is None:
            return None
        return _PendingRefund(
            order_id, row[0], row[1], row[2], _breakdown_codec.decode(row[3]), row[4]
        )

    async def _open_refund(
        self, order_id: str, seller_id: str | None, breakdown: dict[str, int], reason: str
    ) -> _PendingRefund:
        last = await self.db.fetch_value(
            "SELECT coalesce(max(seq), 0) FROM refunds WHERE order_id = ?", (order_id,)
        )
        seq = int(last) + 1
        # Numbered, so each refund of the order has its own key and a retry reuses it.
        pending = _PendingRefund(
            order_id=order_id,
            seq=seq,
            seller_id=seller_id,
            amount=sum(breakdown.values()),
            breakdown=breakdown,
            key=f"colony-{order_id}-refund-{seq}-{seller_id or 'all'}",
        )
        await self.db.execute(
            "INSERT INTO refunds (order_id, seq, seller_id, amount_minor, breakdown,"
            " idempotency_key, reason, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
            (
                order_id,
                seq,
                seller_id,
                pending.amount,
                msgspec.json.encode(breakdown).decode(),
                pending.key,
                reason,
                utc_now_iso(),
            ),
        )
        return pending

    async def _refund_at_provider(
        self, payment: Payment, pending: _PendingRefund
    ) -> ProviderRefund:
        intent_id = payment.provider_intent_id
        assert intent_id is not None
        try:
            return await self._settled(
                lambda: self.provider.refund(intent_id, pending.key, pending.amount)
            )
        except ProviderRefused as exc:
            if exc.status in (404, 409):
                # A refusal has no effect at the provider, so the refund can be dropped. A
                # reused key (422) means the provider knows this key with another amount:
                # that must stay pending for someone to look at.
                await self.db.execute(
                    "DELETE FROM refunds WHERE order_id = ? AND seq = ? AND status = 'pending'",
                    (pending.order_id, pending.seq),
                )
            raise _refused(exc) from exc

    async def _record_refund(self, pending: _PendingRefund, refund: ProviderRefund) -> Payment:
        order_id = pending.order_id
        async with self.db.transaction():
            status = await self.db.fetch_value(
                "SELECT status FROM refunds WHERE order_id = ? AND seq = ?",
                (order_id, pending.seq),
            )
            payment = await self._require(order_id)
            if status != "pending":
                return payment  # a concurrent call recorded it
            sellers = {s.seller_id: s for s in await self._sellers(order_id)}
            legs: dict[str, int] = defaultdict(int)
            legs[_buyer_account(payment)] += pending.amount
            for seller_id, amount in pending.breakdown.items():
                s = sellers[seller_id]
                # Money still in escrow goes straight back; the rest was paid out, and comes
                # back from the seller and the fee in the proportion it was paid.
                from_escrow = min(amount, s.in_escrow)
                rest = amount - from_escrow
                paid, fee = s.paid_out or 0, s.fee or 0
                from_fee = 0
                if rest and paid + fee:
                    from_fee = min(rest * fee // (paid + fee), fee - s.reversed_fee)
                from_seller = rest - from_fee
                legs[ledger.ESCROW] -= from_escrow
                legs[ledger.seller_account(seller_id)] -= from_seller
                legs[ledger.FEES] -= from_fee
                await self.db.execute(
                    "UPDATE payment_sellers SET refunded_minor = refunded_minor + ?,"
                    " reversed_payout_minor = reversed_payout_minor + ?,"
                    " reversed_fee_minor = reversed_fee_minor + ?"
                    " WHERE order_id = ? AND seller_id = ?",
                    (amount, from_seller, from_fee, order_id, seller_id),
                )
            await ledger.post(self.db, order_id, "refund", payment.currency, legs)
            refunded = payment.refunded_minor + pending.amount
            now = utc_now_iso()
            await self.db.execute(
                "UPDATE payments SET refunded_minor = ?, status = ?, updated_at = ?"
                " WHERE order_id = ?",
                (
                    refunded,
                    "refunded" if refunded == payment.captured_minor else "partially_refunded",
                    now,
                    order_id,
                ),
            )
            await self.db.execute(
                "UPDATE refunds SET status = 'succeeded', provider_refund_id = ?,"
                " completed_at = ? WHERE order_id = ? AND seq = ?",
                (refund.id, now, order_id, pending.seq),
            )
            await self.outbox.add(
                PaymentRefunded(
                    order_id=order_id,
                    buyer_id=_buyer(payment),
                    seller_id=pending.seller_id,
                    amount_minor=pending.amount,
                    currency=payment.currency,
                ),
                key=order_id,
            )
            return await self._require(order_id)

    # Payout

    async def on_shipment_status_changed(self, event: ShipmentStatusChanged) -> None:
        """A delivered shipment releases that seller's share from escrow, once."""
        if event.status != "delivered":
            return
        async with self.db.transaction():
            payment = await self._load(event.order_id)
            if payment is None or payment.status == "authorized":
                # Raised, not skipped: the consumer retries, then keeps it as a dead letter
                # to replay, rather than the seller silently going unpaid.
                raise Conflict(f"Order {event.order_id} has no captured payment to pay out.")
            if payment.status in ("declined", "voided"):
                _log.warning("delivered without a payment", order_id=event.order_id)
                return
            seller = next(
                (s for s in await self._sellers(event.order_id) if s.seller_id == event.seller_id),
                None,
            )
            if seller is None:
                raise Conflict(f"Seller {event.seller_id} has no part in order {event.order_id}.")
            if seller.paid_out is not None:
                return  # once per seller per order
            gross = seller.share - seller.refunded
            fee = gross * self.fee_bps // 10_000
            await ledger.post(
                self.db,
                event.order_id,
                "payout",
                payment.currency,
                {
                    ledger.ESCROW: -gross,
                    ledger.seller_account(event.seller_id): gross - fee,
                    ledger.FEES: fee,
                },
            )
            now = utc_now_iso()
            await self.db.execute(
                "UPDATE payment_sellers SET paid_out_minor = ?, fee_minor = ?, paid_out_at = ?"
                " WHERE order_id = ? AND seller_id = ?",
                (gross - fee, fee, now, event.order_id, event.seller_id),
            )
            await self.db.execute(
                "UPDATE payments SET updated_at = ? WHERE order_id = ?", (now, event.order_id)
            )

    # Audit

    async def audit(self, actor: Actor) -> PaymentsAudit:
        """Checks the ledger against itself and the payments, and every payment against the
        provider. The provider part is one or two requests per payment (O(orders)), made
        ``AUDIT_CONCURRENCY`` at a time; if the provider cannot answer, the audit fails with
        ``ServiceUnavailable`` rather than report what it could not check.

        Every table is read in one snapshot: read one after another, a payout committing in
        between showed its ledger entries without the payment's new state (or the reverse),
        and the audit reported escrow disagreeing with a payment that was consistent."""
        actor.require("system", "admin")
        async with self.db.snapshot() as moment:
            rows = await self.db.fetch_all(f"SELECT {_COLUMNS} FROM payments ORDER BY order_id")
            seller_rows = await self.db.fetch_all(
                f"SELECT order_id, {_SELLER_COLUMNS} FROM payment_sellers"
            )
            transactions, total = await ledger.totals(self.db)
            refunded_rows = await self.db.fetch_all(
                "SELECT order_id, CAST(sum(amount_minor) AS BIGINT) FROM refunds"
                " WHERE status = 'succeeded'"
                " GROUP BY order_id"
            )
            actual = await ledger.balances_by_order(self.db)
            unbalanced = await ledger.unbalanced(self.db)
            unsettled_rows = await self.db.fetch_all(
                "SELECT order_id FROM unsettled_authorizations WHERE released_at IS NULL"
                " ORDER BY order_id"
            )
        sellers: dict[str, list[_Seller]] = defaultdict(list)
        for row in seller_rows:
            sellers[row[0]].append(_seller(row[1:]))
        payments = [_payment(row, sellers[row[0]]) for row in rows]
        refunds_booked = {row[0]: row[1] for row in refunded_rows}
        known = {p.order_id for p in payments}
        mismatched = {order_id for order_id in actual if order_id not in known}
        for payment in payments:
            parts = sellers[payment.order_id]
            consistent = (
                payment.refunded_minor
                == sum(s.refunded for s in parts)
                == (refunds_booked.get(payment.order_id, 0))
            )
            expected = self._expected_balances(payment, parts)
            if not consistent or actual.get(payment.order_id, {}) != expected:
                mismatched.add(payment.order_id)
        # The provider is asked after the snapshot (it is another system, with no moment in
        # common with ours): a payment moving meanwhile can differ, which verify re-checks.
        provider_mismatches, double_charges, held = await self._check_provider(
            payments, [row[0] for row in unsettled_rows]
        )
        return PaymentsAudit(
            checked_at=moment.isoformat(),
            payments=len(payments),
            ledger_transactions=transactions,
            ledger_sum_minor=total,
            unbalanced_transactions=unbalanced,
            escrow_mismatches=sorted(mismatched),
            provider_mismatches=provider_mismatches,
            double_charges=double_charges,
            open_authorizations=sorted(
                [p.order_id for p in payments if p.status == "authorized"] + held
            ),
            by_order={p.order_id: p.captured_minor - p.refunded_minor for p in payments},
        )

    @staticmethod
    def _expected_balances(payment: Payment, parts: list[_Seller]) -> dict[str, int]:
        """What each account should hold for the order, from the payment's own record.

        Nothing moves before a capture. After it the buyer is out what was captured less what
        was refunded; escrow holds each part not yet paid out, less its refunds; a paid-out
        seller and the fee account hold what the payout gave them less what refunds took back.
        """
        if payment.captured_minor == 0:
            return {}
        expected: dict[str, int] = defaultdict(int)
        expected[_buyer_account(payment)] = payment.refunded_minor - payment.captured_minor
        for s in parts:
            expected[ledger.ESCROW] += s.in_escrow
            if s.paid_out is not None:
                expected[ledger.seller_account(s.seller_id)] += s.paid_out - s.reversed_payout
                expected[ledger.FEES] += (s.fee or 0) - s.reversed_fee
        return {account: amount for account, amount in expected.items() if amount != 0}

    async def _check_provider(
        self, payments: list[Payment], unsettled: list[str]
    ) -> tuple[list[str], list[str], list[str]]:
        """Provider mismatches, double charges, and the unsettled authorizations that turn out
        to hold a card (open, though no payment was recorded for them). An unsettled one the
        provider captured is money taken with no payment to show for it: a mismatch."""
        gate = asyncio.Semaphore(AUDIT_CONCURRENCY)

        async def left_at_provider(order_id: str) -> Intent | None:
            async with gate:
                return await self.provider.find_by_key(authorize_key(order_id))

        async def intents(payment: Payment) -> list[Intent | None]:
            async with gate:
                by_key = await self.provider.find_by_key(authorize_key(payment.order_id))
                if by_key is not None and by_key.id == payment.provider_intent_id:
                    return [by_key]
                assert payment.provider_intent_id is not None
                return [by_key, await self.provider.get(payment.provider_intent_id)]

        with auditing():  # counted apart at the provider: checking is not paying
            results = await asyncio.gather(*(intents(p) for p in payments), return_exceptions=True)
            stranded = await asyncio.gather(
                *(left_at_provider(o) for o in unsettled), return_exceptions=True
            )
        for result in [*results, *stranded]:
            if isinstance(result, ProviderError):
                raise ServiceUnavailable(
                    f"The audit could not ask the payment provider about every payment: {result}"
                )
            if isinstance(result, BaseException):
                raise result
        mismatches, doubles = [], []
        for payment, result in zip(payments, results, strict=True):
            assert isinstance(result, list)
            stored = result[-1]
            if stored is None or (
                stored.status != _PROVIDER_STATUS[payment.status]
                or stored.amount != payment.amount_minor
                or stored.currency != payment.currency
                or stored.captured_amount != payment.captured_minor
                or stored.refunded_amount != payment.refunded_minor
            ):
                mismatches.append(payment.order_id)
            # The provider cannot list intents by order, so only those we can name count: the
            # one our key created and the one we recorded (the same, unless something is off).
            if sum(1 for i in result if i is not None and i.captured_amount > 0) > 1:
                doubles.append(payment.order_id)
        held = []
        for order_id, intent in zip(unsettled, stranded, strict=True):
            assert not isinstance(intent, BaseException)
            if intent is not None and intent.status == "authorized":
                held.append(order_id)
            elif intent is not None and intent.charged > 0:
                mismatches.append(order_id)
        return sorted(mismatches), doubles, held
