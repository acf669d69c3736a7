"""What the attack modules share: reading a refusal."""

from __future__ import annotations

import httpx


def retry_after(response: httpx.Response) -> int:
    """The seconds a 429 problem asks to wait, checking it is one."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/rate-limited"
    seconds = int(response.headers["retry-after"])
    assert seconds >= 1
    return seconds
