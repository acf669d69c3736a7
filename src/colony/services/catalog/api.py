"""Catalog's public interface: the only module other services may import."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Protocol

import msgspec

from colony.platform.messaging import Event
from colony.platform.runtime.interface import callers, repeatable
from colony.platform.security import Actor
from colony.platform.text import NO_SPACE, NON_BLANK

MAX_PRICE_MINOR = 100_000_000  # 1,000,000.00 in a currency with two decimals
Currency = Literal["EUR", "USD", "GBP"]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NON_BLANK)]
Description = Annotated[str, msgspec.Meta(max_length=5000)]
CategorySlug = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")]
PriceMinor = Annotated[int, msgspec.Meta(ge=1, le=MAX_PRICE_MINOR)]
ImageUrl = Annotated[str, msgspec.Meta(max_length=2000, pattern=rf"^https?://{NO_SPACE}+$")]
ListingStatus = Literal["active", "delisted"]
SortOrder = Literal["relevance", "price_asc", "price_desc", "newest"]


class ListingDraft(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a seller sends to list a product. The seller is the caller, never a field."""

    title: Title
    description: Description = ""
    category: CategorySlug
    price_minor: PriceMinor
    currency: Currency = "EUR"
    image_url: ImageUrl | None = None


class ListingChanges(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A partial update: fields left out stay as they are."""

    title: Title | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    category: CategorySlug | msgspec.UnsetType = msgspec.UNSET
    price_minor: PriceMinor | msgspec.UnsetType = msgspec.UNSET
    currency: Currency | msgspec.UnsetType = msgspec.UNSET
    image_url: ImageUrl | msgspec.UnsetType | None = msgspec.UNSET


class Listing(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    seller_id: str
    title: str
    description: str
    category: str
    price_minor: int
    currency: str
    image_url: str | None
    status: ListingStatus
    created_at: str
    updated_at: str


class ListingSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    seller_id: str
    title: str
    category: str
    price_minor: int
    currency: str
    image_url: str | None


class Category(msgspec.Struct, frozen=True, kw_only=True):
    slug: str
    name: str


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    q: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    category: CategorySlug | None = None
    min_price: Annotated[int, msgspec.Meta(ge=0, le=MAX_PRICE_MINOR)] | None = None
    max_price: Annotated[int, msgspec.Meta(ge=0, le=MAX_PRICE_MINOR)] | None = None
    sort: SortOrder = "relevance"
    page: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    page_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20


class SearchPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ListingSummary]
    total: int
    page: int
    page_size: int


class SellerListings(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Listing]
    total: int
    page: int
    page_size: int


class ListingCreated(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "catalog.listing.created"
    listing_id: str
    seller_id: str
    title: str
    category: str
    price_minor: int
    currency: str


class ListingUpdated(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "catalog.listing.updated"
    listing_id: str
    seller_id: str
    title: str
    category: str
    price_minor: int
    currency: str
    changed: list[str]


class ListingDelisted(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "catalog.listing.delisted"
    listing_id: str
    seller_id: str


class CatalogApi(Protocol):
    service_name: ClassVar[str] = "catalog"

    @callers("gateway")
    @repeatable
    async def categories(self) -> list[Category]: ...

    @callers("gateway")
    @repeatable
    async def search(self, query: SearchQuery) -> SearchPage:
        """Active listings matching the query; eventually consistent, served from a cache."""
        ...

    @callers("gateway", "cart", "inventory")
    @repeatable
    async def get_listing(self, listing_id: str) -> Listing:
        """One listing, active or delisted; 404 if it never existed."""
        ...

    @callers("gateway", "cart", "orders")
    @repeatable
    async def get_listings(self, listing_ids: list[str]) -> list[Listing]:
        """The listings among ``listing_ids`` that exist, in no particular order."""
        ...

    @callers("gateway")
    @repeatable
    async def seller_listings(
        self, actor: Actor, page: int = 1, page_size: int = 50
    ) -> SellerListings: ...

    @callers("gateway")
    async def create_listing(self, actor: Actor, draft: ListingDraft) -> Listing: ...

    @callers("seed", for_users=("seed",))
    async def import_listings(self, actor: Actor, drafts: list[ListingDraft]) -> list[Listing]:
        """Create many listings in one transaction (at most 1,000)."""
        ...

    @callers("gateway")
    async def update_listing(
        self, actor: Actor, listing_id: str, changes: ListingChanges
    ) -> Listing: ...

    @callers("gateway")
    async def delist(self, actor: Actor, listing_id: str) -> Listing: ...
