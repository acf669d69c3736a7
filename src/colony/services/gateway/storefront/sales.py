"""After checkout, for the seller: their parts of orders, and refunding one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import Conflict, InvalidInput, NotFound
from colony.platform.security import Actor
from colony.services.gateway.api_orders import ReasonBody
from colony.services.gateway.storefront.forms import FormInvalid, convert, read_form
from colony.services.gateway.storefront.orders import STATUS_TEXT
from colony.services.gateway.storefront.session import here, redirect, require_role
from colony.services.gateway.storefront.site import Site

PAGE_SIZE = 20
LABELS = {"reason": "Reason"}
NOTICES = {"refunded": "The refund is on its way to the buyer."}


def routes(site: Site) -> list[Route]:
    orders = site.backends.orders

    async def seller(request: Request, next_path: str | None = None) -> Actor:
        return require_role(await site.viewer(request), "seller", next_path or here(request))

    def page_number(request: Request) -> int:
        try:
            return max(1, min(int(request.query_params.get("page", "1")), 10_000))
        except ValueError:
            return 1

    async def queue_page(
        request: Request,
        actor: Actor,
        errors: dict[str, str] | None = None,
        reasons: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        """The queue; re-shown with ``errors`` by order id when a row's refund fails."""
        page = page_number(request)
        queue = await orders.seller_queue(actor, page, PAGE_SIZE)
        pages = max(1, -(-queue.total // PAGE_SIZE))
        return await site.render(
            request,
            "seller_orders.html",
            {
                "queue": queue,
                "errors": errors or {},
                "reasons": reasons or {},
                "notice": NOTICES.get(request.query_params.get("notice", "")),
                "page": page,
                "pages": pages,
                "previous_url": f"/seller/orders?page={page - 1}" if page > 1 else None,
                "next_url": f"/seller/orders?page={page + 1}" if page < pages else None,
                "status_text": STATUS_TEXT,
            },
            status=status,
        )

    @site.page
    async def queue(request: Request) -> Response:
        return await queue_page(request, await seller(request))

    @site.page
    async def refund(request: Request) -> Response:
        fields = await read_form(request)
        actor = await seller(request, "/seller/orders")
        order_id = request.path_params["order_id"]
        reason = fields.get("reason", "").strip()
        try:
            body = convert({"reason": reason}, ReasonBody, LABELS)
            # Safe to repeat: the order service refunds a part at most once (a second click
            # while the first runs is told so, 409).
            await orders.refund_order(actor, order_id, body.reason)
        except FormInvalid as exc:
            return await queue_page(
                request, actor, {order_id: exc.message}, {order_id: reason}, exc.status
            )
        except (InvalidInput, Conflict, NotFound) as exc:
            return await queue_page(
                request, actor, {order_id: exc.detail}, {order_id: reason}, exc.status
            )
        return redirect("/seller/orders?notice=refunded")

    return [
        Route("/seller/orders", queue, methods=["GET"]),
        Route("/seller/orders/{order_id}/refund", refund, methods=["POST"]),
    ]
