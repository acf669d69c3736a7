"""Holding back log-in attempts after repeated failures, per (e-mail, address), per e-mail and
per address (the limits are in :mod:`colony.services.identity.domain`).

The counts live in identity's database, not in the gateway's memory: any gateway replica may
take the next attempt, and an attacker who spreads guesses over N replicas must not get N
times the tries, nor a fresh count whenever a replica restarts.

An attempt is counted *before* its password is checked, and a success takes its count back:
a burst of guesses sent all at once is counted one by one as they arrive, so it cannot slip
past the limit while the first password hashes are still being checked. Each key's count and
lock change in one conditional UPDATE, so concurrent attempts (on any replica) cannot both
take the last free try.

Keys are digests of the e-mail and address, not the strings themselves: the table says how
often something was tried, not which addresses people mistyped. An e-mail with no account is
counted exactly like one with an account, so a 429 tells nothing about who has one.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from colony.platform.errors import RateLimited
from colony.platform.storage.database import Database
from colony.services.identity.domain import (
    PER_ACCOUNT,
    PER_ACCOUNT_AND_ADDRESS,
    PER_ADDRESS,
    FailureLimit,
)

FAMILIAR_FOR_SECONDS = 90 * 86_400
"""An address the account logged in from within this long is not held back by the per-account
limit (the owner's own devices, as "smart lockout" systems do)."""
_CLEAN_EVERY = 500


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt that was let through and counted: what a success must take back."""

    pair: str
    account: str | None
    """None when the address is familiar to the account (not counted per account)."""
    address: str


class LoginThrottle:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self._since_cleaning = 0

    async def attempt(self, email: str, address: str) -> Attempt:
        """Count an attempt at ``email`` from ``address``, or refuse it with a 429 (counting
        nothing) while any of its keys is locked."""
        now = self.clock()
        pair = _key("pair", email, address)
        familiar = await self.db.fetch_value(
            "SELECT 1 FROM login_familiar WHERE key = ? AND last_success_at > ?",
            (pair, now - FAMILIAR_FOR_SECONDS),
        )
        attempt = Attempt(
            pair=pair,
            account=None if familiar else _key("account", email),
            address=_key("address", address),
        )
        keys = [(attempt.pair, PER_ACCOUNT_AND_ADDRESS), (attempt.address, PER_ADDRESS)]
        if attempt.account is not None:
            keys.append((attempt.account, PER_ACCOUNT))
        wait = 0.0
        async with self.db.transaction():
            for key, limit in keys:
                wait = max(wait, await self._count(key, limit, now))
            if wait > 0:
                # Raised inside the transaction: the other keys' counts are taken back too.
                seconds = max(1, math.ceil(wait))
                raise RateLimited(
                    f"Too many failed log-ins; try again in {seconds} seconds.",
                    retry_after=seconds,
                )
        self._since_cleaning += 1
        if self._since_cleaning >= _CLEAN_EVERY:
            self._since_cleaning = 0
            await self._clean(now)
        return attempt

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the account's counts start again, the address is now
        familiar to it, and the address's count loses this attempt (but not the failures
        before it, or an attacker could cancel each guess with a log-in of their own)."""
        now = self.clock()
        async with self.db.transaction():
            await self.db.execute(
                "DELETE FROM login_throttle WHERE key IN (?, ?)",
                (attempt.pair, attempt.account or attempt.pair),
            )
            # A lock that only attempts still being checked had reached goes with them: many
            # people logging in at once behind one address are not held back for it.
            await self.db.execute(
                "UPDATE login_throttle SET attempts = attempts - 1,"
                " locked_until = CASE WHEN attempts - 1 < ? THEN 0 ELSE locked_until END,"
                " lock_seconds = CASE WHEN attempts - 1 < ? THEN ? ELSE lock_seconds END"
                " WHERE key = ? AND attempts > 0",
                (PER_ADDRESS.free, PER_ADDRESS.free, PER_ADDRESS.first_lock, attempt.address),
            )
            await self.db.execute(
                "INSERT INTO login_familiar (key, last_success_at) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET last_success_at = excluded.last_success_at",
                (attempt.pair, now),
            )

    async def _count(self, key: str, limit: FailureLimit, now: float) -> float:
        """Count one attempt against ``key``; the seconds it is still locked for if it is
        (then nothing is counted), else 0. The attempt that reaches the limit locks the key
        already, so that attempts arriving while its password is checked wait too."""
        await self.db.execute(
            "DELETE FROM login_throttle"
            " WHERE key = ? AND last_attempt_at < ? AND locked_until <= ?",
            (key, now - limit.forget, now),
        )
        await self.db.execute(
            "INSERT INTO login_throttle (key, attempts, locked_until, lock_seconds,"
            " last_attempt_at) VALUES (?, 0, 0, ?, ?) ON CONFLICT (key) DO NOTHING",
            (key, limit.first_lock, now),
        )
        counted = await self.db.execute(
            "UPDATE login_throttle SET attempts = attempts + 1, last_attempt_at = ?,"
            " locked_until = CASE WHEN attempts + 1 >= ? THEN ? + lock_seconds"
            " ELSE locked_until END,"
            " lock_seconds = CASE WHEN attempts + 1 >= ?"
            " THEN (CASE WHEN lock_seconds * 2 > ? THEN ? ELSE lock_seconds * 2 END)"
            " ELSE lock_seconds END"
            " WHERE key = ? AND locked_until <= ?",
            (now, limit.free, now, limit.free, limit.max_lock, limit.max_lock, key, now),
        )
        if counted:
            return 0.0
        locked_until = await self.db.fetch_value(
            "SELECT locked_until FROM login_throttle WHERE key = ?", (key,)
        )
        return max(0.0, float(locked_until or 0.0) - now) or 1.0

    async def _clean(self, now: float) -> None:
        """Forget keys nobody has tried for a while, so made-up e-mails do not pile up."""
        oldest_forget = max(
            limit.forget for limit in (PER_ACCOUNT_AND_ADDRESS, PER_ACCOUNT, PER_ADDRESS)
        )
        await self.db.execute(
            "DELETE FROM login_throttle WHERE last_attempt_at < ? AND locked_until <= ?",
            (now - oldest_forget, now),
        )
        await self.db.execute(
            "DELETE FROM login_familiar WHERE last_success_at < ?",
            (now - FAMILIAR_FOR_SECONDS,),
        )


def _key(kind: str, *parts: str) -> str:
    digest = hashlib.sha256("\x00".join((kind, *parts)).encode()).hexdigest()
    return f"{kind}:{digest}"
