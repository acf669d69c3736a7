"""The buyer's cart: the page, and the forms that change it."""

from __future__ import annotations

import contextlib
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import Conflict, InvalidInput, NotFound
from colony.platform.security import Actor
from colony.services.gateway.api_v1 import CartItem, CartQuantity
from colony.services.gateway.storefront.browse import listing_page
from colony.services.gateway.storefront.forms import (
    GENERAL,
    FormInvalid,
    convert,
    read_form,
)
from colony.services.gateway.storefront.session import redirect, require_role
from colony.services.gateway.storefront.site import Site

LABELS = {"listing_id": "Listing", "quantity": "Quantity"}
STATUS_TEXT = {
    "ok": "In stock",
    "insufficient_stock": "Not enough in stock",
    "unavailable": "No longer available",
}


def routes(site: Site) -> list[Route]:
    carts = site.backends.cart

    async def buyer(request: Request, next_path: str = "/cart") -> Actor:
        return require_role(await site.viewer(request), "buyer", next_path)

    async def cart_page(
        request: Request, actor: Actor, errors: dict[str, str] | None = None, status: int = 200
    ) -> Response:
        """The cart; re-shown with ``errors`` (by listing id, or GENERAL) when a change fails."""
        cart = await carts.get_cart(actor)
        return await site.render(
            request,
            "cart.html",
            {
                "cart": cart,
                "cart_count": cart.item_count,
                "errors": errors or {},
                "status_text": STATUS_TEXT,
            },
            status=status,
        )

    @site.page
    async def view(request: Request) -> Response:
        return await cart_page(request, await buyer(request))

    @site.page
    async def add(request: Request) -> Response:
        fields = await read_form(request)
        listing_id = fields.get("listing_id", "")
        if not listing_id:
            raise InvalidInput("Choose a listing to add to the cart.")
        actor = await buyer(request, "/listings/" + quote(listing_id, safe=""))
        try:
            item = convert(fields, CartItem, LABELS)
            await carts.add_item(actor, item.listing_id, item.quantity)
        except (FormInvalid, InvalidInput, Conflict) as exc:
            # Other errors (an unknown listing: 404) become their own page.
            failure = exc if isinstance(exc, FormInvalid) else FormInvalid.from_service(exc, {})
            # Back to the product page, where the quantity was typed, with the reason.
            return await listing_page(
                site,
                request,
                listing_id,
                errors={"quantity": failure.message},
                quantity=fields.get("quantity", "1"),
                status=failure.status,
            )
        return redirect("/cart")

    @site.page
    async def set_quantity(request: Request) -> Response:
        fields = await read_form(request)
        actor = await buyer(request)
        listing_id = request.path_params["listing_id"]
        try:
            change = convert({"quantity": fields.get("quantity", "")}, CartQuantity, LABELS)
            await carts.set_quantity(actor, listing_id, change.quantity)
        except FormInvalid as exc:
            return await cart_page(request, actor, {listing_id: exc.message}, exc.status)
        except (InvalidInput, Conflict, NotFound) as exc:
            return await cart_page(request, actor, {GENERAL: exc.detail}, exc.status)
        return redirect("/cart")

    @site.page
    async def remove(request: Request) -> Response:
        await read_form(request)
        actor = await buyer(request)
        # Already gone (a second click) is fine: the cart is as the buyer wants it.
        with contextlib.suppress(NotFound):
            await carts.remove_item(actor, request.path_params["listing_id"])
        return redirect("/cart")

    return [
        Route("/cart", view, methods=["GET"]),
        Route("/cart/items", add, methods=["POST"]),
        Route("/cart/items/{listing_id}", set_quantity, methods=["POST"]),
        Route("/cart/items/{listing_id}/remove", remove, methods=["POST"]),
    ]
