"""Ports: what the command core needs from the outside, as Protocols.

The implementations live in bot/ (SQLite store) or are the clients in commands/; tests use the
real implementations against local fakes, never stand-ins for our own code.
"""

from __future__ import annotations

from typing import Any, Protocol


class Timers(Protocol):
    """Durable timers, e.g. "turn self-heal back on for payments at 14:30"."""

    async def schedule(
        self, kind: str, key: str, due_at: float, payload: dict[str, Any], created_by: str
    ) -> None: ...

    async def cancel(self, kind: str, key: str) -> bool: ...

    async def pending(self, kind: str, key: str) -> float | None:
        """The due time of a pending timer, or None."""
        ...
