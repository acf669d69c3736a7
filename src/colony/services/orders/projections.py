"""The order read models: a buyer's history and a seller's queue, projected from events."""

from __future__ import annotations

import msgspec

from colony.platform.eventsourcing import RecordedEvent
from colony.platform.storage import Database
from colony.services.orders import domain

_encode = msgspec.json.Encoder().encode
_STATUS = {"Completed": "completed", "Cancelled": "cancelled"}


def order_id_of(stream_id: str) -> str:
    return stream_id.removeprefix("order-")


class BuyerHistory:
    name = "buyer_orders"

    async def reset(self, db: Database) -> None:
        await db.execute("DELETE FROM buyer_orders")

    async def apply(self, db: Database, event: RecordedEvent) -> None:
        if event.type == "Placed":
            placed = event.decode(domain.Placed)
            await db.execute(
                "INSERT INTO buyer_orders (order_id, buyer_id, status, item_count, total_minor,"
                " currency, created_at, updated_at) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)"
                " ON CONFLICT (order_id) DO NOTHING",
                (
                    placed.order_id,
                    placed.buyer_id,
                    sum(line.quantity for line in placed.lines),
                    placed.total_minor,
                    placed.currency,
                    placed.at,
                    placed.at,
                ),
            )
        elif event.type in _STATUS:
            await db.execute(
                "UPDATE buyer_orders SET status = ?, updated_at = ? WHERE order_id = ?",
                (_STATUS[event.type], event.recorded_at, order_id_of(event.stream_id)),
            )


class SellerQueue:
    name = "seller_orders"

    async def reset(self, db: Database) -> None:
        await db.execute("DELETE FROM seller_orders")

    async def apply(self, db: Database, event: RecordedEvent) -> None:
        order_id = order_id_of(event.stream_id)
        if event.type == "Placed":
            placed = event.decode(domain.Placed)
            for seller_id in sorted({line.seller_id for line in placed.lines}):
                lines = [line for line in placed.lines if line.seller_id == seller_id]
                await db.execute(
                    "INSERT INTO seller_orders (order_id, seller_id, buyer_id, status, lines,"
                    " subtotal_minor, refunded_minor, currency, created_at, updated_at)"
                    " VALUES (?, ?, ?, 'pending', ?, ?, 0, ?, ?, ?)"
                    " ON CONFLICT (order_id, seller_id) DO NOTHING",
                    (
                        order_id,
                        seller_id,
                        placed.buyer_id,
                        _encode(lines),
                        sum(line.line_total_minor for line in lines),
                        placed.currency,
                        placed.at,
                        placed.at,
                    ),
                )
        elif event.type in _STATUS:
            await db.execute(
                "UPDATE seller_orders SET status = ?, updated_at = ? WHERE order_id = ?",
                (_STATUS[event.type], event.recorded_at, order_id),
            )
        elif event.type == "Refunded":
            refunded = event.decode(domain.Refunded)
            await db.execute(
                "UPDATE seller_orders SET refunded_minor = refunded_minor + ?, updated_at = ?"
                " WHERE order_id = ? AND seller_id = ?",
                (refunded.amount_minor, event.recorded_at, order_id, refunded.seller_id),
            )
