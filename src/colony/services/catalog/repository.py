"""Catalog's storage: listings and categories in the catalog database."""

from __future__ import annotations

from typing import Any

from colony.platform.storage import Database
from colony.services.catalog.api import (
    Category,
    Listing,
    ListingSummary,
    SearchPage,
    SearchQuery,
)
from colony.services.catalog.search import search_sql

_COLUMNS = (
    "id, seller_id, title, description, category, price_minor, currency, image_url,"
    " status, created_at, updated_at"
)


def listing_from_row(row: Any) -> Listing:
    return Listing(
        id=row[0],
        seller_id=row[1],
        title=row[2],
        description=row[3],
        category=row[4],
        price_minor=row[5],
        currency=row[6],
        image_url=row[7],
        status=row[8],
        created_at=row[9],
        updated_at=row[10],
    )


class ListingRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def categories(self) -> list[Category]:
        rows = await self.db.fetch_all("SELECT slug, name FROM categories ORDER BY position")
        return [Category(slug=r[0], name=r[1]) for r in rows]

    async def category_exists(self, slug: str) -> bool:
        return (
            await self.db.fetch_one("SELECT 1 FROM categories WHERE slug = ?", (slug,)) is not None
        )

    async def get(self, listing_id: str) -> Listing | None:
        row = await self.db.fetch_one(
            f"SELECT {_COLUMNS} FROM listings WHERE id = ?", (listing_id,)
        )
        return None if row is None else listing_from_row(row)

    async def get_many(self, listing_ids: list[str]) -> list[Listing]:
        if not listing_ids:
            return []
        marks = ",".join("?" * len(listing_ids))
        rows = await self.db.fetch_all(
            f"SELECT {_COLUMNS} FROM listings WHERE id IN ({marks})", listing_ids
        )
        return [listing_from_row(r) for r in rows]

    async def by_seller(
        self, seller_id: str, page: int, page_size: int
    ) -> tuple[list[Listing], int]:
        rows = await self.db.fetch_all(
            f"SELECT {_COLUMNS} FROM listings WHERE seller_id = ?"
            " ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
            (seller_id, page_size, (page - 1) * page_size),
        )
        total = await self.db.fetch_value(
            "SELECT count(*) FROM listings WHERE seller_id = ?", (seller_id,)
        )
        return [listing_from_row(r) for r in rows], int(total)

    async def add(self, listing: Listing) -> None:
        await self.db.execute(
            f"INSERT INTO listings ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                listing.id,
                listing.seller_id,
                listing.title,
                listing.description,
                listing.category,
                listing.price_minor,
                listing.currency,
                listing.image_url,
                listing.status,
                listing.created_at,
                listing.updated_at,
            ),
        )

    async def save(self, listing: Listing) -> None:
        await self.db.execute(
            "UPDATE listings SET title = ?, description = ?, category = ?, price_minor = ?,"
            " currency = ?, image_url = ?, status = ?, updated_at = ? WHERE id = ?",
            (
                listing.title,
                listing.description,
                listing.category,
                listing.price_minor,
                listing.currency,
                listing.image_url,
                listing.status,
                listing.updated_at,
                listing.id,
            ),
        )

    async def search(self, query: SearchQuery) -> SearchPage:
        page_sql, count_sql, params = search_sql(query, self.db.dialect)
        rows = await self.db.fetch_all(page_sql, params)
        items = [
            ListingSummary(
                id=r[0],
                seller_id=r[1],
                title=r[2],
                category=r[3],
                price_minor=r[4],
                currency=r[5],
                image_url=r[6],
            )
            for r in rows
        ]
        count_params = {k: v for k, v in params.items() if k not in ("limit", "offset")}
        if query.page == 1 and len(items) < query.page_size:
            total = len(items)
        else:
            total = int(await self.db.fetch_value(count_sql, count_params))
        return SearchPage(items=items, total=total, page=query.page, page_size=query.page_size)
