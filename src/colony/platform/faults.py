"""Faults injected into this process's outbound calls (the chaos tooling's seam).

Placeholder until the fault table lands: nothing is ever injected."""

from __future__ import annotations

from typing import Protocol


class LinkFault(Protocol):
    async def before_call(self) -> None: ...

    def after_call(self) -> None: ...


def link_fault(dependency: str) -> LinkFault | None:
    return None
