"""Trust between processes: every identity's keys, and the signed token each call carries.

Who may call which method is declared on the interfaces themselves
(:func:`colony.platform.runtime.interface.callers`) and checked in either binding; this
package says who is calling, in a way the caller cannot forge.
"""

from colony.platform.trust.keys import (
    InMemoryKeys,
    KeyDirectory,
    KeyStore,
    MissingKey,
    provision,
    rotate,
)
from colony.platform.trust.tokens import Caller, TokenIssuer, TokenVerifier, spiffe_id

__all__ = [
    "Caller",
    "InMemoryKeys",
    "KeyDirectory",
    "KeyStore",
    "MissingKey",
    "TokenIssuer",
    "TokenVerifier",
    "provision",
    "rotate",
    "spiffe_id",
]
