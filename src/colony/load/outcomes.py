"""What became of a request: ok, failed or unknown, as in Jepsen's histories.

A client that gets an answer knows: a 2xx is ``ok``, any other status is ``failed`` (the
server said so). A client that gets no answer knows only whether it had sent anything. If it
never did (refused connection, no free connection before the deadline) nothing happened, and
the request ``failed``. If it had, the server may have done the work and lost only the reply,
or not: ``unknown``. Counting a timed-out checkout as failed would make a checker believe an
order that exists should not; counting it as ok would make it look for one that may not.
"""

from __future__ import annotations

import os
from typing import Literal

import aiohttp

Outcome = Literal["ok", "failed", "unknown"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "failed", "unknown")


def outcome_of_status(status: int) -> Outcome:
    """An answer is ``ok`` when it is a 2xx; a redirect is not followed, so it is ``failed``."""
    return "ok" if 200 <= status < 300 else "failed"


def outcome_of_error(exc: BaseException, sent: bool) -> tuple[Outcome, str]:
    """The outcome of a request that ended in ``exc`` instead of an answer, and a short
    description for counting errors by kind; ``sent`` is whether its headers had left."""
    return ("unknown" if sent else "failed"), describe(exc, sent)


def describe(exc: BaseException, sent: bool) -> str:
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts subclass it
        return "timeout" if sent else "timeout before sending"
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        reason = os.strerror(cause.errno) if cause.errno else type(cause).__name__
        return f"cannot connect: {reason}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response cut short"
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {reason}"[:120]
