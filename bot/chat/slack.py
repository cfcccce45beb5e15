"""Slack: a slack-bolt ``AsyncApp`` in front of the dispatcher, served by our own HTTP server
(``POST /slack/events``) or over Socket Mode when an app token is set.

Every slash command and button is acked at once and the work runs as a tracked task, so Slack's
3-second limit holds however long a sync takes (and a shutdown can wait for those tasks).

``POST /slack/events`` (``bot.chat.slack_http``) authenticates on the raw bytes before anything
parses them, and never answers a 5xx. Each request's identities (its signature, its
``trigger_id``) go to the replay guard before anything runs: a repeat is acked like any request
and does nothing.

A command shows up as ONE channel message edited as steps complete (``bot.chat.slack_reply``).
Buttons carry the command string in ``value`` (action_id ``chatops:*``) and re-enter the
dispatcher; a button that carried a Slack confirm dialog counts as confirmed. All state is in the
message, so buttons keep working across restarts. The Web API client, with 429s retried honouring
``Retry-After``, is built in ``bot.chat.slack_web``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Coroutine
from typing import Any

from aiohttp import web
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient

from bot.chat import slack_web
from bot.chat.dispatch import Dispatcher
from bot.chat.invocation import Invocation
from bot.chat.slack_http import RETRY_CTX, SIGNATURE_CTX, SlackEvents
from bot.chat.slack_reply import CANCEL_ACTION, CONFIRM_ACTION, SlackReply
from bot.settings import Settings
from bot.state.replay import Identity, ReplayCheckFailed, ReplayGuard
from notifiers.render import slack as render_slack

log = logging.getLogger(__name__)

ACTION_PATTERN = re.compile(r"^chatops:.*")
LINK_PREFIX = "chatops:link:"
AUTH_RETRY_FIRST, AUTH_RETRY_CAP = 1.0, 60.0  # auth.test retried in the background until it works


class SlackAdapter:
    """The bolt app, its Web API client, and the tasks it started."""

    def __init__(
        self,
        settings: Settings,
        dispatcher: Dispatcher,
        client: AsyncWebClient,
        *,
        socket_mode: bool | None = None,
        replays: ReplayGuard | None = None,
    ) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.client = client
        self.replays = replays
        self.socket_mode = bool(settings.slack_app_token) if socket_mode is None else socket_mode
        self.identity: dict[str, Any] | None = None
        self.auth_error: str | None = None
        self._auth_retry: asyncio.Task[None] | None = None
        self._identity_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._socket: Any = None
        self._connecting: asyncio.Task[Any] | None = None
        secret = settings.slack_signing_secret
        self.events = SlackEvents(self, secret.get_secret_value().encode() if secret else None)

        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            # the bot's own identity from one cached auth.test, so a burst of first requests
            # does not become a burst of auth.test calls
            me = await self._whoami()
            return AuthorizeResult(
                enterprise_id=me.get("enterprise_id") or enterprise_id,
                team_id=me.get("team_id") or team_id,
                bot_user_id=me.get("user_id"),
                bot_id=me.get("bot_id"),
                bot_token=client.token,
            )

        # bolt warns at construction that the client's token is ignored when ``authorize`` is
        # given; it is not (authorize hands it back), so that one warning is kept out of the log
        bolt_log = logging.getLogger("chatops.slack.bolt")
        bolt_log.setLevel(logging.ERROR)
        self.app = AsyncApp(
            client=client,
            authorize=authorize,
            logger=bolt_log,
            signing_secret=secret.get_secret_value() if secret else None,
            request_verification_enabled=False,  # slack_http verified it, before parsing
            process_before_response=True,  # our listeners only ack and start a task
            name="chatops",
        )
        bolt_log.setLevel(logging.NOTSET)
        self.app.command(re.compile(r"^/.+"))(self._on_command)
        self.app.action(ACTION_PATTERN)(self._on_action)

    # -- start, serve, stop -------------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        """``auth.test``: who the bot is and its workspace (the Slack Connect check needs it).
        When it fails it is retried in the background (capped backoff) until it works; until
        then ``auth_problem`` says why, for /readyz."""
        try:
            return await self._whoami()
        except Exception as e:
            self.auth_error = slack_web.describe(e)
            if self._auth_retry is None:
                self._auth_retry = asyncio.create_task(self._retry_auth(), name="slack-auth")
            raise

    def auth_problem(self) -> str | None:
        if self.identity is not None:
            return None
        if self.auth_error is not None:
            return f"auth.test failed ({self.auth_error}); retrying"
        return "auth.test has not succeeded yet"

    async def _retry_auth(self) -> None:
        delay = AUTH_RETRY_FIRST
        while self.identity is None:
            await asyncio.sleep(delay)
            delay = min(AUTH_RETRY_CAP, delay * 2)
            try:
                await self._whoami()
            except Exception as e:
                self.auth_error = slack_web.describe(e)
            else:
                log.info("Slack: auth.test succeeded after %s", self.auth_error)
                self.auth_error = None
        self._auth_retry = None

    async def _whoami(self) -> dict[str, Any]:
        async with self._identity_lock:
            if self.identity is None:
                resp = await self.client.auth_test()
                self.identity = dict(resp.data) if isinstance(resp.data, dict) else {}
                team = self.identity.get("team_id")
                if team:
                    self.dispatcher.authz.slack_home_team = str(team)
            return self.identity

    def mount(self, web_app: web.Application, path: str = "/slack/events") -> None:
        web_app.router.add_post(path, self.events.handle)

    async def start_socket_mode(self) -> None:
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        assert self.settings.slack_app_token is not None
        self._socket = AsyncSocketModeHandler(
            self.app, self.settings.slack_app_token.get_secret_value(), web_client=self.client
        )
        # the SDK retries a failed connection by itself, forever: never block start-up on it
        self._connecting = asyncio.create_task(self._socket.connect_async(), name="slack-socket")

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def close(self) -> None:
        if self._auth_retry is not None:
            self._auth_retry.cancel()
            await asyncio.gather(self._auth_retry, return_exceptions=True)
            self._auth_retry = None
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
            self._connecting = None
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    # -- outbound helpers ----------------------------------------------------------------------
    async def say(self, channel: str, text: str) -> None:
        """A plain message in a channel (the scheduler's announcements)."""
        await self.client.chat_postMessage(channel=channel, text=render_slack.escape(text))

    async def respond(self, response_url: str, body: dict[str, Any]) -> None:
        await slack_web.respond(self.client, response_url, body)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- listeners -----------------------------------------------------------------------------
    async def _on_command(self, ack: Any, command: dict[str, Any], context: dict[str, Any]) -> None:
        await ack()
        name = self.dispatcher.canonical(str(command.get("command", ""))) or str(
            command.get("command", "")
        ).lstrip("/")
        inv = Invocation(
            platform="slack",
            user_id=str(command.get("user_id", "")),
            user_name=str(command.get("user_name") or command.get("user_id", "")),
            channel_id=str(command.get("channel_id", "")),
            text=f"{name} {command.get('text') or ''}".strip(),
            team_id=self._user_team(command.get("team_id"), command.get("enterprise_id")),
            source="command",
        )
        reply = SlackReply(self, inv.channel_id, inv.user_id, _str(command.get("response_url")))
        self.spawn(self._run(inv, reply, self._identities(command, context), context))

    async def _on_action(
        self, ack: Any, body: dict[str, Any], action: dict[str, Any], context: dict[str, Any]
    ) -> None:
        await ack()
        self.spawn(self._action(body, action, context))

    async def _action(
        self, body: dict[str, Any], action: dict[str, Any], context: dict[str, Any]
    ) -> None:
        action_id = str(action.get("action_id", ""))
        if action_id.startswith(LINK_PREFIX):
            return  # a link button: Slack opened the URL, nothing to do
        if not await self._first_time(self._identities(body, context), context):
            return
        response_url = _str(body.get("response_url"))
        if action_id in (CANCEL_ACTION, CONFIRM_ACTION) and response_url:
            # the ephemeral prompt has served its purpose either way
            self.spawn(self._quietly(self.respond(response_url, {"delete_original": True})))
        if action_id == CANCEL_ACTION:
            return
        user = _dict(body.get("user"))
        channel = _dict(body.get("channel")).get("id") or _dict(body.get("container")).get(
            "channel_id", ""
        )
        inv = Invocation(
            platform="slack",
            user_id=str(user.get("id", "")),
            user_name=str(user.get("username") or user.get("name") or user.get("id", "")),
            channel_id=str(channel),
            text=str(action.get("value") or ""),
            team_id=self._user_team(
                user.get("team_id") or _dict(body.get("team")).get("id"),
                _dict(body.get("enterprise")).get("id"),
            ),
            confirmed="confirm" in action,
            source="button",
        )
        reply = SlackReply(self, inv.channel_id, inv.user_id, response_url)
        await self._run(inv, reply, [], context)

    @staticmethod
    def _identities(body: dict[str, Any], context: dict[str, Any]) -> list[Identity]:
        """What makes this request unique: its signature (HTTP mode), its trigger_id, and the
        event_id of an Events API delivery."""
        out: list[Identity] = []
        signature = context.get(SIGNATURE_CTX)
        if isinstance(signature, str):
            out.append(("signature", signature))
        for kind in ("trigger_id", "event_id"):
            value = body.get(kind)
            if isinstance(value, str) and value:
                out.append((kind, value))
        return out

    async def _first_time(self, identities: list[Identity], context: dict[str, Any]) -> bool:
        """False for a repeat (already acked; nothing may run) or when it cannot be told."""
        if self.replays is None:
            return True
        retry = context.get(RETRY_CTX) is not None
        if retry and all(kind == "signature" for kind, _ in identities):
            # Slack re-signs its retries: without an id there is no telling it from the original
            self.replays.repeated("slack", "retry")
            return False
        try:
            return await self.replays.seen("slack", identities, retry=retry) is None
        except ReplayCheckFailed as e:
            log.warning("Slack: a request was not run: the replay check failed (%s)", e)
            return False

    def _user_team(self, team_id: Any, enterprise_id: Any) -> str | None:
        """The caller's workspace; an Enterprise Grid org counts when it is the one allowed."""
        allowed = self.settings.authorization.slack_team_ids
        if enterprise_id and str(enterprise_id) in allowed:
            return str(enterprise_id)
        return str(team_id) if team_id else None

    async def _run(
        self,
        inv: Invocation,
        reply: SlackReply,
        identities: list[Identity],
        context: dict[str, Any],
    ) -> None:
        try:
            if identities and not await self._first_time(identities, context):
                return
            await self.events.burst.wait()
            await self.dispatcher.handle(inv, reply)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Slack command failed outside the dispatcher")

    @staticmethod
    async def _quietly(call: Awaitable[None]) -> None:
        try:
            await call
        except Exception as e:
            log.warning("Slack call failed: %s", type(e).__name__)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
