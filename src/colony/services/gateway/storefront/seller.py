"""The seller area: own listings with their stock, and the forms to list, edit, stock and
delist products."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import ColonyError, Conflict, InvalidInput, NotFound
from colony.platform.security import Actor
from colony.services.catalog.api import Listing, ListingChanges, ListingDraft
from colony.services.gateway.api_v1 import StockReceipt
from colony.services.gateway.storefront.forms import (
    FormInvalid,
    convert,
    read_form,
    read_price,
)
from colony.services.gateway.storefront.money import amount_text
from colony.services.gateway.storefront.once import new_form_key, submitted_once
from colony.services.gateway.storefront.session import here, redirect, require_role
from colony.services.gateway.storefront.site import Site

PAGE_SIZE = 50
CURRENCIES = {"EUR": "Euro (€)", "USD": "US dollar ($)", "GBP": "Pound sterling (£)"}
LABELS = {
    "title": "Title",
    "description": "Description",
    "category": "Category",
    "price_minor": "Price",
    "price": "Price",
    "currency": "Currency",
    "image_url": "Image URL",
    "quantity": "Quantity",
}
ALIASES = {"price_minor": "price"}
# What a redirect back to the dashboard may say; a fixed list, so no text can be injected.
NOTICES = {
    "created": "Your listing is live.",
    "updated": "Your changes are saved.",
    "unchanged": "Nothing was changed.",
    "stocked": "Stock received.",
    "delisted": "The listing is delisted.",
}
# Service refusals a form shows next to its fields; anything else becomes an error page.
FORM_ERRORS = (InvalidInput, Conflict)


def listing_data(fields: dict[str, str]) -> dict[str, Any]:
    """The listing form's fields as ListingDraft's (a typed price, an empty URL = none)."""
    return {
        "title": fields.get("title", "").strip(),
        # Browsers send line breaks as CRLF; stored as typed otherwise.
        "description": fields.get("description", "").replace("\r\n", "\n").strip(),
        "category": fields.get("category", ""),
        "price_minor": read_price(fields.get("price", ""), "price", "Price"),
        "currency": fields.get("currency", ""),
        "image_url": fields.get("image_url", "").strip() or None,
    }


def form_of(listing: Listing) -> dict[str, str]:
    return {
        "title": listing.title,
        "description": listing.description,
        "category": listing.category,
        "price": amount_text(listing.price_minor),
        "currency": listing.currency,
        "image_url": listing.image_url or "",
    }


def routes(site: Site) -> list[Route]:
    catalog, inventory = site.backends.catalog, site.backends.inventory

    async def seller(request: Request, next_path: str | None = None) -> Actor:
        return require_role(await site.viewer(request), "seller", next_path or here(request))

    async def dashboard(
        request: Request, actor: Actor, errors: dict[str, str] | None = None, status: int = 200
    ) -> Response:
        """Own listings; re-shown with ``errors`` by listing id when a row's form fails."""
        try:
            page = max(1, min(int(request.query_params.get("page", "1")), 10_000))
        except ValueError:
            page = 1
        listings = await catalog.seller_listings(actor, page, PAGE_SIZE)
        try:
            stock: dict[str, int] | None = await inventory.availability(
                [item.id for item in listings.items]
            )
        except ColonyError:
            stock = None  # the table is still useful without the stock column's numbers
        pages = max(1, -(-listings.total // PAGE_SIZE))
        return await site.render(
            request,
            "seller.html",
            {
                "listings": listings,
                "stock": stock,
                "errors": errors or {},
                "notice": NOTICES.get(request.query_params.get("notice", "")),
                "page": page,
                "pages": pages,
                "form_key": new_form_key(),
                "category_names": await site.category_names(),
            },
            status=status,
        )

    async def listing_form(
        request: Request,
        form: dict[str, str],
        listing: Listing | None = None,
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        return await site.render(
            request,
            "listing_form.html",
            {
                "form": form,
                "listing": listing,
                "errors": errors or {},
                "category_names": await site.category_names(),
                "currencies": CURRENCIES,
                "form_key": form.get("form_key") or new_form_key(),
            },
            status=status,
        )

    async def own_listing(actor: Actor, listing_id: str) -> Listing:
        listing = await catalog.get_listing(listing_id)
        actor.require_owner(listing.seller_id, "listing")
        return listing

    @site.page
    async def home(request: Request) -> Response:
        return await dashboard(request, await seller(request))

    @site.page
    async def new_form(request: Request) -> Response:
        await seller(request)
        return await listing_form(request, {"currency": "EUR"})

    @site.page
    async def create(request: Request) -> Response:
        fields = await read_form(request)
        actor = await seller(request, "/seller/listings/new")
        try:
            draft = convert(listing_data(fields), ListingDraft, LABELS, ALIASES)
            with submitted_once(request, actor, fields):
                await catalog.create_listing(actor, draft)
        except FormInvalid as exc:
            return await listing_form(request, fields, None, exc.errors, exc.status)
        except FORM_ERRORS as exc:
            failure = FormInvalid.from_service(exc, LABELS)
            return await listing_form(request, fields, None, failure.errors, failure.status)
        return redirect("/seller?notice=created")

    @site.page
    async def edit_form(request: Request) -> Response:
        actor = await seller(request)
        listing = await own_listing(actor, request.path_params["listing_id"])
        return await listing_form(request, form_of(listing), listing)

    @site.page
    async def update(request: Request) -> Response:
        fields = await read_form(request)
        listing_id = request.path_params["listing_id"]
        actor = await seller(request, f"/seller/listings/{listing_id}/edit")
        listing = await own_listing(actor, listing_id)
        try:
            # Only what differs is sent, so the change event names exactly what changed.
            changes = {
                name: value
                for name, value in listing_data(fields).items()
                if getattr(listing, name) != value
            }
            if not changes:
                return redirect("/seller?notice=unchanged")
            await catalog.update_listing(
                actor, listing.id, convert(changes, ListingChanges, LABELS, ALIASES)
            )
        except FormInvalid as exc:
            return await listing_form(request, fields, listing, exc.errors, exc.status)
        except FORM_ERRORS as exc:
            failure = FormInvalid.from_service(exc, LABELS)
            return await listing_form(request, fields, listing, failure.errors, failure.status)
        return redirect("/seller?notice=updated")

    @site.page
    async def receive_stock(request: Request) -> Response:
        fields = await read_form(request)
        actor = await seller(request, "/seller")
        listing_id = request.path_params["listing_id"]
        try:
            receipt = convert({"quantity": fields.get("quantity", "")}, StockReceipt, LABELS)
            with submitted_once(request, actor, fields):
                await inventory.receive_stock(actor, listing_id, receipt.quantity)
        except FormInvalid as exc:
            return await dashboard(request, actor, {listing_id: exc.message}, exc.status)
        except (*FORM_ERRORS, NotFound) as exc:
            return await dashboard(request, actor, {listing_id: exc.detail}, exc.status)
        return redirect("/seller?notice=stocked")

    @site.page
    async def delist(request: Request) -> Response:
        await read_form(request)
        actor = await seller(request, "/seller")
        await catalog.delist(actor, request.path_params["listing_id"])
        return redirect("/seller?notice=delisted")

    return [
        Route("/seller", home, methods=["GET"]),
        Route("/seller/listings/new", new_form, methods=["GET"]),
        Route("/seller/listings/new", create, methods=["POST"]),
        Route("/seller/listings/{listing_id}/edit", edit_form, methods=["GET"]),
        Route("/seller/listings/{listing_id}/edit", update, methods=["POST"]),
        Route("/seller/listings/{listing_id}/stock", receive_stock, methods=["POST"]),
        Route("/seller/listings/{listing_id}/delist", delist, methods=["POST"]),
    ]
