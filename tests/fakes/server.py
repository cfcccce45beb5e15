"""Run an aiohttp application on 127.0.0.1 in a background thread with its own event loop.

Fakes of external services use this so they serve real HTTP to both async code under test
(in the test's loop) and synchronous SDKs (the kubernetes client), and so a test can stop the
server to simulate "unreachable".
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


class ThreadedServer:
    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run a coroutine on the server's loop and wait for its result (from any thread)."""
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def call_soon(self, fn: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def pause(self) -> None:
        """Stop listening (clients get 'connection refused') but keep state; resume() reopens."""
        self.call(self._stop_runner())

    def resume(self) -> None:
        self.call(self._start())

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Unreachable for the ``with`` block, reachable again after it, even if it fails."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    async def _stop_runner(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.call(self._stop_runner())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()
