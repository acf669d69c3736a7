"""Password hashing with Argon2id, off the event loop (a hash takes tens of milliseconds)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


def make_hasher(cost: str) -> PasswordHasher:
    if cost == "fast":  # tests only: a weak hash keeps hundreds of registrations quick
        return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    # OWASP's Argon2id baseline: 19 MiB, 2 iterations, 1 lane.
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class Passwords:
    def __init__(self, cost: str) -> None:
        self._hasher = make_hasher(cost)
        self._dummy = self._hasher.hash("not-a-real-password")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Verifies against a dummy hash when there is no account, so timing does not tell."""
        try:
            return (
                await asyncio.to_thread(self._hasher.verify, password_hash or self._dummy, password)
                and password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False
