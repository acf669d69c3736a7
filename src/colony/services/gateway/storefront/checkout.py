"""Checking out: the cart's summary by seller, and the form that turns the cart into an order."""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import ColonyError, Conflict, InvalidInput, ServiceUnavailable
from colony.platform.security import Actor
from colony.services.gateway.api_orders import Checkout
from colony.services.gateway.storefront.cart import STATUS_TEXT
from colony.services.gateway.storefront.display import by_seller
from colony.services.gateway.storefront.forms import GENERAL, FormInvalid, convert_all, read_form
from colony.services.gateway.storefront.once import FORM_KEY_FIELD, new_form_key, submitted_once
from colony.services.gateway.storefront.session import redirect, require_role
from colony.services.gateway.storefront.site import Site

ADDRESS_FIELDS = ("name", "line1", "city", "postcode", "country")
LABELS = {
    "name": "Full name",
    "line1": "Street address",
    "city": "Town or city",
    "postcode": "Postcode",
    "country": "Country",
    "card_number": "Card number",
    "address": "Shipping address",
}
_FORM_ORDER = {name: n for n, name in enumerate((*ADDRESS_FIELDS, "card_number"))}
# People type card numbers in groups, as printed on the card.
_CARD_SEPARATORS = re.compile(r"[\s-]")
# Refusals of the cart as a whole (empty, no longer for sale, mixed currencies, prices not
# confirmable); the form is shown again with the reason. Anything else is an error page.
FORM_ERRORS = (InvalidInput, Conflict, ServiceUnavailable)


def read_checkout(fields: dict[str, str]) -> dict[str, str]:
    """The posted form, tidied the way people mean it (spaces around, "gb" for "GB")."""
    form = {name: fields.get(name, "").strip() for name in ADDRESS_FIELDS}
    form["country"] = form["country"].upper()
    form["card_number"] = _CARD_SEPARATORS.sub("", fields.get("card_number", ""))
    return form


def checkout_body(form: dict[str, str]) -> Checkout:
    """The form as the API's Checkout, so the page accepts exactly what the API accepts."""
    data = {
        "card_number": form["card_number"],
        "address": {name: form[name] for name in ADDRESS_FIELDS},
    }
    try:
        return convert_all(data, Checkout, LABELS)
    except FormInvalid as exc:
        # In the order of the form, address first, so the summary reads top to bottom.
        exc.errors = dict(sorted(exc.errors.items(), key=lambda item: _FORM_ORDER.get(item[0], -1)))
        raise


def routes(site: Site) -> list[Route]:
    carts, orders = site.backends.cart, site.backends.orders

    async def buyer(request: Request) -> Actor:
        return require_role(await site.viewer(request), "buyer", "/checkout")

    async def last_address(actor: Actor) -> dict[str, str]:
        """Where the buyer's latest order went: most people ship to the same place again."""
        try:
            history = await orders.order_history(actor, 1, 1)
            if not history.items:
                return {}
            address = (await orders.get_order(actor, history.items[0].id)).address
        except ColonyError:
            return {}  # a convenience only
        return {name: getattr(address, name) for name in ADDRESS_FIELDS}

    async def checkout_page(
        request: Request,
        actor: Actor,
        form: dict[str, str],
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        cart = await carts.get_cart(actor)
        groups = by_seller(cart.lines)
        sellers = await site.account_names(groups, "Seller")
        return await site.render(
            request,
            "checkout.html",
            {
                "cart": cart,
                "cart_count": cart.item_count,
                "groups": groups,
                "sellers": sellers,
                "status_text": STATUS_TEXT,
                "blocked": [line.title for line in cart.lines if line.status == "unavailable"],
                # Never echoed back: the card number is typed again after an error.
                "form": {name: value for name, value in form.items() if name != "card_number"},
                "form_key": form.get(FORM_KEY_FIELD) or new_form_key(),
                "errors": errors or {},
            },
            status=status,
        )

    @site.page
    async def checkout_form(request: Request) -> Response:
        actor = await buyer(request)
        form = await last_address(actor)
        if not form.get("name"):
            form["name"] = await site.account_name(actor.id, "")
        return await checkout_page(request, actor, form)

    @site.page
    async def place_order(request: Request) -> Response:
        fields = await read_form(request)
        actor = await buyer(request)
        form = read_checkout(fields)
        form[FORM_KEY_FIELD] = fields.get(FORM_KEY_FIELD, "")
        try:
            body = checkout_body(form)
            # The key makes a double click (or Back and submit again) the same one order.
            with submitted_once(request, actor, form):
                accepted = await orders.place_order(actor, body.card_number, body.address)
        except FormInvalid as exc:
            return await checkout_page(request, actor, form, exc.errors, exc.status)
        except FORM_ERRORS as exc:
            return await checkout_page(request, actor, form, {GENERAL: exc.detail}, exc.status)
        return redirect("/orders/" + quote(accepted.order_id, safe=""))

    return [
        Route("/checkout", checkout_form, methods=["GET"]),
        Route("/checkout", place_order, methods=["POST"]),
    ]
