"""A small client for the payment provider's HTTP API.

The provider is a third party, so payments speaks to it over HTTP with wire structs of its
own rather than importing the simulator. Every failure is sorted into what it tells us about
the request's effect, because that is what the caller must act on:

- :class:`ProviderUnavailable`: the request certainly had no effect (nothing could be sent,
  or the provider answered 500/503 before acting). Retrying is safe and nothing is recorded.
- :class:`OutcomeUnknown`: the request may or may not have taken effect (a timeout, a
  connection lost after sending, a 502/504). Only asking the provider about the
  Idempotency-Key, or repeating the request with the same key, settles it.
- :class:`ProviderRefused`: a 4xx answer; the provider refused and did nothing.

A success is believed only if it is well-formed and about what was asked (OWASP API10:
unsafe consumption of APIs): the status the endpoint answers, at most ``MAX_ANSWER_BYTES``
of JSON of the expected shape, naming the intent, key, amount and state the request was
about. Anything else is an :class:`UntrustedAnswer`, an ``OutcomeUnknown``: the request may
have taken effect, and only asking the provider again settles what it did.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from colony.platform.errors import DeadlineExceeded, ServiceUnavailable
from colony.platform.http_client import HttpClient
from colony.platform.observability.metrics import payment_provider_outcomes
from colony.platform.resilience import NotSent

T = TypeVar("T")
DEPENDENCY = "payment-provider"
PURPOSE_HEADER = "x-colony-purpose"
"""Says a request checks rather than pays (the audit), so the provider can count it apart."""
_auditing: ContextVar[bool] = ContextVar("auditing", default=False)
IntentStatus = Literal["authorized", "declined", "captured", "voided", "refunded"]

MAX_ANSWER_BYTES = 64 * 1024
"""Far more than any answer of the provider's; a larger one is not believed."""

_encode = msgspec.json.Encoder().encode
_problem = msgspec.json.Decoder(dict[str, Any])
# Statuses after which the provider may have acted: a proxy or gateway gave up waiting.
_AMBIGUOUS_STATUSES = frozenset({502, 504})

# An intent's id goes into the paths of our later requests: nothing that could leave them.
ProviderId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,100}$")]
Money = Annotated[int, msgspec.Meta(ge=0)]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]


class Intent(msgspec.Struct, frozen=True, kw_only=True):
    """A payment intent as the provider reports it (fields we do not use are ignored)."""

    id: ProviderId
    status: IntentStatus
    amount: Money
    currency: CurrencyCode
    captured_amount: Money
    refunded_amount: Money
    decline_code: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    card_last4: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}$")]
    idempotency_key: Annotated[str, msgspec.Meta(max_length=255)]

    def __post_init__(self) -> None:
        # Raised here, msgspec reports it as a validation error: an untrusted answer.
        captured, refunded = self.captured_amount, self.refunded_amount
        if self.status == "captured":
            consistent = 0 < captured <= self.amount and refunded < captured
        elif self.status == "refunded":
            consistent = 0 < captured <= self.amount and refunded == captured
        else:
            consistent = captured == refunded == 0
        if not consistent:
            raise ValueError(
                f"a {self.status} intent with {captured} captured, {refunded} refunded"
            )
        if (self.status == "declined") != (self.decline_code is not None):
            raise ValueError("a decline without a code, or a code without a decline")

    @property
    def charged(self) -> int:
        """What the provider holds of the buyer's money: captured, less refunded."""
        return self.captured_amount - self.refunded_amount


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    id: ProviderId
    payment_intent: ProviderId
    amount: Money
    currency: CurrencyCode
    status: Literal["succeeded"]


class _AuthorizeBody(msgspec.Struct, frozen=True, kw_only=True):
    # Field order is fixed, so a retry sends the same bytes and the provider replays it.
    amount: int
    currency: str
    card_number: str
    metadata: dict[str, str]


class _RefundBody(msgspec.Struct, frozen=True, kw_only=True):
    amount: int


class ProviderError(Exception):
    pass


class ProviderUnavailable(ProviderError):
    """The request had no effect; retrying it is safe."""


class OutcomeUnknown(ProviderError):
    """The request may have taken effect; never assume either way."""


class UntrustedAnswer(OutcomeUnknown):
    """A success we cannot believe (see the module's docstring)."""


class ProviderRefused(ProviderError):
    """A 4xx answer: the provider did nothing."""

    def __init__(self, status: int, slug: str, detail: str) -> None:
        super().__init__(f"{status} {slug}: {detail}")
        self.status = status
        self.slug = slug
        self.detail = detail


_intent_decoder = msgspec.json.Decoder(Intent)
_refund_decoder = msgspec.json.Decoder(Refund)


@contextlib.contextmanager
def auditing() -> Iterator[None]:
    """Requests made inside (and in tasks started inside) are marked as the audit's."""
    token = _auditing.set(True)
    try:
        yield
    finally:
        _auditing.reset(token)


class _Answer:
    outcome = "ok"


@contextlib.contextmanager
def _counted(operation: str) -> Iterator[_Answer]:
    """Count the provider's answer to ``operation`` by what it meant for the money: ok,
    declined (set by the caller, from the answer), refused (a 4xx), unknown (no answer we
    can believe) or unavailable (never reached)."""
    answer = _Answer()
    try:
        yield answer
    except ProviderRefused:
        answer.outcome = "refused"
        raise
    except OutcomeUnknown:
        answer.outcome = "unknown"
        raise
    except ProviderUnavailable:
        answer.outcome = "unavailable"
        raise
    finally:
        _OUTCOMES[(operation, answer.outcome)].inc()


_OUTCOMES = {
    (operation, outcome): payment_provider_outcomes.labels("payments", operation, outcome)
    for operation in ("authorize", "capture", "void", "refund")
    for outcome in ("ok", "declined", "refused", "unknown", "unavailable")
}


class ProviderClient:
    """The provider's API as calls through the platform's HTTP client, as the dependency
    ``payment-provider`` (its timeout, breaker and bulkhead are that dependency's policy)."""

    def __init__(self, http: HttpClient, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        key: str | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        headers = {PURPOSE_HEADER: "audit"} if _auditing.get() else {}
        if body is not None:
            headers["content-type"] = "application/json"
        if key is not None:
            headers["idempotency-key"] = key
        try:
            response = await self._http.request(
                DEPENDENCY,
                self.base_url,
                method,
                path,
                body=body,
                headers=headers,
                params=params,
                # The provider replays a keyed request; a lookup changes nothing.
                repeatable=key is not None or method == "GET",
                propagate=True,
            )
        except NotSent as exc:
            raise ProviderUnavailable(f"cannot reach the payment provider: {exc}") from exc
        except (ServiceUnavailable, DeadlineExceeded) as exc:
            # Held back before sending (an open breaker, a full bulkhead, no time left).
            raise ProviderUnavailable(f"the payment provider was not called: {exc}") from exc
        except TimeoutError as exc:
            raise OutcomeUnknown("the payment provider did not answer in time") from exc
        except ConnectionError as exc:
            # The request may have reached the provider before the connection broke.
            raise OutcomeUnknown(f"the connection to the payment provider broke: {exc}") from exc
        return response.status, response.body

    async def _send(self, method: str, path: str, expected: int = 200, **kwargs: Any) -> bytes:
        status, payload = await self._call(method, path, **kwargs)
        if status < 400:
            if status != expected:
                raise UntrustedAnswer(f"the payment provider answered {status}, not {expected}")
            if len(payload) > MAX_ANSWER_BYTES:
                raise UntrustedAnswer(f"the payment provider answered {len(payload)} bytes")
            return payload
        if status in _AMBIGUOUS_STATUSES:
            raise OutcomeUnknown(f"the payment provider answered {status}")
        if status >= 500:
            raise ProviderUnavailable(f"the payment provider answered {status}")
        try:
            problem = _problem.decode(payload)
        except msgspec.DecodeError:
            problem = {}
        slug = str(problem.get("type", "")).rsplit("/", 1)[-1]
        raise ProviderRefused(status, slug, str(problem.get("detail", "")))

    async def authorize(
        self, key: str, amount: int, currency: str, card_number: str, metadata: dict[str, str]
    ) -> Intent:
        body = _encode(
            _AuthorizeBody(
                amount=amount, currency=currency, card_number=card_number, metadata=metadata
            )
        )
        with _counted("authorize") as answer:
            payload = await self._send("POST", "/v1/payment_intents", 201, body=body, key=key)
            intent = _decoded(_intent_decoder, payload)
            expect_authorization(intent, key, amount, currency)
            if intent.status == "declined":
                answer.outcome = "declined"
        return intent

    async def find_by_key(self, key: str) -> Intent | None:
        """The intent an authorization with ``key`` created; None if it never took effect."""
        try:
            payload = await self._send(
                "GET", "/v1/payment_intents", params={"idempotency_key": key}
            )
        except ProviderRefused as exc:
            if exc.status == 404:
                return None
            raise
        intent = _decoded(_intent_decoder, payload)
        _expect(intent.idempotency_key == key, "an intent of another key")
        return intent

    async def get(self, intent_id: str) -> Intent | None:
        try:
            payload = await self._send("GET", f"/v1/payment_intents/{intent_id}")
        except ProviderRefused as exc:
            if exc.status == 404:
                return None
            raise
        intent = _decoded(_intent_decoder, payload)
        _expect(intent.id == intent_id, "another intent")
        return intent

    async def capture(self, intent_id: str, key: str, amount: int) -> Intent:
        """Captures the whole authorization, of ``amount``."""
        with _counted("capture"):
            payload = await self._send(
                "POST", f"/v1/payment_intents/{intent_id}/capture", body=b"{}", key=key
            )
            intent = _decoded(_intent_decoder, payload)
            _expect_intent(intent, intent_id, amount)
            _expect(intent.status == "captured", f"a capture leaving the intent {intent.status}")
            _expect(intent.captured_amount == amount, "a capture of part of the amount")
        return intent

    async def void(self, intent_id: str, key: str, amount: int) -> Intent:
        """Releases the authorization of ``amount``."""
        with _counted("void"):
            payload = await self._send("POST", f"/v1/payment_intents/{intent_id}/void", key=key)
            intent = _decoded(_intent_decoder, payload)
            _expect_intent(intent, intent_id, amount)
            _expect(intent.status == "voided", f"a void leaving the intent {intent.status}")
        return intent

    async def refund(self, intent_id: str, key: str, amount: int) -> Refund:
        with _counted("refund"):
            payload = await self._send(
                "POST",
                f"/v1/payment_intents/{intent_id}/refunds",
                201,
                body=_encode(_RefundBody(amount=amount)),
                key=key,
            )
            refund = _decoded(_refund_decoder, payload)
            _expect(refund.payment_intent == intent_id, "a refund of another intent")
            _expect(refund.amount == amount, f"a refund of {refund.amount}, not {amount}")
        return refund


def expect_authorization(intent: Intent, key: str, amount: int, currency: str) -> None:
    """Raises :class:`UntrustedAnswer` unless ``intent`` is what an authorization with ``key``
    of ``amount`` ``currency`` must have made: authorized or declined, nothing captured."""
    _expect(intent.idempotency_key == key, "an intent of another key")
    _expect(
        (intent.amount, intent.currency) == (amount, currency),
        f"an authorization of {intent.amount} {intent.currency}, not {amount} {currency}",
    )
    _expect(
        intent.status in ("authorized", "declined"),
        f"a new authorization already {intent.status}",
    )


def _expect_intent(intent: Intent, intent_id: str, amount: int) -> None:
    _expect(intent.id == intent_id, "another intent")
    _expect(intent.amount == amount, f"an intent of {intent.amount}, not {amount}")


def _decoded(decoder: msgspec.json.Decoder[T], payload: bytes) -> T:
    try:
        return decoder.decode(payload)
    except msgspec.DecodeError as exc:  # ValidationError too: a wrong shape
        raise UntrustedAnswer(f"the payment provider's answer is malformed: {exc}") from None


def _expect(holds: bool, otherwise: str) -> None:
    if not holds:
        raise UntrustedAnswer(f"the payment provider answered with {otherwise}")
