"""Limits on what an HTTP client may make the server do, and reading a body within them.

Shared by the server (``bot.server.http``, which enforces the connection-level limits) and the
routes that read a body (``bot.chat.slack``, ``bot.alerts.webhooks``), which is why it lives
below all three. A body is read only after the request's headers passed the route's
authentication, in chunks, refused at ``max_body`` (413, on Content-Length before a byte is
read) and abandoned after ``body_timeout`` (408): a client that stalls mid-body holds a
connection for seconds, not forever.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class HttpLimits:
    header_timeout: float = 10.0  # a connection must send a request's headers within this
    body_timeout: float = 10.0  # ... and then its body within this
    keepalive_timeout: float = 75.0  # an idle keep-alive connection is closed after this
    max_connections: int = 1000  # more are answered 503 and closed at once
    max_body: int = MAX_BODY
    max_line_size: int = 8190  # request line
    max_field_size: int = 8190  # one header
    max_headers: int = 64


LIMITS_KEY: web.AppKey[HttpLimits] = web.AppKey("http_limits", HttpLimits)


class BodyRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def limits_of(request: web.Request) -> HttpLimits:
    return request.app.get(LIMITS_KEY) or HttpLimits()


async def read_body(request: web.Request, *, max_body: int | None = None) -> bytes:
    """The whole body, or ``BodyRefused`` (413 too large, 408 too slow)."""
    limits = limits_of(request)
    limit = max_body if max_body is not None else limits.max_body
    length = request.content_length
    if length is not None and length > limit:
        raise BodyRefused(413, f"the body is larger than {limit} bytes")
    content = request.content
    if content.is_eof():  # the whole body came with the headers (small bodies): no waiting
        data = content.read_nowait(-1)
        if len(data) > limit:
            raise BodyRefused(413, f"the body is larger than {limit} bytes")
        return data
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.body_timeout):
            async for chunk in request.content.iter_chunked(65536):
                size += len(chunk)
                if size > limit:
                    raise BodyRefused(413, f"the body is larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyRefused(408, "the body did not arrive in time") from None
    except (web.RequestPayloadError, ConnectionError):
        # a malformed chunked body, or the client went away mid-body
        raise BodyRefused(400, "the body could not be read") from None
    return b"".join(chunks)


def refusal(status: int, error: str, message: str = "") -> web.Response:
    """A 4xx JSON answer that also ends the connection (its unread body is not drained)."""
    response = web.json_response({"error": error, "message": message}, status=status)
    response.force_close()
    return response
