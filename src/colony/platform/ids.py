"""Identifiers: time-ordered UUIDs (version 7), so rows written together sit together."""

import os
import time

_RANDOM_BYTES = 10
_BATCH = 409  # ids' worth of randomness per read: one system call instead of 409
_pool = bytearray()


def _forget_pool() -> None:
    # A forked child must not hand out the randomness its parent is handing out too.
    _pool.clear()


os.register_at_fork(after_in_child=_forget_pool)


def _random_80_bits() -> int:
    if not _pool:
        _pool.extend(os.urandom(_RANDOM_BYTES * _BATCH))
    chunk = _pool[-_RANDOM_BYTES:]
    del _pool[-_RANDOM_BYTES:]
    return int.from_bytes(chunk, "big")


def new_id() -> str:
    """A UUIDv7 as 32 hex characters (RFC 9562: 48-bit millisecond time, then randomness)."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | _random_80_bits()
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # variant
    return f"{value:032x}"
