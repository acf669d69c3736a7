"""Payments' public interface: the only module other services may import.

One payment per order, against the external provider. Every call to the provider carries an
idempotency key derived from the order, so a retried authorize, capture, void or refund never
acts twice; a call whose outcome is unknown (a timeout) is settled by asking the provider
about that key, never by guessing.

The ledger is double-entry: every transaction's entries sum to zero. Accounts are
``buyer:{id}`` (money from outside), ``escrow``, ``seller:{id}`` and ``marketplace:fees``.
Capture moves buyer → escrow; a shipment delivered moves that seller's share out of escrow
to the seller and the fee; a refund reverses what the refunded money had reached.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Protocol

import msgspec

from colony.platform.messaging import Event
from colony.platform.runtime.interface import callers, repeatable
from colony.platform.security import Actor

CardNumber = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{12,19}$")]
PaymentStatus = Literal[
    "authorized", "declined", "captured", "voided", "partially_refunded", "refunded"
]


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    """An order's payment. The buyer, an admin and the system see the whole of it; a seller
    sees their own part alone, as if it were the whole: the amounts, status, share and payout
    are theirs, and the buyer and the card are left out (null)."""

    order_id: str
    buyer_id: str | None
    """Null in a seller's view."""
    status: PaymentStatus
    amount_minor: int
    currency: str
    captured_minor: int
    refunded_minor: int
    seller_shares: dict[str, int]
    """Each seller's part of the amount, by seller id (a seller's view: theirs alone)."""
    paid_out: dict[str, int]
    """What has left escrow for each seller (their share less the fee), by seller id (a
    seller's view: theirs alone)."""
    decline_code: str | None
    """Why the card was declined; null in a seller's view."""
    card_last4: str | None
    """Null in a seller's view."""
    provider_intent_id: str | None
    """The provider's id of the payment; null in a seller's view."""
    created_at: str
    updated_at: str


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One leg of a ledger transaction. A seller is shown only the legs of their own
    account; the buyer, an admin and the system every leg of the order."""

    transaction_id: str
    account: str
    amount_minor: int
    currency: str
    order_id: str
    kind: Literal["capture", "payout", "refund"]
    at: str


class PaymentsAudit(msgspec.Struct, frozen=True, kw_only=True):
    """What ``colony verify`` checks."""

    checked_at: str
    """The moment of the one snapshot every table was read in (ISO 8601, UTC)."""
    payments: int
    ledger_transactions: int
    ledger_sum_minor: int
    """Sum of every entry: zero when the ledger balances."""
    unbalanced_transactions: list[str]
    escrow_mismatches: list[str]
    """Orders whose ledger disagrees with the payment (captured - refunded - paid out)."""
    provider_mismatches: list[str]
    """Orders whose captured or refunded amount differs from what the provider says."""
    double_charges: list[str]
    """Orders with more than one captured intent at the provider."""
    open_authorizations: list[str]
    """Authorized, neither captured nor voided: the order id of each."""
    by_order: dict[str, int]
    """Net charged per order (captured - refunded), for matching against orders."""


class PaymentCaptured(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "payments.payment.captured"
    order_id: str
    buyer_id: str
    amount_minor: int
    currency: str


class PaymentRefunded(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "payments.payment.refunded"
    order_id: str
    buyer_id: str
    seller_id: str | None
    """The seller whose part was refunded; None for the whole order."""
    amount_minor: int
    currency: str


class PaymentsApi(Protocol):
    service_name: ClassVar[str] = "payments"

    @callers("orders")
    @repeatable
    async def authorize(
        self,
        actor: Actor,
        order_id: str,
        buyer_id: str,
        amount_minor: int,
        currency: str,
        card_number: CardNumber,
        seller_shares: dict[str, int],
    ) -> Payment:
        """Authorize the order's total (system callers). A decline raises ``PaymentDeclined``;
        the provider unreachable raises ``ServiceUnavailable`` (retry: it is safe). Repeating
        the call for the same order returns the payment as it is."""
        ...

    @callers("orders")
    @repeatable
    async def capture(self, actor: Actor, order_id: str) -> Payment:
        """Capture the whole authorization; books buyer → escrow. Repeating is a no-op."""
        ...

    @callers("orders")
    @repeatable
    async def void(self, actor: Actor, order_id: str) -> Payment | None:
        """Release an authorization (a saga compensation). None if there was no payment;
        a declined or voided payment is returned unchanged; a captured one is refunded."""
        ...

    @callers("orders")
    @repeatable
    async def refund(
        self, actor: Actor, order_id: str, seller_id: str | None, reason: str
    ) -> Payment:
        """Refund one seller's part (``seller_id``) or everything not yet refunded (None).
        System callers, or the seller for their own part. Refunding what is already
        refunded changes nothing."""
        ...

    @callers("gateway")
    @repeatable
    async def get_payment(self, actor: Actor, order_id: str) -> Payment:
        """The buyer of the order, a seller in it, or the system."""
        ...

    @callers("gateway")
    @repeatable
    async def ledger(self, actor: Actor, order_id: str) -> list[LedgerEntry]: ...

    @callers("verify")
    @repeatable
    async def audit(self, actor: Actor) -> PaymentsAudit: ...
