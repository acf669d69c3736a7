"""A payment-provider simulator: the third-party dependency the marketplace must survive.

A small Stripe-like HTTP server in its own process, in every topology. It is not a marketplace
service: it owns its own SQLite file (``payment_provider.db`` under ``--data-dir``) and only
the platform's building blocks are shared. Run it with ``colony provider serve`` or
``python -m colony.payment_provider --port 8181 --data-dir DIR``.

Payment API (JSON; amounts in minor units with an ISO currency; errors are RFC 9457 problems):

- ``POST /v1/payment_intents`` ``{amount, currency, card_number, metadata?}`` authorizes.
  **A decline is an answer, not an error**: 201 with ``status: "declined"`` and a
  ``decline_code``, stored and replayed like any other result. Otherwise 201 ``authorized``.
- ``POST /v1/payment_intents/{id}/capture`` ``{}`` or ``{amount}``: captures all or part of
  an authorization, once (200). Anything but ``authorized`` → 409; more than authorized → 409.
- ``POST /v1/payment_intents/{id}/void``: releases an authorization (200; only from
  ``authorized``, else 409).
- ``POST /v1/payment_intents/{id}/refunds`` ``{amount}``: 201 with a refund object; more than
  is left to refund, or an intent not captured → 409. Fully refunded → status ``refunded``.
- ``GET /v1/payment_intents/{id}``; ``GET /v1/payment_intents?idempotency_key=K``: the intent
  that key created, or 404 if no authorization with that key ever took effect. After a timeout
  a client asks this, and never guesses.
- ``GET /health``.

Every POST under ``/v1`` requires an ``Idempotency-Key`` (400 without one). A key is scoped to
the endpoint it was sent to; the same key and body replay the stored response, never a second
effect; the same key with another body is a 422. The key is stored in the transaction of the
effect. Refusals (404, 409, 422) have no effect and are not stored.

Magic card numbers (any other 12-to-19-digit number is approved, subject to ``decline_rate``):
:data:`CARD_APPROVED` 4242424242424242 always approves; :data:`CARD_DECLINED` 4000000000000002
declines with ``card_declined``; :data:`CARD_INSUFFICIENT_FUNDS` 4000000000009995 declines with
``insufficient_funds``. A random decline has the code ``generic_decline``.

Admin API, never faulted: ``GET``/``PUT /admin/behaviour`` ``{latency: {p50_ms, p99_ms},
decline_rate, error_rate, timeout_rate, outage, garbage_rate, wrong_amount_rate,
wrong_state_rate, oversize_rate, slow_body_rate, seed}`` (a PUT replaces it all; invalid values
→ 422; the five bad answers' rates add up to at most 1), ``POST /admin/reset`` (default
behaviour, counters zeroed; the books are kept),
``GET /admin/stats``. How the faults behave is told in :mod:`colony.payment_provider.faults`.
"""

from colony.payment_provider.api import CARD_APPROVED, CARD_DECLINED, CARD_INSUFFICIENT_FUNDS

__all__ = ["CARD_APPROVED", "CARD_DECLINED", "CARD_INSUFFICIENT_FUNDS"]
