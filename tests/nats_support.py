"""The NATS server the multi-process tests use: ``COLONY_TEST_NATS_URL``, by default the one on
this machine. Absent, those tests skip, unless ``COLONY_REQUIRE_SERVICES=1`` makes that a
failure."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest


def nats_url() -> str:
    return os.environ.get("COLONY_TEST_NATS_URL", "nats://127.0.0.1:4222")


def nats_available() -> bool:
    address = urlsplit(nats_url())
    try:
        with socket.create_connection((address.hostname, address.port or 4222), timeout=1):
            return True
    except OSError:
        return False


def require_nats() -> str:
    if not nats_available():
        if os.environ.get("COLONY_REQUIRE_SERVICES") == "1":
            pytest.fail(f"NATS is required (COLONY_REQUIRE_SERVICES=1) but {nats_url()} is down")
        pytest.skip(f"no NATS server at {nats_url()}")
    return nats_url()
