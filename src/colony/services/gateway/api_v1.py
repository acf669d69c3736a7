"""The public REST API, ``/api/v1``: each endpoint maps one request to service calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import ColonyError, InvalidInput
from colony.platform.web.api import ApiRouter, Call
from colony.services.cart.api import Cart, LineQuantity
from colony.services.catalog.api import (
    Category,
    Listing,
    ListingChanges,
    ListingDraft,
    SearchPage,
    SearchQuery,
    SellerListings,
)
from colony.services.gateway.auth import Authenticator, bearer_token, client_address
from colony.services.gateway.backends import Backends
from colony.services.gateway.last_good import UNREACHABLE, LastGood
from colony.services.identity.api import Account, Credentials, Jwks, Registration, TokenGrant
from colony.services.inventory.api import Delta, Quantity, Reason, StockLevel

TOKEN_PATHS = frozenset({"/api/v1/tokens"})
"""Where answers carry a token: no cache, shared or the browser's own, may keep them."""


class PublicApi(ApiRouter):
    """The API's router, adding to every endpoint's answer what its problem or its path calls
    for: ``Retry-After`` on a 429 a service raised (its problem carries ``retry_after``), and
    ``Cache-Control: no-store`` on answers that carry a token."""

    def routes(self) -> list[Route]:
        return [
            Route(
                route.path,
                _with_headers(route.endpoint, no_store=route.path in TOKEN_PATHS),
                methods=list(route.methods or ()),
            )
            for route in super().routes()
        ]


def _with_headers(
    endpoint: Callable[[Request], Awaitable[Response]], *, no_store: bool
) -> Callable[[Request], Awaitable[Response]]:
    async def answer(request: Request) -> Response:
        response = await endpoint(request)
        if response.status_code == 429 and "retry-after" not in response.headers:
            try:
                seconds = msgspec.json.decode(response.body).get("retry_after")
            except (msgspec.DecodeError, AttributeError):
                seconds = None
            if isinstance(seconds, int | float) and seconds > 0:
                response.headers["retry-after"] = str(max(1, round(seconds)))
        if no_store:
            response.headers["cache-control"] = "no-store"
            response.headers["pragma"] = "no-cache"
        return response

    return answer


class ListingDetail(msgspec.Struct, frozen=True, kw_only=True):
    listing: Listing
    available: int | None
    """Units in stock now; null when inventory cannot be asked."""


class SearchAnswer(SearchPage, frozen=True, kw_only=True):
    stale: bool = False
    """True when the catalog could not be asked and this is the last answer it gave to the
    same search, kept by the gateway (at most ``COLONY_SEARCH_STALE_SECONDS`` old)."""


class StockReceipt(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    quantity: Quantity


class StockAdjustment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    delta: Delta
    reason: Reason


class CartItem(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    listing_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    quantity: LineQuantity = 1


class CartQuantity(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    quantity: Annotated[int, msgspec.Meta(ge=0, le=99)]


ListingChangesBody = Annotated[ListingChanges, msgspec.Meta(extra_json_schema={"minProperties": 1})]
"""A change names at least one field: catalog refuses an empty one (nothing to change)."""


class SellerListingsQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    page: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    page_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 50


def build_api(
    backends: Backends, auth: Authenticator, search_stale_seconds: float = 0.0
) -> ApiRouter:
    api = PublicApi("/api/v1", auth.bearer)
    last_searches: LastGood[SearchPage] = LastGood(search_stale_seconds)
    identity, catalog, inventory, cart = (
        backends.identity,
        backends.catalog,
        backends.inventory,
        backends.cart,
    )

    # --- identity -------------------------------------------------------------------------
    @api.route(
        "POST",
        "/accounts",
        summary="Register a buyer or seller account",
        tag="identity",
        body=Registration,
        response=Account,
        status=201,
        errors=(422,),
    )
    async def register(call: Call) -> Account:
        # An e-mail that has an account already gets the same answer (an account never
        # stored), so that this cannot tell who has one; identity tells the owner.
        return await identity.register(call.body)

    @api.route(
        "POST",
        "/tokens",
        summary="Log in: exchange e-mail and password for a token",
        tag="identity",
        body=Credentials,
        response=TokenGrant,
        errors=(401, 429),
    )
    async def issue_token(call: Call) -> TokenGrant:
        return await identity.issue_token(call.body, client_address(call.request))

    @api.route(
        "POST",
        "/tokens/revoke",
        summary="Log out: revoke the token this request carries",
        tag="identity",
        auth=True,
    )
    async def revoke_token(call: Call) -> None:
        await auth.revoke(bearer_token(call.request))

    @api.route(
        "GET", "/me", summary="The signed-in account", tag="identity", response=Account, auth=True
    )
    async def me(call: Call) -> Account:
        return await identity.get_account(call.require_actor().id)

    @api.route(
        "GET",
        "/jwks",
        summary="Public keys that verify access tokens (JWKS)",
        tag="identity",
        response=Jwks,
    )
    async def jwks(call: Call) -> Jwks:
        return await identity.jwks()

    # --- catalog --------------------------------------------------------------------------
    @api.route("GET", "/categories", summary="Categories", tag="catalog", response=list[Category])
    async def categories(call: Call) -> list[Category]:
        return await catalog.categories()

    @api.route(
        "GET",
        "/listings",
        summary="Search listings",
        tag="catalog",
        query=SearchQuery,
        response=SearchAnswer,
        errors=(503,),
    )
    async def search(call: Call) -> SearchAnswer:
        query: SearchQuery = call.query
        if (
            query.min_price is not None
            and query.max_price is not None
            and query.min_price > query.max_price
        ):
            raise InvalidInput("min_price must not exceed max_price.")
        try:
            page = await catalog.search(query)
        except UNREACHABLE:
            # Browsing stays available: the last answer to this search, marked as such.
            kept = last_searches.recall(query)
            if kept is None:
                raise
            return SearchAnswer(**msgspec.structs.asdict(kept), stale=True)
        last_searches.remember(query, page)
        return SearchAnswer(**msgspec.structs.asdict(page))

    @api.route(
        "GET",
        "/listings/{listing_id}",
        summary="A listing with its stock",
        tag="catalog",
        response=ListingDetail,
        errors=(404,),
    )
    async def listing_detail(call: Call) -> ListingDetail:
        listing = await catalog.get_listing(call.path["listing_id"])
        try:
            available: int | None = (await inventory.availability([listing.id]))[listing.id]
        except ColonyError:
            available = None  # browsing goes on while inventory is down
        return ListingDetail(listing=listing, available=available)

    @api.route(
        "POST",
        "/listings",
        summary="List a product (sellers)",
        tag="catalog",
        body=ListingDraft,
        response=Listing,
        status=201,
        auth=True,
    )
    async def create_listing(call: Call) -> Listing:
        return await catalog.create_listing(call.require_actor(), call.body)

    @api.route(
        "PATCH",
        "/listings/{listing_id}",
        summary="Change a listing (its seller)",
        tag="catalog",
        body=ListingChangesBody,
        response=Listing,
        auth=True,
        errors=(404, 409),
    )
    async def update_listing(call: Call) -> Listing:
        return await catalog.update_listing(
            call.require_actor(), call.path["listing_id"], call.body
        )

    @api.route(
        "DELETE",
        "/listings/{listing_id}",
        summary="Delist a listing (its seller)",
        tag="catalog",
        response=Listing,
        auth=True,
        errors=(404,),
    )
    async def delist(call: Call) -> Listing:
        return await catalog.delist(call.require_actor(), call.path["listing_id"])

    @api.route(
        "GET",
        "/seller/listings",
        summary="The signed-in seller's listings",
        tag="catalog",
        query=SellerListingsQuery,
        response=SellerListings,
        auth=True,
    )
    async def seller_listings(call: Call) -> SellerListings:
        return await catalog.seller_listings(
            call.require_actor(), call.query.page, call.query.page_size
        )

    # --- inventory ------------------------------------------------------------------------
    @api.route(
        "GET",
        "/listings/{listing_id}/stock",
        summary="Stock of a listing (its seller)",
        tag="inventory",
        response=StockLevel,
        auth=True,
        errors=(404,),
    )
    async def stock(call: Call) -> StockLevel:
        actor = call.require_actor()
        actor.require("seller")
        level = await inventory.stock(call.path["listing_id"])
        actor.require_owner(level.seller_id, "listing")
        return level

    @api.route(
        "POST",
        "/listings/{listing_id}/stock/receipts",
        summary="Receive stock",
        tag="inventory",
        body=StockReceipt,
        response=StockLevel,
        status=201,
        auth=True,
        errors=(404, 409),
    )
    async def receive_stock(call: Call) -> StockLevel:
        return await inventory.receive_stock(
            call.require_actor(), call.path["listing_id"], call.body.quantity
        )

    @api.route(
        "POST",
        "/listings/{listing_id}/stock/adjustments",
        summary="Adjust stock",
        tag="inventory",
        body=StockAdjustment,
        response=StockLevel,
        status=201,
        auth=True,
        errors=(404, 409),
    )
    async def adjust_stock(call: Call) -> StockLevel:
        if call.body.delta == 0:
            raise InvalidInput("delta must not be zero.")
        return await inventory.adjust_stock(
            call.require_actor(), call.path["listing_id"], call.body.delta, call.body.reason
        )

    # --- cart -----------------------------------------------------------------------------
    @api.route(
        "GET", "/cart", summary="The signed-in buyer's cart", tag="cart", response=Cart, auth=True
    )
    async def get_cart(call: Call) -> Cart:
        return await cart.get_cart(call.require_actor())

    @api.route(
        "POST",
        "/cart/items",
        summary="Add to the cart",
        tag="cart",
        body=CartItem,
        response=Cart,
        auth=True,
        errors=(404, 409),
    )
    async def add_to_cart(call: Call) -> Cart:
        return await cart.add_item(call.require_actor(), call.body.listing_id, call.body.quantity)

    @api.route(
        "PUT",
        "/cart/items/{listing_id}",
        summary="Set a cart line's quantity",
        tag="cart",
        body=CartQuantity,
        response=Cart,
        auth=True,
        errors=(404,),
    )
    async def set_quantity(call: Call) -> Cart:
        return await cart.set_quantity(
            call.require_actor(), call.path["listing_id"], call.body.quantity
        )

    @api.route(
        "DELETE",
        "/cart/items/{listing_id}",
        summary="Remove a cart line",
        tag="cart",
        response=Cart,
        auth=True,
        errors=(404,),
    )
    async def remove_from_cart(call: Call) -> Cart:
        return await cart.remove_item(call.require_actor(), call.path["listing_id"])

    @api.route("DELETE", "/cart", summary="Empty the cart", tag="cart", response=Cart, auth=True)
    async def clear_cart(call: Call) -> Cart:
        return await cart.clear(call.require_actor())

    return api
