"""What the chat fakes share: a call log, failure injection, and waiting on cross-thread state.

The fakes serve from their own thread (``ThreadedServer``), so a test reads their state while
handlers may be writing it: every access goes through one lock, and tests wait for a condition
with a deadline (``until``/``until_async``) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One request as the service saw it."""

    method: str  # Slack API method ("chat.postMessage") or "VERB /path" on Discord
    params: dict[str, Any]  # merged query, form and JSON body
    at: float  # time.monotonic() on arrival
    status: int  # HTTP status answered
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Planned:
    remaining: int
    kind: str  # "rate_limit" | "fail"
    status: int
    retry_after: float
    is_global: bool
    only: str | None  # method (or path fragment) it applies to; None = any


class Recorder:
    """Thread-safe call log plus queued failures."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._calls: list[Call] = []
        self._plans: list[_Planned] = []

    # -- failures -------------------------------------------------------------------------
    def rate_limit_next(
        self,
        n: int = 1,
        retry_after: float = 1,
        *,
        only: str | None = None,
        is_global: bool = False,
    ) -> None:
        """Answer the next ``n`` matching calls with 429 and a Retry-After of ``retry_after``."""
        with self.lock:
            self._plans.append(_Planned(n, "rate_limit", 429, retry_after, is_global, only))

    def fail_next(self, n: int = 1, status: int = 500, *, only: str | None = None) -> None:
        """Answer the next ``n`` matching calls with ``status`` (a server error by default)."""
        with self.lock:
            self._plans.append(_Planned(n, "fail", status, 0, False, only))

    def clear_failures(self) -> None:
        """Forget the failures still planned: the service is back (ends an injected outage)."""
        with self.lock:
            self._plans.clear()

    def take_failure(self, method: str) -> _Planned | None:
        with self.lock:
            for plan in self._plans:
                if plan.remaining > 0 and (plan.only is None or plan.only in method):
                    plan.remaining -= 1
                    return plan
            return None

    # -- the log --------------------------------------------------------------------------
    def record(self, call: Call) -> None:
        with self.lock:
            self._calls.append(call)

    @property
    def calls(self) -> list[Call]:
        with self.lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        """Calls whose method equals ``method`` (Slack) or contains it (Discord "PATCH /x")."""
        with self.lock:
            return [c for c in self._calls if c.method == method or method in c.method]

    def clear_calls(self) -> None:
        with self.lock:
            self._calls.clear()


def until(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.01) -> T:
    """Poll ``predicate`` from a synchronous test until it is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


async def until_async(
    predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.01
) -> T:
    """``until`` for async tests: yields to the loop between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
