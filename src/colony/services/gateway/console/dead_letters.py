"""Dead letters: the messages each service's consumer gave up on, with their error and
attempts; one letter with its message; and replaying it, by the same mechanism as ``colony
dlq replay`` (the service's operations endpoint, asked by the gateway for the admin). The
consumer's inbox still keeps a message that did get through from having a second effect.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import NotFound
from colony.platform.messaging.consumer import DeadLetter
from colony.platform.runtime.operations import OperationsApi
from colony.platform.security import Actor
from colony.services.gateway.console.site import Console
from colony.services.gateway.console.traces import search_url
from colony.services.gateway.storefront.forms import read_form
from colony.services.gateway.storefront.session import redirect

_LETTER_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
NOTICES = {
    "replayed": ("good", "Replayed: the consumer applied the message, and the letter is closed."),
    "failed": (
        "bad",
        "The message failed again: it stays dead-lettered, with one attempt more and the"
        " new error.",
    ),
}
"""What a redirect back to a letter may say; a fixed list, so no text can be injected."""
LIVE_SECONDS = 10


def letter_url(service: str, letter_id: str) -> str:
    return f"/console/dead-letters/{quote(service, safe='')}/{quote(letter_id, safe='')}"


def payload_text(letter: DeadLetter) -> str:
    """The message's payload as indented JSON (as it was, if it is not JSON)."""
    raw = bytes(letter.message.payload)
    try:
        return msgspec.json.format(raw, indent=2).decode()
    except msgspec.DecodeError:
        return raw.decode(errors="replace")


def routes(console: Console) -> list[Route]:
    def letter_id_of(request: Request) -> tuple[OperationsApi, str, str]:
        service = request.path_params["service"]
        operations = console.operations(service)
        letter_id = request.path_params["letter_id"]
        if not _LETTER_ID.match(letter_id):
            raise NotFound(f"{service} has no dead letter {letter_id!r}.")
        return operations, service, letter_id

    @console.page
    async def listing(request: Request, actor: Actor) -> Response:
        replayed = request.query_params.get("replayed") == "yes"

        async def ask(operations: OperationsApi) -> list[DeadLetter]:
            return await operations.dead_letters(actor, replayed)

        answers = await console.ask_each(ask)
        letters = sorted(
            ((service, letter) for service, found in answers.found.items() for letter in found),
            key=lambda pair: (pair[1].failed_at, pair[1].id),
            reverse=True,
        )
        return await console.render(
            request,
            "console/dead_letters.html",
            {
                "letters": letters,
                "replayed": replayed,
                "missing": answers.missing,
                "letter_url": letter_url,
            },
            live=LIVE_SECONDS,
        )

    @console.page
    async def one(request: Request, actor: Actor) -> Response:
        operations, service, letter_id = letter_id_of(request)
        letter = await operations.dead_letter(actor, letter_id)
        notice = NOTICES.get(request.query_params.get("notice", ""))
        correlation = letter.message.headers.get("correlation_id")
        return await console.render(
            request,
            "console/dead_letter.html",
            {
                "service": service,
                "letter": letter,
                "payload": payload_text(letter),
                "notice": notice,
                "letter_url": letter_url,
                "correlation_url": search_url(correlation_id=correlation) if correlation else "",
            },
        )

    @console.page
    async def replay(request: Request, actor: Actor) -> Response:
        await read_form(request)  # the CSRF check
        operations, service, letter_id = letter_id_of(request)
        applied = await operations.replay(actor, letter_id)
        notice = "replayed" if applied else "failed"
        return redirect(f"{letter_url(service, letter_id)}?notice={notice}")

    return [
        Route("/console/dead-letters", listing, methods=["GET"]),
        Route("/console/dead-letters/{service}/{letter_id}", one, methods=["GET"]),
        Route("/console/dead-letters/{service}/{letter_id}/replay", replay, methods=["POST"]),
    ]
