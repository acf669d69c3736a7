"""Schemathesis hooks for the fuzzing of the gateway's API (``test_fuzzing.py`` loads them)
and of a service's RPC surface (``test_rpc_fuzzing.py``): the rules a request must also keep
that JSON Schema cannot state, one per operation.

A document says what each field may hold; it cannot say that a category must be one the
catalog has, that a password must not be a common one, that a webhook must point outside,
that the minimum price must not exceed the maximum, or that the cart must not be empty; nor
that an Idempotency-Key used once stays tied to its first request (any POST). Nor, on the
RPC surface, that an authorization's ids, currency, amount and shares be ones payments
takes, that a refund give a reason and name a seller in the order, or that an outbox be
asked about a bound it counts to. So a request the document calls valid may still be
refused with 422 by these operations, and Schemathesis is told so (``RULE_BOUND_OPERATIONS``
and every POST of the gateway, ``RPC_RULE_BOUND_OPERATIONS``); the check here then holds each
such refusal to its rule, so that any other 422 to a valid request still fails the run.
"""

from __future__ import annotations

import re

import schemathesis
from schemathesis import CheckContext, Response
from schemathesis.generation.case import Case

RULES: dict[tuple[str, str], re.Pattern[str]] = {
    ("GET", "/api/v1/listings"): re.compile(r"^min_price must not exceed max_price\.$"),
    ("POST", "/api/v1/listings"): re.compile(r"^Unknown category '.*'\.$", re.DOTALL),
    ("PATCH", "/api/v1/listings/{listing_id}"): re.compile(r"^Unknown category '.*'\.$", re.DOTALL),
    ("POST", "/api/v1/accounts"): re.compile(
        r"^(This password is one of the most common passwords"
        r"|A password of one repeated character"
        r"|A password must not be the e-mail address)"
    ),
    ("PUT", "/api/v1/seller/webhook"): re.compile(
        r"^The webhook URL (.*: webhooks go only to addresses on the public internet"
        r"|has no host|must be an http or https URL)\.$",
        re.DOTALL,
    ),
    ("POST", "/api/v1/orders"): re.compile(r"^The cart is empty\.$"),
    ("POST", "/rpc/authorize"): re.compile(
        r"^((order_id|buyer_id|seller_shares) must be 1 to 100 visible ASCII characters"
        r"|The amount must be between 1 and \d+ minor units"
        r"|Unsupported currency .*"
        r"|The card number must be 12 to 19 digits"
        r"|Name between 1 and \d+ sellers' shares"
        r"|A seller's share cannot be negative"
        r"|The sellers' shares must add up to the amount)\.$",
        re.DOTALL,
    ),
    ("POST", "/rpc/refund"): re.compile(
        r"^(Give a reason of 1 to \d+ characters|Seller .* has no part in this order)\.$",
        re.DOTALL,
    ),
    ("POST", "/platform/outbox"): re.compile(
        r"^stale_after_seconds must be between 0 and 86400\.$"
    ),
}
"""Operation -> the problem details of the rules it keeps beyond its document."""
RPC_PREFIXES = ("/rpc/", "/platform/")
RULE_BOUND_OPERATIONS = sorted(op for op in RULES if op[0] != "POST")
"""Besides every POST, which may meet a reused Idempotency-Key."""
RPC_RULE_BOUND_OPERATIONS = sorted(op for op in RULES if op[1].startswith(RPC_PREFIXES))
"""The operations of a service's RPC surface (each a POST) that keep rules of their own."""
KEY_REUSED = "/problems/idempotency-key-reused"


@schemathesis.check
def refused_only_by_its_rules(ctx: CheckContext, response: Response, case: Case) -> None:
    """A valid request (by the document) that one of these operations refuses with 422 was
    refused for one of its rules, not for anything the document could have said."""
    meta = case.meta
    if response.status_code != 422 or meta is None or not meta.generation.mode.is_positive:
        return
    method = case.operation.method.upper()
    rule = RULES.get((method, case.operation.path))
    if rule is None and method != "POST":
        return  # the built-in positive_data_acceptance check judges every other operation
    problem = response.json()
    if method == "POST" and problem.get("type") == KEY_REUSED:
        return  # the fuzzer sent a key again with another body: refused, as documented
    detail = str(problem.get("detail", ""))
    assert rule is not None and rule.search(detail), (
        f"A request valid by the document was refused for no rule of"
        f" {method} {case.operation.path}: {detail}"
    )
