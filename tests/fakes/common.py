"""What the fakes share beyond serving HTTP: their lifecycle, and one-off injected statuses.

Every fake keeps its ``ThreadedServer`` in ``self.server``, so starting it, stopping it and
reading its URL are the same for all of them (``Served``). The Git-host fakes also answer a
chosen request with an injected status a number of times (``InjectedFailures``), matched by
HTTP method and a fragment of the path, before any credential or route is judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from tests.fakes.server import ThreadedServer


class Served:
    """``start()`` / ``stop()`` / ``url`` for a fake serving through ``self.server``."""

    server: ThreadedServer

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url


@dataclass
class _Failure:
    method: str
    fragment: str
    status: int
    times: int


class InjectedFailures:
    """Statuses to answer instead of handling the request, each a limited number of times."""

    def __init__(self) -> None:
        self._queued: list[_Failure] = []

    def add(self, method: str, fragment: str, status: int, times: int = 1) -> None:
        self._queued.append(_Failure(method, fragment, status, times))

    def take(self, method: str, path: str) -> int | None:
        """The status to answer this request with, if one is queued for it (used up once)."""
        for failure in self._queued:
            if failure.times > 0 and failure.method == method and failure.fragment in path:
                failure.times -= 1
                return failure.status
        return None
