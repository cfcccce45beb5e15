"""``POST /slack/events``: authenticate on the raw bytes, then parse, then ack, then route.

In that order, so a request that is not Slack's costs a header check and nothing else:

1. The signature headers (``bot.chat.slack_signature``): missing, malformed, non-ASCII or out of
   the five-minute window -> 401 before a byte of the body is read.
2. The body, read within the server's limits (``bot.http_limits``: 413 too large, 408 too slow).
3. The HMAC over those exact bytes -> 401 when it does not match.
4. Only now is the body parsed, strictly as UTF-8; a signed body that is not a Slack request
   (bad JSON, a payload nested thousands deep, not UTF-8, a bad ``X-Slack-Retry-Num``) -> 400.
5. Commands (a form with a ``command`` field) and clicks (a form that is one ``payload`` field
   of type ``block_actions``) are acked at once with the empty 200 our listeners would send,
   and bolt routes them after the burst of requests has been answered (``Burst``). A command
   (or any form but an interaction) reaches bolt with the fields parsed here, since bolt's own
   parser mistakes any form that mentions "payload" (``/sync payload-api``) for an interaction. Anything else (URL
   verification, ssl_check) goes through bolt before answering.

Bolt's own request verification is off: the request was verified once, before anything parsed
it. The signature and ``X-Slack-Retry-Num`` travel in bolt's context to the listeners, which
give them to the replay guard with the request's ``trigger_id`` before anything runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal, Protocol

from aiohttp import web
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.chat import slack_signature
from bot.http_limits import BodyRefused, read_body, refusal


class SlackAdapter(Protocol):
    """What the endpoint needs of ``bot.chat.slack.SlackAdapter`` (a port: this module must not
    import the adapter that mounts it)."""

    app: Any  # slack_bolt.async_app.AsyncApp

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...


log = logging.getLogger(__name__)

SIGNATURE_CTX = "chatops_signature"  # bolt context keys set here, read by the listeners
RETRY_CTX = "chatops_retry"
# what parsing a signed but malformed body can raise inside bolt's request constructor
_MALFORMED = (ValueError, RecursionError, TypeError, AttributeError, KeyError)
# Ack first: while Slack requests keep arriving, command work waits (at most BURST_MAX_DEFER)
# until none came for BURST_QUIET, so a burst of commands is acked before any of them starts
# hogging the event loop with API calls. The work itself has no deadline; the ack has 3 s.
BURST_QUIET = 0.01
BURST_MAX_DEFER = 0.25


class Burst:
    """One gate for all the work waiting for a burst of requests to end: one timer, not one
    per waiting task (200 waiting tasks polling a clock would slow the acks they wait for)."""

    def __init__(self) -> None:
        self.last_request = 0.0
        self._open: asyncio.Future[None] | None = None

    def request(self) -> None:
        self.last_request = time.monotonic()

    async def wait(self) -> None:
        if time.monotonic() - self.last_request >= BURST_QUIET:
            return
        if self._open is None:
            self._open = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._watch(self._open))
        await asyncio.shield(self._open)

    async def _watch(self, gate: asyncio.Future[None]) -> None:
        deadline = time.monotonic() + BURST_MAX_DEFER
        try:
            while True:
                now = time.monotonic()
                quiet_for = now - self.last_request
                if quiet_for >= BURST_QUIET or now >= deadline:
                    return
                await asyncio.sleep(min(BURST_QUIET - quiet_for, deadline - now))
        finally:
            self._open = None
            if not gate.done():
                gate.set_result(None)


class SlackEvents:
    def __init__(self, adapter: SlackAdapter, secret: bytes | None) -> None:
        self.adapter = adapter
        self._secret = secret
        self.burst = Burst()
        # acked requests waiting for the burst to end: a list and one task per burst, so the
        # ack itself costs an append, not a task and a future per request
        self._later: list[Callable[[], AsyncBoltRequest]] = []
        self._draining = False

    async def handle(self, request: web.Request) -> web.Response:
        self.burst.request()
        try:
            signed = slack_signature.check_headers(request.headers, time.time())
        except slack_signature.Rejected as e:
            return _unauthorized(e.reason)
        try:
            raw = await read_body(request)
        except BodyRefused as e:
            return refusal(e.status, "body refused", e.message)
        if self._secret is None or not signed.verify(self._secret, raw):
            return _unauthorized("the signature does not match the body")
        try:
            retry = slack_signature.retry_number(request.headers)
            text = raw.decode("utf-8")  # strict: Slack sends UTF-8
        except (ValueError, slack_signature.Rejected) as e:
            return _malformed(e)
        context = {SIGNATURE_CTX: signed.identity, RETRY_CTX: retry}
        raw_headers, query = request.headers, request.query_string

        def bolt_request(form: dict[str, str] | None = None) -> AsyncBoltRequest:
            headers: dict[str, str | Sequence[str]] = {}
            for key, value in raw_headers.items():
                headers.setdefault(key.lower(), value)
            if form is None:
                return AsyncBoltRequest(body=text, query=query, headers=headers, context=context)
            # bolt parses the raw body again, and takes any form body containing the text
            # "payload" for an interaction (``slack_bolt.request.internals.parse_body``): a
            # form that is not one gets the fields we parsed, the raw body stays for the record
            req = AsyncBoltRequest(body="", query=query, headers=headers, context=context)
            req.raw_body, req.body = text, form
            req.context = build_async_context(AsyncBoltContext(context), form)
            return req

        kind = _form_kind(text, request.content_type)
        if kind == "command":
            # a slash command: form fields, nothing to parse that could fail; ack now
            self._defer(lambda: bolt_request(_fields(text)))
            return web.Response()
        try:
            parsed = bolt_request(_fields(text) if kind == "form" else None)
        except _MALFORMED as e:
            return _malformed(e)
        if kind == "interaction" and parsed.body.get("type") == "block_actions":
            self._defer(lambda: parsed)  # a click: ack now too
            return web.Response()
        return to_aiohttp(await self.adapter.app.async_dispatch(parsed))

    def _defer(self, build: Callable[[], AsyncBoltRequest]) -> None:
        self._later.append(build)
        if not self._draining:
            self._draining = True
            self.adapter.spawn(self._drain())

    async def _drain(self) -> None:
        """Once the burst is over, route everything acked meanwhile through bolt."""
        try:
            await self.burst.wait()
        finally:
            batch, self._later, self._draining = self._later, [], False
        for build in batch:
            self.adapter.spawn(self._dispatch(build))

    async def _dispatch(self, build: Callable[[], AsyncBoltRequest]) -> None:
        try:
            response = await self.adapter.app.async_dispatch(build())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Slack: routing an acknowledged request failed")
            return
        if response.status >= 400:
            log.warning("Slack: bolt answered %s to an acknowledged request", response.status)


def _form_kind(text: str, content_type: str) -> Literal["command", "interaction", "form", "json"]:
    """How Slack's bodies tell themselves apart: JSON (Events API, URL verification); a slash
    command, a form with a ``command`` field; an interaction, a form of one ``payload`` field
    (JSON inside); any other form (``ssl_check``). Keys are form-encoded, so ``command=`` at the
    start or after ``&`` is the key, never text inside a value."""
    if content_type == "application/json" or text.startswith("{"):
        return "json"
    if text.startswith("command=") or "&command=" in text:
        return "command"
    if text.startswith("payload=") and "&" not in text:
        return "interaction"
    return "form"


def _fields(text: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))


def _unauthorized(reason: str) -> web.Response:
    log.debug("Slack: request refused (401): %s", reason)  # counted per route in /metrics
    return refusal(401, "invalid signature", "the request is not signed by Slack")


def _malformed(e: BaseException) -> web.Response:
    log.info("Slack: a signed request was malformed (%s)", type(e).__name__)
    return refusal(400, "malformed request", "the body is not a Slack request")


def to_aiohttp(resp: BoltResponse) -> web.Response:
    headers = {k: v for k, v in resp.first_headers_without_set_cookie().items()}
    return web.Response(status=resp.status, body=resp.body.encode("utf-8"), headers=headers)
