"""The in-app notifications feed, and a seller's webhook settings."""

from __future__ import annotations

import contextlib

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import ColonyError, InvalidInput, NotFound
from colony.platform.security import Actor
from colony.services.gateway.api_orders import WebhookBody
from colony.services.gateway.storefront.forms import FormInvalid, convert, read_form
from colony.services.gateway.storefront.session import (
    SignInRequired,
    here,
    redirect,
    require_role,
)
from colony.services.gateway.storefront.site import Site
from colony.services.notifications.api import WebhookDelivery, WebhookEndpoint

FEED_SIZE = 50
MAX_FEED = 100  # the most the notifications service hands out at once
DELIVERIES_SHOWN = 10
LABELS = {"url": "Webhook URL"}
WEBHOOK_NOTICES = {"saved": "Your webhook URL is saved."}


def routes(site: Site) -> list[Route]:
    notifications = site.backends.notifications

    async def signed_in(request: Request, next_path: str | None = None) -> Actor:
        actor = await site.viewer(request)
        if actor is None:  # every role has a feed
            raise SignInRequired(next_path or here(request))
        return actor

    async def seller(request: Request, next_path: str | None = None) -> Actor:
        return require_role(await site.viewer(request), "seller", next_path or here(request))

    @site.page
    async def feed(request: Request) -> Response:
        actor = await signed_in(request)
        found = await notifications.feed(actor, FEED_SIZE)
        return await site.render(
            request,
            "notifications.html",
            {"feed": found, "unread_count": found.unread},
        )

    @site.page
    async def mark_read(request: Request) -> Response:
        await read_form(request)
        actor = await signed_in(request, "/notifications")
        # Already gone is as good as read: a stale page's button must not end in an error.
        with contextlib.suppress(NotFound):
            await notifications.mark_read(actor, request.path_params["notification_id"])
        return redirect("/notifications")

    @site.page
    async def mark_all_read(request: Request) -> Response:
        await read_form(request)
        actor = await signed_in(request, "/notifications")
        found = await notifications.feed(actor, MAX_FEED)
        # One after another: each is a small write, and a burst of them would only queue up
        # for the same database.
        for item in found.items:
            if not item.read:
                with contextlib.suppress(NotFound):
                    await notifications.mark_read(actor, item.id)
        return redirect("/notifications")

    async def webhook_page(
        request: Request,
        actor: Actor,
        url: str | None = None,
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        endpoint: WebhookEndpoint | None
        try:
            endpoint = await notifications.get_webhook(actor)
        except NotFound:
            endpoint = None
        deliveries: list[WebhookDelivery] | None
        try:
            deliveries = await notifications.webhook_deliveries(actor, DELIVERIES_SHOWN)
        except ColonyError:
            deliveries = None  # the settings are still usable without the recent list
        return await site.render(
            request,
            "webhook.html",
            {
                "endpoint": endpoint,
                "deliveries": deliveries,
                "url": url if url is not None else (endpoint.url if endpoint else ""),
                "errors": errors or {},
                "notice": WEBHOOK_NOTICES.get(request.query_params.get("notice", "")),
            },
            status=status,
        )

    @site.page
    async def webhook(request: Request) -> Response:
        return await webhook_page(request, await seller(request))

    @site.page
    async def set_webhook(request: Request) -> Response:
        fields = await read_form(request)
        actor = await seller(request, "/seller/webhook")
        url = fields.get("url", "").strip()
        try:
            body = convert({"url": url}, WebhookBody, LABELS)
            await notifications.set_webhook(actor, body.url)
        except FormInvalid as exc:
            return await webhook_page(request, actor, url, exc.errors, exc.status)
        except InvalidInput as exc:
            failure = FormInvalid.from_service(exc, LABELS)
            return await webhook_page(request, actor, url, failure.errors, failure.status)
        return redirect("/seller/webhook?notice=saved")

    return [
        Route("/notifications", feed, methods=["GET"]),
        Route("/notifications/read", mark_all_read, methods=["POST"]),
        Route("/notifications/{notification_id}/read", mark_read, methods=["POST"]),
        Route("/seller/webhook", webhook, methods=["GET"]),
        Route("/seller/webhook", set_webhook, methods=["POST"]),
    ]
