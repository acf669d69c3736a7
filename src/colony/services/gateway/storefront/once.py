"""Forms whose double submission would do something twice (list a product, book stock) carry
a random key; the services' idempotency then replays the first result for a repeat."""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from collections.abc import Iterator, Mapping

from starlette.requests import Request

from colony.platform import context
from colony.platform.errors import IdempotencyKeyReused, InvalidInput
from colony.platform.security import Actor

FORM_KEY_FIELD = "form_key"
_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def new_form_key() -> str:
    return secrets.token_urlsafe(16)


@contextlib.contextmanager
def submitted_once(request: Request, actor: Actor, fields: Mapping[str, str]) -> Iterator[None]:
    """Service calls inside run at most once per form key and field values."""
    key = fields.get(FORM_KEY_FIELD, "")
    if not _KEY.match(key):
        yield  # a form without a key is still served, just without the guard
        return
    digest = hashlib.sha256(request.url.path.encode())
    for name, value in sorted(fields.items()):
        if name != FORM_KEY_FIELD:
            digest.update(f"\n{name}={value}".encode())
    # Namespaced: an API client's Idempotency-Key can never collide with a form's.
    request_key = context.IdempotencyRequest(f"{actor.id}:form:{key}", digest.hexdigest())
    try:
        with context.call_context(context.correlation_id(), request_key):
            yield
    except IdempotencyKeyReused:
        raise InvalidInput(
            "This form was already sent with other values. Reload the page and try again."
        ) from None
