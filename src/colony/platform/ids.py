"""Identifiers: time-ordered UUIDs (version 7), so rows written together sit together."""

import os
import time
import uuid


def new_id() -> str:
    """A UUIDv7 as 32 hex characters (RFC 9562: 48-bit millisecond time, then randomness)."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80
    value |= int.from_bytes(os.urandom(10), "big") & ((1 << 80) - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # variant
    return uuid.UUID(int=value).hex
