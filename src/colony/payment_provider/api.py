"""The simulator's wire types: requests, resources and the tunable behaviour, as msgspec structs.

Decoding a body into these types is its validation: a wrong type, an unknown field, a negative
or absurd amount or an unknown currency is a 422 problem before any handler runs.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# Magic card numbers, as with real providers' test modes.
CARD_APPROVED = "4242424242424242"  # always approved (unless behaviour declines at random)
CARD_DECLINED = "4000000000000002"  # always declined: card_declined
CARD_INSUFFICIENT_FUNDS = "4000000000009995"  # always declined: insufficient_funds

MAX_AMOUNT = 1_000_000_000  # 10,000,000.00 in a currency with two decimals
MAX_LATENCY_MS = 60_000

Amount = Annotated[int, msgspec.Meta(ge=1, le=MAX_AMOUNT)]
Currency = Literal["EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "JPY"]
CardNumber = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{12,19}$")]
MetadataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
MetadataValue = Annotated[str, msgspec.Meta(max_length=500)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], msgspec.Meta(max_length=20)]
IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
IntentStatus = Literal["authorized", "declined", "captured", "voided", "refunded"]
DeclineCode = Literal["card_declined", "insufficient_funds", "generic_decline"]
Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
BadAnswer = Literal["garbage", "wrong_amount", "wrong_state", "oversize", "slow_body"]
BAD_ANSWERS: tuple[BadAnswer, ...] = (
    "garbage",  # the status of a success, a body that is not JSON
    "wrong_amount",  # well-formed, naming another amount than the one the effect was of
    "wrong_state",  # well-formed, naming another status than the intent is in
    "oversize",  # the right JSON, padded to far more than any answer needs
    "slow_body",  # headers at once, then half the body, then nothing for hang_seconds
)
LatencyMs = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_LATENCY_MS)]


# Subclasses inherit these options, but each says frozen=True again: type checkers read
# msgspec through PEP 681 (dataclass_transform), under which a subclass that does not is a
# mutable one, and a mutable subclass of a frozen class an error (msgspec/msgspec#657).
class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class AuthorizeRequest(_Request, frozen=True):
    amount: Amount
    currency: Currency
    card_number: CardNumber
    metadata: Metadata = msgspec.field(default_factory=dict)


class CaptureRequest(_Request, frozen=True):
    """Capture all of the authorization (``{}``) or a part of it."""

    amount: Amount | None = None


class RefundRequest(_Request, frozen=True):
    amount: Amount


class IntentLookup(_Request, frozen=True):
    idempotency_key: IdempotencyKey


class PaymentIntent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: IntentStatus
    amount: int
    currency: str
    captured_amount: int
    refunded_amount: int
    decline_code: DeclineCode | None
    card_last4: str
    metadata: dict[str, str]
    idempotency_key: str
    created_at: str


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    payment_intent: str
    amount: int
    currency: str
    status: Literal["succeeded"]
    created_at: str


class Latency(_Request, frozen=True):
    """Added latency: lognormal through the given median and 99th percentile."""

    p50_ms: LatencyMs = 0.0
    p99_ms: LatencyMs = 0.0

    def __post_init__(self) -> None:
        # Raised here, msgspec reports these as validation errors: a 422 problem.
        if self.p99_ms < self.p50_ms:
            raise ValueError("latency.p99_ms must be at least latency.p50_ms")
        if self.p99_ms > 0 and self.p50_ms == 0:
            raise ValueError("latency.p50_ms must be above 0 when latency.p99_ms is")


class Behaviour(_Request, frozen=True):
    """How the provider misbehaves. Omitted fields take their default (PUT replaces it all).

    The ``*_rate`` fields of :data:`BAD_ANSWERS` are shares of successful answers spoiled on
    their way out, after the effect (at most one per answer, so together at most 1)."""

    latency: Latency = Latency()
    decline_rate: Rate = 0.0
    error_rate: Rate = 0.0
    timeout_rate: Rate = 0.0
    outage: bool = False
    garbage_rate: Rate = 0.0
    wrong_amount_rate: Rate = 0.0
    wrong_state_rate: Rate = 0.0
    oversize_rate: Rate = 0.0
    slow_body_rate: Rate = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if sum(getattr(self, f"{kind}_rate") for kind in BAD_ANSWERS) > 1:
            raise ValueError("the bad answers' rates must add up to at most 1")

    def bad_answer_rates(self) -> dict[BadAnswer, float]:
        return {kind: getattr(self, f"{kind}_rate") for kind in BAD_ANSWERS}


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    authorized: int
    captured: int
    refunded: int
    net_charged: int


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    """Request counters since start or reset; intent counts and money from the ledger."""

    requests: int
    replays: int
    outage_rejections: int
    injected_errors: int
    timeouts_before_effect: int
    timeouts_after_effect: int
    bad_answers: int
    audit_requests: int
    authorizations: int
    declines: int
    captures: int
    voids: int
    refunds: int
    totals: dict[str, Totals]
