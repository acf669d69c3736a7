"""``colony verify``: the brief's invariants, checked against a running system.

Each service answers for its own data through its ``audit`` (never by another reading its
tables); the cross-service checks — the ledger against the orders, authorizations against
order states — are made here, from those answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from colony.platform.clock import utc_now
from colony.platform.runtime import Runtime
from colony.platform.security import Actor
from colony.services.delivery.api import DeliveryApi
from colony.services.inventory.api import InventoryApi
from colony.services.orders.api import OrdersApi
from colony.services.payments.api import PaymentsApi

SYSTEM = Actor.system("verify")


@dataclass
class Check:
    name: str
    counts: dict[str, int]
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def _sample(items: list[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


async def verify(runtime: Runtime, outbox_bound_seconds: float = 30.0) -> list[Check]:
    inventory = await runtime.client(InventoryApi).audit(SYSTEM)
    payments = await runtime.client(PaymentsApi).audit(SYSTEM)
    orders = await runtime.client(OrdersApi).audit(SYSTEM)
    delivery = await runtime.client(DeliveryApi).audit(SYSTEM)
    checks: list[Check] = []

    stock = Check(
        "stock conserved",
        {"listings": inventory.listings, "reserved units": inventory.reserved_units},
    )
    if inventory.unbalanced:
        stock.violations.append(
            f"available + reserved + sold != received for {_sample(inventory.unbalanced)}"
        )
    checks.append(stock)

    ledger = Check(
        "ledger balanced",
        {
            "transactions": payments.ledger_transactions,
            "sum (minor units)": payments.ledger_sum_minor,
        },
    )
    if payments.ledger_sum_minor != 0:
        ledger.violations.append(f"the ledger sums to {payments.ledger_sum_minor}, not 0")
    if payments.unbalanced_transactions:
        ledger.violations.append(
            f"unbalanced transactions: {_sample(payments.unbalanced_transactions)}"
        )
    if payments.escrow_mismatches:
        ledger.violations.append(
            f"escrow disagrees with payments: {_sample(payments.escrow_mismatches)}"
        )
    checks.append(ledger)

    matching = Check("ledger matches orders", {"terminal orders": len(orders.owed)})
    for order_id, owed in sorted(orders.owed.items()):
        charged = payments.by_order.get(order_id, 0)
        if charged != owed:
            matching.violations.append(f"order {order_id}: owes {owed}, charged {charged}")
    checks.append(matching)

    charges = Check("no double charge", {"payments": payments.payments})
    if payments.double_charges:
        charges.violations.append(f"charged twice: {_sample(payments.double_charges)}")
    if payments.provider_mismatches:
        charges.violations.append(
            f"the provider disagrees: {_sample(payments.provider_mismatches)}"
        )
    checks.append(charges)

    ending = Check("every order ends", {"orders": orders.orders, **orders.by_status})
    if orders.overdue:
        ending.violations.append(
            f"short of a terminal state past the deadline: {_sample(orders.overdue)}"
        )
    checks.append(ending)

    outbox = Check("outbox delivered", {})
    cutoff = (utc_now() - timedelta(seconds=outbox_bound_seconds)).isoformat()
    for name, db in sorted(runtime.databases.items()):
        pending = await db.fetch_value("SELECT count(*) FROM outbox WHERE published_at IS NULL", ())
        stale = await db.fetch_value(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND created_at < ?",
            (cutoff,),
        )
        outbox.counts[f"{name} pending"] = int(pending)
        if stale:
            outbox.violations.append(
                f"{name}: {stale} events unpublished for over {outbox_bound_seconds:g} s"
            )
    checks.append(outbox)

    terminal = {order_id for order_id in orders.owed}
    dangling = Check(
        "nothing dangling",
        {
            "held units": inventory.held_units,
            "open authorizations": len(payments.open_authorizations),
            "shipments": delivery.shipments,
        },
    )
    if inventory.reserved_units != inventory.held_units:
        dangling.violations.append(
            f"{inventory.reserved_units} units reserved but {inventory.held_units} held"
        )
    if inventory.overdue_holds:
        dangling.violations.append(f"holds past expiry: {_sample(inventory.overdue_holds)}")
    open_after_end = [o for o in payments.open_authorizations if o in terminal]
    if open_after_end:
        dangling.violations.append(
            f"authorizations open on finished orders: {_sample(open_after_end)}"
        )
    checks.append(dangling)
    return checks
