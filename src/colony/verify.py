"""``colony verify``: the brief's invariants, checked against a running system.

Each service answers for its own data through its ``audit`` (never by another reading its
tables), read in one snapshot of its database and stamped with that snapshot's moment; the
cross-service checks — the ledger against the orders, authorizations against order states —
are made here, from those answers.

Two services' snapshots are of two moments, and a busy system moves in between. Two rules
keep an order in flight from passing for a violation:

- Orders are read first. An order becomes terminal only once its payment is settled
  (captured, voided or refunded), so a payments snapshot taken after it already holds what a
  terminal order owes. Read the other way round, an order completing in between showed as
  owing what payments' earlier snapshot had not yet seen charged.
- Whatever is found is looked at once more after a short pause (``recheck_after_seconds``),
  and only what is found both times is reported. A real violation stays put — a corrupt
  ledger row is there on every read — while what was in flight (a refund payments had booked
  and orders had not yet recorded, a payment that moved at the provider after payments'
  snapshot) has settled by then. The pause is far shorter than an order's deadline, so an
  order that never settles is still caught, by "every order ends".

Comparing only terminal orders would not be enough on its own: a completed order can still
be refunded, and the provider is asked after payments' snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from colony.platform.runtime import Runtime
from colony.platform.security import Actor
from colony.services.delivery.api import DeliveryApi, DeliveryAudit
from colony.services.inventory.api import InventoryApi, StockAudit
from colony.services.orders.api import OrdersApi, OrdersAudit
from colony.services.payments.api import PaymentsApi, PaymentsAudit

CALLER = "verify"
"""Who the audits are asked by, whichever process asks: the one caller their lists allow."""
SYSTEM = Actor.system(CALLER)
RECHECK_AFTER_SECONDS = 1.0


@dataclass(frozen=True)
class Finding:
    """One kind of violation and what it names (orders, listings, outboxes), each by its id
    and shown as its text; a finding naming nothing (a sum that is off) is its ``detail``."""

    kind: str
    items: Mapping[str, str] = field(default_factory=dict)
    detail: str = ""

    def render(self) -> str:
        if self.items:
            return f"{self.kind}: {_sample(list(self.items.values()))}"
        return self.detail or self.kind


@dataclass
class Check:
    name: str
    counts: dict[str, int]
    findings: list[Finding] = field(default_factory=list)
    as_of: dict[str, str] = field(default_factory=dict)
    """The moment of each snapshot the check read, by service (ISO 8601, UTC)."""

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def violations(self) -> list[str]:
        return [finding.render() for finding in self.findings]

    def suspect(self, kind: str, items: Iterable[str] | Mapping[str, str]) -> None:
        """A finding for these items, if there are any."""
        named = dict(items) if isinstance(items, Mapping) else {item: item for item in items}
        if named:
            self.findings.append(Finding(kind, named))

    def fail(self, kind: str, detail: str) -> None:
        self.findings.append(Finding(kind, detail=detail))


def _sample(items: list[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


async def verify(
    runtime: Runtime,
    outbox_bound_seconds: float = 30.0,
    recheck_after_seconds: float = RECHECK_AFTER_SECONDS,
) -> list[Check]:
    """Every check; one that finds something is looked at again after
    ``recheck_after_seconds`` and keeps only what it found both times (0: no second look)."""
    first = await _check_once(runtime, outbox_bound_seconds)
    if all(check.ok for check in first) or recheck_after_seconds <= 0:
        return first
    await asyncio.sleep(recheck_after_seconds)
    second = await _check_once(runtime, outbox_bound_seconds)
    return [_confirmed(before, after) for before, after in zip(first, second, strict=True)]


def _confirmed(before: Check, after: Check) -> Check:
    """``after`` keeping only what ``before`` found too: the same kind of finding, and of its
    items those named both times."""
    earlier = {finding.kind: finding for finding in before.findings}
    kept: list[Finding] = []
    for finding in after.findings:
        seen = earlier.get(finding.kind)
        if seen is None:
            continue
        if finding.items or seen.items:
            both = {key: text for key, text in finding.items.items() if key in seen.items}
            if both:
                kept.append(Finding(finding.kind, both))
        else:
            kept.append(finding)
    counts = dict(after.counts)
    settled = _size(before.findings) - _size(kept)
    if settled:
        counts["settled on re-check"] = settled
    return Check(after.name, counts, kept, after.as_of)


def _size(findings: list[Finding]) -> int:
    return sum(len(finding.items) or 1 for finding in findings)


async def _check_once(runtime: Runtime, outbox_bound_seconds: float) -> list[Check]:
    # Orders first: see the module's docstring.
    orders = await runtime.client(OrdersApi, CALLER).audit(SYSTEM)
    payments = await runtime.client(PaymentsApi, CALLER).audit(SYSTEM)
    inventory = await runtime.client(InventoryApi, CALLER).audit(SYSTEM)
    delivery = await runtime.client(DeliveryApi, CALLER).audit(SYSTEM)
    return [
        _stock(inventory),
        _ledger(payments),
        _matching(orders, payments),
        _charges(payments),
        _ending(orders),
        await _outboxes(runtime, outbox_bound_seconds),
        _dangling(inventory, payments, orders, delivery),
    ]


def _stock(inventory: StockAudit) -> Check:
    stock = Check(
        "stock conserved",
        {"listings": inventory.listings, "reserved units": inventory.reserved_units},
        as_of={"inventory": inventory.checked_at},
    )
    stock.suspect("available + reserved + sold != received", inventory.unbalanced)
    return stock


def _ledger(payments: PaymentsAudit) -> Check:
    ledger = Check(
        "ledger balanced",
        {
            "transactions": payments.ledger_transactions,
            "sum (minor units)": payments.ledger_sum_minor,
        },
        as_of={"payments": payments.checked_at},
    )
    if payments.ledger_sum_minor != 0:
        ledger.fail("ledger sum", f"the ledger sums to {payments.ledger_sum_minor}, not 0")
    ledger.suspect("unbalanced transactions", payments.unbalanced_transactions)
    ledger.suspect("escrow disagrees with payments", payments.escrow_mismatches)
    return ledger


def _matching(orders: OrdersAudit, payments: PaymentsAudit) -> Check:
    matching = Check(
        "ledger matches orders",
        {"terminal orders": len(orders.owed)},
        as_of={"orders": orders.checked_at, "payments": payments.checked_at},
    )
    differing = {}
    for order_id, owed in sorted(orders.owed.items()):
        charged = payments.by_order.get(order_id, 0)
        if charged != owed:
            differing[order_id] = f"order {order_id} owes {owed}, charged {charged}"
    matching.suspect("charged other than owed", differing)
    return matching


def _charges(payments: PaymentsAudit) -> Check:
    charges = Check(
        "no double charge",
        {"payments": payments.payments},
        as_of={"payments": payments.checked_at},
    )
    charges.suspect("charged twice", payments.double_charges)
    charges.suspect("the provider disagrees", payments.provider_mismatches)
    return charges


def _ending(orders: OrdersAudit) -> Check:
    ending = Check(
        "every order ends",
        {"orders": orders.orders, **orders.by_status},
        as_of={"orders": orders.checked_at},
    )
    ending.suspect("short of a terminal state past the deadline", orders.overdue)
    return ending


async def _outboxes(runtime: Runtime, outbox_bound_seconds: float) -> Check:
    """Every service's outbox, as the service itself reads it in a snapshot of its own."""
    outbox = Check("outbox delivered", {})
    states = await asyncio.gather(
        *(
            runtime.operations(name, CALLER).outbox(SYSTEM, outbox_bound_seconds)
            for name in sorted(runtime.definitions)
        )
    )
    stale_by_service = {}
    for state in states:
        outbox.as_of[state.service] = state.as_of
        outbox.counts[f"{state.service} pending"] = state.pending
        if state.stale:
            stale_by_service[state.service] = (
                f"{state.service}: {state.stale} events unpublished"
                f" for over {outbox_bound_seconds:g} s"
            )
    outbox.suspect("stale outboxes", stale_by_service)
    return outbox


def _dangling(
    inventory: StockAudit, payments: PaymentsAudit, orders: OrdersAudit, delivery: DeliveryAudit
) -> Check:
    terminal = set(orders.owed)
    dangling = Check(
        "nothing dangling",
        {
            "held units": inventory.held_units,
            "open authorizations": len(payments.open_authorizations),
            "shipments": delivery.shipments,
        },
        as_of={
            "inventory": inventory.checked_at,
            "orders": orders.checked_at,
            "payments": payments.checked_at,
            "delivery": delivery.checked_at,
        },
    )
    if inventory.reserved_units != inventory.held_units:
        dangling.fail(
            "reserved but not held",
            f"{inventory.reserved_units} units reserved but {inventory.held_units} held",
        )
    dangling.suspect("holds past expiry", inventory.overdue_holds)
    dangling.suspect(
        "authorizations open on finished orders",
        [order_id for order_id in payments.open_authorizations if order_id in terminal],
    )
    return dangling
