"""Identity's rules, without I/O: which passwords are acceptable, and how long a run of failed
log-ins holds further attempts back."""

from __future__ import annotations

from dataclasses import dataclass

from colony.services.identity.common_passwords import COMMON_PASSWORDS

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 256
"""NIST SP 800-63B: at least 8 characters, and room for passphrases of 64 and more."""


def password_problem(password: str, email: str) -> str | None:
    """Why a new password is refused, or None if it is acceptable.

    NIST SP 800-63B's rules: a length, no composition rules (they make passwords harder to
    remember, not to guess), and a check against passwords known to attackers: the most common
    ones, ones made of one repeated character, and the account's own e-mail address. The
    length is checked where requests are decoded; it is checked here again for callers that
    build a registration themselves.
    """
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"Password must be at least {PASSWORD_MIN_LENGTH} characters."
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"Password must be at most {PASSWORD_MAX_LENGTH} characters."
    folded = password.strip().lower()
    if folded in COMMON_PASSWORDS:
        return (
            "This password is one of the most common passwords, the first that attackers try;"
            " choose another (a few unrelated words make a good one)."
        )
    if len(set(folded)) == 1:
        return "A password of one repeated character is guessed at once; choose another."
    address = email.strip().lower()
    if folded in (address, address.partition("@")[0]):
        return "A password must not be the e-mail address; choose another."
    return None


@dataclass(frozen=True, slots=True)
class FailureLimit:
    """How many log-in attempts a key may fail before each further attempt waits.

    From the ``free``-th failure on, the key is locked for ``first_lock`` seconds, and each
    further failure after a lock runs out doubles the lock, up to ``max_lock``: an online
    guesser gets a few tries, then ever fewer per hour. A key with no attempt for ``forget``
    seconds starts again from nothing.
    """

    free: int
    first_lock: float
    max_lock: float
    forget: float

    def next_lock(self, lock: float) -> float:
        return min(lock * 2, self.max_lock)


PER_ACCOUNT_AND_ADDRESS = FailureLimit(free=5, first_lock=1.0, max_lock=900.0, forget=3600.0)
"""One guesser at one account: what a person mistyping never reaches."""
PER_ACCOUNT = FailureLimit(free=20, first_lock=1.0, max_lock=900.0, forget=3600.0)
"""Guessers at one account from many addresses. It holds back only addresses from which the
account has not logged in before: anyone could fail twenty times against any account, and
if that locked the owner out too, locking everyone out would cost an attacker twenty requests
per account."""
PER_ADDRESS = FailureLimit(free=50, first_lock=1.0, max_lock=900.0, forget=3600.0)
"""One address trying many accounts (password spraying, credential stuffing). Looser, since
many people may share an address behind one NAT; it holds back that address alone."""
