"""A process paused with SIGSTOP, as its callers see it: the kernel still completes their
TCP handshakes into the listen backlog, and nothing ever answers."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def frozen_port(port: int) -> Iterator[None]:
    """Listen on ``port`` on 127.0.0.1 and never accept, until the block ends."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        yield
    finally:
        listener.close()
