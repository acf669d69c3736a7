"""Pages anyone can see: the home page, search, and a product's page."""

from __future__ import annotations

import asyncio
import math
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import ColonyError
from colony.services.catalog.api import Listing, SearchPage, SearchQuery
from colony.services.gateway.fallbacks import recommendations_or_none
from colony.services.gateway.storefront.forms import FormInvalid, convert, read_price
from colony.services.gateway.storefront.site import Site

NEWEST_COUNT = 12
RECOMMENDATION_COUNT = 4
PAGE_SIZE = 20
SORTS = {
    "relevance": "Best match",
    "newest": "Newest first",
    "price_asc": "Price: low to high",
    "price_desc": "Price: high to low",
}
SEARCH_FIELDS = ("q", "category", "min_price", "max_price", "sort")
SEARCH_LABELS = {
    "q": "Search text",
    "category": "Category",
    "min_price": "Minimum price",
    "max_price": "Maximum price",
    "sort": "Sort order",
    "page": "Page",
}


def parse_search(form: dict[str, str], page: str) -> SearchQuery:
    """The search form (prices typed as amounts) as the catalog's query."""
    data: dict[str, object] = {name: form[name] for name in ("q", "category", "sort") if form[name]}
    for name in ("min_price", "max_price"):
        if form[name]:
            data[name] = read_price(form[name], name, SEARCH_LABELS[name], minimum=0)
    if page:
        data["page"] = page
    query = convert({**data, "page_size": PAGE_SIZE}, SearchQuery, SEARCH_LABELS)
    low, high = query.min_price, query.max_price
    if low is not None and high is not None and low > high:
        raise FormInvalid.one("max_price", "Maximum price must not be below the minimum.")
    return query


def page_links(form: dict[str, str], result: SearchPage) -> dict[str, object]:
    """Page N of M, and links to the neighbours that keep the rest of the search."""
    pages = max(1, math.ceil(result.total / result.page_size))
    kept = {name: value for name, value in form.items() if value}

    def url(page: int) -> str:
        return "/search?" + urlencode({**kept, "page": page})

    return {
        "page": result.page,
        "pages": pages,
        "previous_url": url(result.page - 1) if result.page > 1 else None,
        "next_url": url(result.page + 1) if result.page < pages else None,
    }


async def listing_page(
    site: Site,
    request: Request,
    listing_id: str,
    *,
    errors: dict[str, str] | None = None,
    quantity: str = "1",
    status: int = 200,
) -> Response:
    """A product's page; also re-shown when adding it to the cart went wrong."""
    listing = await site.backends.catalog.get_listing(listing_id)  # NotFound: a 404 page
    available, together = await asyncio.gather(
        _available(site, listing.id), bought_together(site, listing.id)
    )
    return await site.render(
        request,
        "listing.html",
        {
            "listing": listing,
            "available": available,
            "bought_together": together,
            "category_names": await site.category_names(),
            "errors": errors or {},
            "quantity": quantity,
        },
        status=status,
    )


async def _available(site: Site, listing_id: str) -> int | None:
    try:
        return (await site.backends.inventory.availability([listing_id])).get(listing_id, 0)
    except ColonyError:
        return None  # the page still sells; it just cannot say how many are left


async def bought_together(site: Site, listing_id: str) -> list[Listing]:
    """Listings bought with this one that are still for sale, best first; none when
    recommendations is slow or away, so it never delays or breaks the product page."""
    found = await recommendations_or_none(
        site.backends.recommendations,
        listing_id,
        RECOMMENDATION_COUNT,
        site.settings.recommendations_timeout_seconds,
    )
    if not found:
        return []
    try:
        listings = await site.backends.catalog.get_listings([r.listing_id for r in found])
    except Exception:  # a best-effort section: whatever goes wrong, the page goes without it
        return []
    by_id = {item.id: item for item in listings if item.status == "active"}
    return [by_id[r.listing_id] for r in found if r.listing_id in by_id]


def routes(site: Site) -> list[Route]:
    catalog = site.backends.catalog

    @site.page
    async def home(request: Request) -> Response:
        newest = await catalog.search(SearchQuery(sort="newest", page_size=NEWEST_COUNT))
        return await site.render(
            request,
            "home.html",
            {
                "categories": await site.categories(),
                "listings": newest.items,
                "category_names": await site.category_names(),
            },
        )

    @site.page
    async def search(request: Request) -> Response:
        params = request.query_params
        form = {name: params.get(name, "").strip() for name in SEARCH_FIELDS}
        values: dict[str, object] = {
            "form": form,
            "sorts": SORTS,
            "category_names": await site.category_names(),
            "errors": {},
        }
        try:
            result = await catalog.search(parse_search(form, params.get("page", "").strip()))
        except FormInvalid as exc:
            values["errors"] = exc.errors
            return await site.render(request, "search.html", values, status=exc.status)
        values.update(result=result, **page_links(form, result))
        return await site.render(request, "search.html", values)

    @site.page
    async def listing(request: Request) -> Response:
        return await listing_page(site, request, request.path_params["listing_id"])

    return [
        Route("/", home, methods=["GET"]),
        Route("/search", search, methods=["GET"]),
        Route("/listings/{listing_id}", listing, methods=["GET"]),
    ]
