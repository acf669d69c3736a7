"""Catalog's service layer: the implementation of :class:`CatalogApi`."""

from __future__ import annotations

import msgspec
from cachetools import TTLCache

from colony.platform.clock import utc_now_iso
from colony.platform.errors import Conflict, InvalidInput, NotFound
from colony.platform.idempotency import idempotent
from colony.platform.ids import new_id
from colony.platform.runtime import ServiceContext
from colony.platform.security import Actor
from colony.services.catalog.api import (
    Category,
    Listing,
    ListingChanges,
    ListingCreated,
    ListingDelisted,
    ListingDraft,
    ListingUpdated,
    SearchPage,
    SearchQuery,
    SellerListings,
)
from colony.services.catalog.repository import ListingRepository

MAX_IMPORT = 1000


class CatalogService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.db = ctx.db
        self.outbox = ctx.outbox
        self.listings = ListingRepository(ctx.db)
        # Search is the hottest read and may be stale for a moment (the brief: eventual reads,
        # cached); this replica's own writes clear it at once.
        self._search_cache: TTLCache[SearchQuery, SearchPage] = TTLCache(
            maxsize=4096, ttl=ctx.settings.search_cache_seconds
        )
        self._categories: list[Category] | None = None

    async def categories(self) -> list[Category]:
        if self._categories is None:
            self._categories = await self.listings.categories()
        return self._categories

    async def search(self, query: SearchQuery) -> SearchPage:
        cached = self._search_cache.get(query)
        if cached is not None:
            return cached
        page = await self.listings.search(query)
        self._search_cache[query] = page
        return page

    async def get_listing(self, listing_id: str) -> Listing:
        listing = await self.listings.get(listing_id)
        if listing is None:
            raise NotFound("No such listing.")
        return listing

    async def get_listings(self, listing_ids: list[str]) -> list[Listing]:
        if len(listing_ids) > 500:
            raise InvalidInput("At most 500 listings at a time.")
        return await self.listings.get_many(listing_ids)

    async def seller_listings(
        self, actor: Actor, page: int = 1, page_size: int = 50
    ) -> SellerListings:
        actor.require("seller")
        page, page_size = max(page, 1), min(max(page_size, 1), 100)
        items, total = await self.listings.by_seller(actor.id, page, page_size)
        return SellerListings(items=items, total=total, page=page, page_size=page_size)

    async def _check_category(self, slug: str) -> None:
        if not any(c.slug == slug for c in await self.categories()):
            raise InvalidInput(f"Unknown category {slug!r}.", field="category")

    @idempotent
    async def create_listing(self, actor: Actor, draft: ListingDraft) -> Listing:
        return (await self._create(actor, [draft]))[0]

    @idempotent
    async def import_listings(self, actor: Actor, drafts: list[ListingDraft]) -> list[Listing]:
        if not 1 <= len(drafts) <= MAX_IMPORT:
            raise InvalidInput(f"Import between 1 and {MAX_IMPORT} listings at a time.")
        return await self._create(actor, drafts)

    async def _create(self, actor: Actor, drafts: list[ListingDraft]) -> list[Listing]:
        actor.require("seller")
        if any(not d.title.strip() for d in drafts):
            raise InvalidInput("A title must not be blank.", field="title")
        for slug in {d.category for d in drafts}:
            await self._check_category(slug)
        now = utc_now_iso()
        created = [
            Listing(
                id=new_id(),
                seller_id=actor.id,
                title=d.title.strip(),
                description=d.description.strip(),
                category=d.category,
                price_minor=d.price_minor,
                currency=d.currency,
                image_url=d.image_url,
                status="active",
                created_at=now,
                updated_at=now,
            )
            for d in drafts
        ]
        async with self.db.transaction():
            for listing in created:
                await self.listings.add(listing)
                await self.outbox.add(
                    ListingCreated(
                        listing_id=listing.id,
                        seller_id=listing.seller_id,
                        title=listing.title,
                        category=listing.category,
                        price_minor=listing.price_minor,
                        currency=listing.currency,
                    ),
                    key=listing.id,
                )
        self._search_cache.clear()
        return created

    async def _owned(self, actor: Actor, listing_id: str) -> Listing:
        actor.require("seller")
        listing = await self.get_listing(listing_id)
        actor.require_owner(listing.seller_id, "listing")
        return listing

    async def update_listing(
        self, actor: Actor, listing_id: str, changes: ListingChanges
    ) -> Listing:
        changed = {
            name: value
            for name in changes.__struct_fields__
            if (value := getattr(changes, name)) is not msgspec.UNSET
        }
        if not changed:
            raise InvalidInput("Nothing to change.")
        for text_field in ("title", "description"):
            if text_field in changed:
                changed[text_field] = changed[text_field].strip()
        if changed.get("title") == "":
            raise InvalidInput("A title must not be blank.", field="title")
        if "category" in changed:
            await self._check_category(changed["category"])
        async with self.db.transaction():
            listing = await self._owned(actor, listing_id)
            if listing.status == "delisted":
                raise Conflict("A delisted listing cannot be changed.")
            updated = msgspec.structs.replace(listing, **changed, updated_at=utc_now_iso())
            await self.listings.save(updated)
            await self.outbox.add(
                ListingUpdated(
                    listing_id=updated.id,
                    seller_id=updated.seller_id,
                    title=updated.title,
                    category=updated.category,
                    price_minor=updated.price_minor,
                    currency=updated.currency,
                    changed=sorted(changed),
                ),
                key=updated.id,
            )
        self._search_cache.clear()
        return updated

    async def delist(self, actor: Actor, listing_id: str) -> Listing:
        async with self.db.transaction():
            listing = await self._owned(actor, listing_id)
            if listing.status == "delisted":
                return listing
            delisted = msgspec.structs.replace(listing, status="delisted", updated_at=utc_now_iso())
            await self.listings.save(delisted)
            await self.outbox.add(
                ListingDelisted(listing_id=listing.id, seller_id=listing.seller_id),
                key=listing.id,
            )
        self._search_cache.clear()
        return delisted
