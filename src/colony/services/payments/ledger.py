"""The double-entry ledger: every transaction's entries sum to zero, checked before writing.

Accounts: ``buyer:{id}`` (money from outside), ``escrow``, ``seller:{id}`` and
``marketplace:fees``. Entries carry their order id, so each order's balances can be audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from colony.platform.clock import utc_now_iso
from colony.platform.ids import new_id
from colony.platform.storage import Database
from colony.services.payments.api import LedgerEntry

Kind = Literal["capture", "payout", "refund"]
ESCROW = "escrow"
FEES = "marketplace:fees"


def buyer_account(buyer_id: str) -> str:
    return f"buyer:{buyer_id}"


def seller_account(seller_id: str) -> str:
    return f"seller:{seller_id}"


class UnbalancedTransaction(Exception):
    """A bug, never a user error: the code computed legs that do not cancel out."""


async def post(
    db: Database, order_id: str, kind: Kind, currency: str, legs: Mapping[str, int]
) -> str | None:
    """Write one balanced transaction in the open database transaction; zero legs are left
    out, and nothing is written if every leg is zero. Returns the transaction id."""
    if not db.in_transaction():
        raise RuntimeError("ledger.post must run inside the transaction of the state change")
    if sum(legs.values()) != 0:
        raise UnbalancedTransaction(f"{kind} for {order_id} does not balance: {dict(legs)}")
    entries = [(account, amount) for account, amount in legs.items() if amount != 0]
    if not entries:
        return None
    transaction_id, at = new_id(), utc_now_iso()
    for account, amount in entries:
        await db.execute(
            "INSERT INTO ledger_entries (transaction_id, account, amount_minor, currency,"
            " order_id, kind, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (transaction_id, account, amount, currency, order_id, kind, at),
        )
    return transaction_id


async def entries_for(db: Database, order_id: str) -> list[LedgerEntry]:
    rows = await db.fetch_all(
        "SELECT transaction_id, account, amount_minor, currency, order_id, kind, at"
        " FROM ledger_entries WHERE order_id = ? ORDER BY id",
        (order_id,),
    )
    return [
        LedgerEntry(
            transaction_id=row[0],
            account=row[1],
            amount_minor=row[2],
            currency=row[3],
            order_id=row[4],
            kind=row[5],
            at=row[6],
        )
        for row in rows
    ]


async def totals(db: Database) -> tuple[int, int]:
    """How many transactions there are, and the sum of every entry."""
    row = await db.fetch_one(
        "SELECT count(DISTINCT transaction_id), CAST(coalesce(sum(amount_minor), 0) AS BIGINT)"
        " FROM ledger_entries"
    )
    assert row is not None
    return row[0], row[1]


async def unbalanced(db: Database) -> list[str]:
    """Transactions whose entries do not sum to zero, or that mix currencies."""
    rows = await db.fetch_all(
        "SELECT transaction_id FROM ledger_entries GROUP BY transaction_id"
        " HAVING sum(amount_minor) != 0 OR count(DISTINCT currency) > 1"
        " ORDER BY min(id)"
    )
    return [row[0] for row in rows]


async def balances_by_order(db: Database) -> dict[str, dict[str, int]]:
    """Each order's non-zero balance per account."""
    rows = await db.fetch_all(
        "SELECT order_id, account, CAST(sum(amount_minor) AS BIGINT) FROM ledger_entries"
        " GROUP BY order_id, account HAVING sum(amount_minor) != 0"
    )
    found: dict[str, dict[str, int]] = {}
    for order_id, account, amount in rows:
        found.setdefault(order_id, {})[account] = amount
    return found
