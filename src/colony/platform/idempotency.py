"""Idempotent commands: a repeated Idempotency-Key replays the stored result.

The key and the result are written in the transaction that makes the change, never before
it, so a crash leaves either both or neither. The same key with another request body is
refused (422).
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, Protocol, TypeVar

import msgspec

from colony.platform import context
from colony.platform.clock import utc_now_iso
from colony.platform.errors import IdempotencyKeyReused
from colony.platform.storage import Database

P = ParamSpec("P")
R = TypeVar("R")
_encode = msgspec.json.Encoder().encode


class HasDatabase(Protocol):
    db: Database


async def replayed(
    db: Database, request: context.IdempotencyRequest, result_type: Any
) -> Any | None:
    """The stored result for a key seen before (``IdempotencyKeyReused`` for another
    request), or None. For commands that read elsewhere before their transaction: a replay
    must not depend on what those reads would find now."""
    row = await db.fetch_one(
        "SELECT fingerprint, response FROM idempotency_keys WHERE key = ?", (request.key,)
    )
    if row is None:
        return None
    if row[0] != request.fingerprint:
        raise IdempotencyKeyReused("This Idempotency-Key was first used with a different request.")
    return msgspec.json.decode(row[1], type=result_type)


async def run_once(
    db: Database,
    request: context.IdempotencyRequest,
    result_type: Any,
    effect: Callable[[], Awaitable[R]],
) -> tuple[R, bool]:
    """The effect's result, stored with ``request.key`` in the effect's own transaction; or, for
    a key seen before, the stored result. Returns it and whether it was a replay."""
    async with db.transaction():
        earlier = await replayed(db, request, result_type)
        if earlier is not None:
            return earlier, True
        result = await effect()
        await db.execute(
            "INSERT INTO idempotency_keys (key, fingerprint, response, created_at)"
            " VALUES (?, ?, ?, ?)",
            (request.key, request.fingerprint, _encode(result), utc_now_iso()),
        )
        return result, False


def idempotent(
    method: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """Decorate a service command (a method of an object with a ``db``)."""
    return_type: list[Any] = []

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        request = context.idempotency_request()
        if request is None:
            return await method(*args, **kwargs)
        if not return_type:
            return_type.append(typing.get_type_hints(method).get("return", Any))
        db: Database = typing.cast(HasDatabase, args[0]).db

        async def effect() -> R:
            with context.without_idempotency():
                return await method(*args, **kwargs)

        result, _ = await run_once(db, request, return_type[0], effect)
        return result

    return wrapper
