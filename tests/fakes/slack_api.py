"""A local fake of the Slack Web API and of ``response_url``, for slack-sdk and slack-bolt.

Point the real SDK at it: ``AsyncWebClient(token=fake.token, base_url=fake.api_url)`` (the
trailing slash of ``api_url`` matters). It answers like Slack: HTTP 200 with ``{"ok": false,
"error": ...}`` for API errors (``not_authed``, ``invalid_auth``, ``channel_not_found``,
``message_not_found``, ``invalid_blocks``, ``msg_too_long``), 429 with ``Retry-After`` and
``{"ok": false, "error": "ratelimited"}`` when told to rate-limit, and a ``response_url`` that
accepts five posts and then answers 404 ``used_url``.

Strict where Slack is (api.slack.com method docs and "Rate limits"):

- ``chat.postMessage`` / ``chat.update`` into a channel the bot is not a member of answer
  ``not_in_channel``, into an archived one ``is_archived`` (``leave_channel``,
  ``archive_channel``); channels start with the bot as a member.
- ``views.open`` needs a ``trigger_id`` Slack issued (``new_trigger_id``), used within 3 s
  ("trigger_ids expire three seconds after they're issued"): ``expired_trigger_id``, else
  ``invalid_trigger_id`` for one it never issued.
- Rate limits are on by default (``RateLimits``): each method has its tier's per-minute budget
  (Tier 2: 20, Tier 3: 50, Tier 4: 100; bursts allowed, so a full minute's budget may go at
  once) and ``chat.postMessage`` its special limit of about one message a second per channel,
  with a burst; past them, HTTP 429 with ``Retry-After`` and ``ratelimited``. The time each
  request arrived is recorded (``Call.at``), so a test proves a client waited.

It keeps state: messages by (channel, ts) with their edit history and threads, ephemeral
messages, opened views, user groups, users and channels. Every call is recorded with its
merged parameters, so tests assert on what Slack saw. Methods: auth.test, chat.postMessage,
chat.update, chat.postEphemeral, views.open, usergroups.users.list, users.info,
conversations.info.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes.common import Served
from tests.fakes.recording import Call, Recorder
from tests.fakes.server import ThreadedServer

Json = dict[str, Any]
Handler = Callable[[Json], Json]

RESPONSE_URL_USES = 5
TRIGGER_TTL = 3.0  # seconds a trigger_id can open a view
# methods by rate-limit tier (api.slack.com/methods pages); requests per minute
TIERS = {
    "usergroups.users.list": 20,
    "chat.update": 50,
    "conversations.info": 50,
    "auth.test": 100,
    "chat.postEphemeral": 100,
    "users.info": 100,
    "views.open": 100,
}
POST_PER_CHANNEL = 1.0  # chat.postMessage: about one message per second per channel ...
POST_BURST = 20  # ... "short bursts" allowed: the fake lets this many go at once
_JSON_FIELDS = ("blocks", "attachments", "view", "metadata")

# limits the real API enforces on a message (mirrors notifiers.render.common, kept separate so
# the fake checks the renderer instead of trusting it)
_MAX_BLOCKS, _SECTION_TEXT, _BUTTON_TEXT, _BUTTON_VALUE, _TEXT = 50, 3000, 75, 2000, 40000


class SlackError(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


class RateLimits:
    """Token buckets: per method (its tier's budget per minute) and, for chat.postMessage, per
    channel. ``take`` answers None when the call may go, else the seconds to wait."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = True
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, method: str, channel: str | None) -> float | None:
        if not self.enabled:
            return None
        if method == "chat.postMessage" and channel:
            return self._take(f"post:{channel}", POST_BURST, POST_PER_CHANNEL)
        per_minute = TIERS.get(method)
        if per_minute is None:
            return None
        return self._take(method, per_minute, per_minute / 60.0)

    def _take(self, key: str, capacity: float, rate: float) -> float | None:
        now = self.clock()
        tokens, at = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - at) * rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / rate


class FakeSlack(Served, Recorder):
    def __init__(
        self,
        token: str = "xoxb-fake-bot-token",  # noqa: S107 - a fake credential
        *,
        team_id: str = "T0FAKE",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        channels: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.token = token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._messages: dict[tuple[str, str], Json] = {}
        self._ephemeral: list[Json] = []
        self._views: list[Json] = []
        self._usergroups: dict[str, list[str]] = {}
        self._users: dict[str, Json] = {}
        self._channels: dict[str, Json] = {}
        self._responses: dict[str, Json] = {}
        self._triggers: dict[str, float] = {}  # trigger_id -> issued at (monotonic)
        self.trigger_ttl = TRIGGER_TTL
        self.limits = RateLimits()
        for cid, name in (channels or {"C0ALERTS": "alerts", "C0OPS": "ops"}).items():
            self.add_channel(cid, name)
        self.add_user(bot_user_id, "chatops", is_bot=True)
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{id}", self._response_url)
        self.server = ThreadedServer(app)

    # -- lifecycle: start(), stop() and url come from Served ------------------------------
    @property
    def api_url(self) -> str:
        return self.server.url + "/api/"

    # -- configuring state ------------------------------------------------------------------
    def add_channel(
        self, channel_id: str, name: str, *, is_private: bool = False, is_ext_shared: bool = False
    ) -> None:
        with self.lock:
            self._channels[channel_id] = {
                "id": channel_id,
                "name": name,
                "is_channel": not is_private,
                "is_group": False,
                "is_im": False,
                "is_private": is_private,
                "is_archived": False,
                "is_shared": is_ext_shared,
                "is_ext_shared": is_ext_shared,
                "is_org_shared": False,
                "is_member": True,
                "context_team_id": self.team_id,
                "created": 1700000000,
            }

    def add_user(
        self,
        user_id: str,
        name: str,
        *,
        team_id: str | None = None,
        is_bot: bool = False,
        deleted: bool = False,
        enterprise_id: str | None = None,
    ) -> None:
        user: Json = {
            "id": user_id,
            "team_id": team_id or self.team_id,
            "name": name,
            "real_name": name.title(),
            "deleted": deleted,
            "is_bot": is_bot,
            "is_admin": False,
            "is_restricted": False,
            "tz": "Europe/Berlin",
            "profile": {"display_name": name, "real_name": name.title()},
        }
        if enterprise_id:
            user["enterprise_user"] = {"enterprise_id": enterprise_id, "id": user_id}
        with self.lock:
            self._users[user_id] = user

    def set_usergroup(self, group_id: str, user_ids: list[str]) -> None:
        with self.lock:
            self._usergroups[group_id] = list(user_ids)

    def new_response_url(self, channel: str | None = None, ts: str | None = None) -> str:
        """A response_url as Slack puts in a command or interaction payload. With ``channel``/
        ``ts`` it belongs to that message, so ``replace_original`` edits it."""
        rid = f"R{next(self._ids):05d}"
        with self.lock:
            self._responses[rid] = {"channel": channel, "ts": ts, "posts": [], "expired": False}
        return f"{self.url}/response/{rid}"

    def leave_channel(self, channel_id: str) -> None:
        """The bot is no longer a member: posts there answer ``not_in_channel``."""
        with self.lock:
            self._channels[channel_id]["is_member"] = False

    def archive_channel(self, channel_id: str) -> None:
        with self.lock:
            self._channels[channel_id]["is_archived"] = True

    def new_trigger_id(self) -> str:
        """A trigger_id as Slack puts in a command or interaction payload, valid for 3 s."""
        trigger = f"{next(self._ids)}.{1714564800}.{next(self._ids):032x}"
        with self.lock:
            self._triggers[trigger] = time.monotonic()
        return trigger

    def expire_response_url(self, url: str) -> None:
        with self.lock:
            self._responses[url.rsplit("/", 1)[1]]["expired"] = True

    # -- reading state ----------------------------------------------------------------------
    def message(self, channel: str, ts: str) -> Json:
        with self.lock:
            return copy.deepcopy(self._messages[(channel, ts)])

    def messages_in(self, channel: str) -> list[Json]:
        """Top-level messages of a channel, oldest first (thread replies excluded)."""
        with self.lock:
            return [
                copy.deepcopy(m)
                for (c, _), m in sorted(self._messages.items(), key=lambda kv: kv[0][1])
                if c == channel and m.get("thread_ts", m["ts"]) == m["ts"]
            ]

    def thread(self, channel: str, thread_ts: str) -> list[Json]:
        """Replies in a thread, oldest first (the parent excluded)."""
        with self.lock:
            return [
                copy.deepcopy(m)
                for (c, ts), m in sorted(self._messages.items(), key=lambda kv: kv[0][1])
                if c == channel and m.get("thread_ts") == thread_ts and ts != thread_ts
            ]

    @property
    def ephemeral(self) -> list[Json]:
        with self.lock:
            return copy.deepcopy(self._ephemeral)

    @property
    def views(self) -> list[Json]:
        with self.lock:
            return copy.deepcopy(self._views)

    def response_posts(self, url: str) -> list[Json]:
        with self.lock:
            return copy.deepcopy(self._responses[url.rsplit("/", 1)[1]]["posts"])

    # -- HTTP -------------------------------------------------------------------------------
    async def _params(self, request: web.Request) -> Json:
        params: Json = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:
                params.update(
                    {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
                )
        for key in _JSON_FIELDS:
            if isinstance(params.get(key), str):
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    pass
        return params

    def _reply(
        self, name: str, params: Json, request: web.Request, status: int, body: Json,
        headers: dict[str, str] | None = None,
    ) -> web.Response:  # fmt: skip
        auth = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        self.record(Call(name, params, time.monotonic(), status, auth))
        return web.json_response(body, status=status, headers=headers)

    def _injected(self, name: str, params: Json, request: web.Request) -> web.Response | None:
        plan = self.take_failure(name)
        if plan is None:
            return None
        if plan.kind == "rate_limit":
            headers = {"Retry-After": str(int(plan.retry_after))}
            body: Json = {"ok": False, "error": "ratelimited"}
            return self._reply(name, params, request, 429, body, headers)
        return self._reply(
            name, params, request, plan.status, {"ok": False, "error": "fatal_error"}
        )

    async def _api(self, request: web.Request) -> web.Response:
        name = request.match_info["method"]
        params = await self._params(request)
        body_token = str(params.pop("token", ""))  # never recorded
        injected = self._injected(name, params, request)
        if injected is not None:
            return injected
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header else body_token
        if not token:
            return self._reply(name, params, request, 200, {"ok": False, "error": "not_authed"})
        if token != self.token:
            return self._reply(name, params, request, 200, {"ok": False, "error": "invalid_auth"})
        wait = self.limits.take(name, self._channel_id(params))
        if wait is not None:
            headers = {"Retry-After": str(max(1, math.ceil(wait)))}
            return self._reply(name, params, request, 429, {"ok": False, "error": "ratelimited"},
                               headers)  # fmt: skip
        handler = self._handlers().get(name)
        if handler is None:
            body: Json = {"ok": False, "error": "unknown_method", "req_method": name}
            return self._reply(name, params, request, 200, body)
        try:
            with self.lock:
                result = handler(params)
        except SlackError as e:
            return self._reply(
                name, params, request, 200, {"ok": False, "error": e.error, **e.extra}
            )
        return self._reply(name, params, request, 200, {"ok": True, **result})

    async def _response_url(self, request: web.Request) -> web.Response:
        rid = request.match_info["id"]
        params = await self._params(request)
        injected = self._injected("response_url", params, request)
        if injected is not None:
            return injected
        with self.lock:
            state = self._responses.get(rid)
            if state is None or state["expired"]:
                body: Json = {"ok": False, "error": "expired_url"}
                return self._reply("response_url", params, request, 404, body)
            if len(state["posts"]) >= RESPONSE_URL_USES:
                body = {"ok": False, "error": "used_url"}
                return self._reply("response_url", params, request, 404, body)
            try:
                _check_message(params, needs_content=not params.get("delete_original"))
            except SlackError as e:
                return self._reply(
                    "response_url", params, request, 400, {"ok": False, "error": e.error}
                )
            state["posts"].append(copy.deepcopy(params))
            key = (state["channel"], state["ts"])
            if key in self._messages:
                if params.get("delete_original"):
                    del self._messages[key]
                elif params.get("replace_original"):
                    self._edit(self._messages[key], params)
        return self._reply("response_url", params, request, 200, {"ok": True})

    # -- methods ----------------------------------------------------------------------------
    def _handlers(self) -> dict[str, Handler]:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "views.open": self._views_open,
            "usergroups.users.list": self._usergroup_users,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
        }

    def _auth_test(self, params: Json) -> Json:
        return {
            "url": "https://fake-workspace.slack.com/",
            "team": "Fake Workspace",
            "user": "chatops",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _channel(self, params: Json) -> str:
        ref = str(params.get("channel") or "")
        if ref in self._channels:
            return ref
        name = ref.lstrip("#")
        for cid, channel in self._channels.items():
            if channel["name"] == name:
                return cid
        raise SlackError("channel_not_found")

    def _channel_id(self, params: Json) -> str | None:
        with self.lock:
            try:
                return self._channel(params)
            except SlackError:
                return None

    def _writable(self, channel: str) -> None:
        state = self._channels[channel]
        if state["is_archived"]:
            raise SlackError("is_archived")
        if not state["is_member"]:
            raise SlackError("not_in_channel")

    def _next_ts(self) -> str:
        return f"{1714564800 + next(self._ts)}.{next(self._ids):06d}"

    def _post_message(self, params: Json) -> Json:
        channel = self._channel(params)
        self._writable(channel)
        _check_message(params)
        thread_ts = params.get("thread_ts")
        if thread_ts and (channel, thread_ts) not in self._messages:
            raise SlackError("thread_not_found")
        ts = self._next_ts()
        message: Json = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "team": self.team_id,
            "ts": ts,
            "text": params.get("text", ""),
            "blocks": params.get("blocks", []),
            "history": [],
        }
        if thread_ts:
            message["thread_ts"] = thread_ts
            parent = self._messages[(channel, thread_ts)]
            parent["thread_ts"] = thread_ts
            parent["reply_count"] = parent.get("reply_count", 0) + 1
        self._messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": _public(message)}

    def _edit(self, message: Json, params: Json) -> None:
        message["history"].append({"text": message["text"], "blocks": message["blocks"]})
        if "text" in params:
            message["text"] = params["text"]
        if "blocks" in params:
            message["blocks"] = params["blocks"]
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}

    def _update(self, params: Json) -> Json:
        channel = self._channel(params)
        self._writable(channel)
        ts = str(params.get("ts") or "")
        message = self._messages.get((channel, ts))
        if message is None:
            raise SlackError("message_not_found")
        if message.get("user") != self.bot_user_id:
            raise SlackError("cant_update_message")
        _check_message(params)
        self._edit(message, params)
        return {"channel": channel, "ts": ts, "text": message["text"], "message": _public(message)}

    def _post_ephemeral(self, params: Json) -> Json:
        channel = self._channel(params)
        user = params.get("user")
        if user not in self._users:
            raise SlackError("user_not_found")
        _check_message(params)
        ts = self._next_ts()
        self._ephemeral.append({"channel": channel, "user": user, "message_ts": ts, **params})
        return {"message_ts": ts}

    def _views_open(self, params: Json) -> Json:
        trigger = str(params.get("trigger_id") or "")
        if not trigger:
            raise SlackError("invalid_arguments")
        issued = self._triggers.get(trigger)
        if issued is None:
            raise SlackError("invalid_trigger_id")
        if time.monotonic() - issued > self.trigger_ttl:
            raise SlackError("expired_trigger_id")
        view = params.get("view")
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            raise SlackError("invalid_arguments")
        opened = {**view, "id": f"V{next(self._ids):07d}", "team_id": self.team_id}
        self._views.append({"trigger_id": params["trigger_id"], "view": opened})
        return {"view": opened}

    def _usergroup_users(self, params: Json) -> Json:
        group = params.get("usergroup")
        if group not in self._usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self._usergroups[group])}

    def _users_info(self, params: Json) -> Json:
        user = self._users.get(str(params.get("user")))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": copy.deepcopy(user)}

    def _conversations_info(self, params: Json) -> Json:
        channel = self._channels.get(str(params.get("channel")))
        if channel is None:
            raise SlackError("channel_not_found")
        return {"channel": copy.deepcopy(channel)}


def _public(message: Json) -> Json:
    return {k: copy.deepcopy(v) for k, v in message.items() if k != "history"}


def _check_message(params: Json, *, needs_content: bool = True) -> None:
    """The message checks Slack does before accepting a post or an edit."""
    text, blocks = params.get("text"), params.get("blocks")
    if needs_content and not text and not blocks and not params.get("attachments"):
        raise SlackError("no_text")
    if isinstance(text, str) and len(text) > _TEXT:
        raise SlackError("msg_too_long")
    if blocks is None:
        return
    errors = _block_errors(blocks)
    if errors:
        raise SlackError("invalid_blocks", errors=errors)


def _block_errors(blocks: Any) -> list[str]:
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    errors = []
    if len(blocks) > _MAX_BLOCKS:
        errors.append(f"no more than {_MAX_BLOCKS} items allowed [json-pointer:/blocks]")
    action_ids: set[str] = set()
    for i, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "section":
            text = block.get("text", {}).get("text", "")
            if not text or len(text) > _SECTION_TEXT:
                errors.append(
                    f"must be 1-{_SECTION_TEXT} characters [json-pointer:/blocks/{i}/text/text]"
                )
        elif kind == "actions":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 25:
                errors.append(f"must have 1-25 elements [json-pointer:/blocks/{i}/elements]")
            for j, el in enumerate(elements):
                label = el.get("text", {}).get("text", "")
                if not label or len(label) > _BUTTON_TEXT:
                    errors.append(
                        f"must be 1-{_BUTTON_TEXT} characters [json-pointer:/blocks/{i}/elements/{j}/text/text]"
                    )
                if len(el.get("value", "")) > _BUTTON_VALUE:
                    errors.append(
                        f"must be at most {_BUTTON_VALUE} characters [json-pointer:/blocks/{i}/elements/{j}/value]"
                    )
                aid = el.get("action_id")
                if aid in action_ids:
                    errors.append(
                        f"action_id must be unique [json-pointer:/blocks/{i}/elements/{j}/action_id]"
                    )
                action_ids.add(aid)
        elif kind not in ("context", "divider", "header", "image", "input", "rich_text"):
            errors.append(f"unsupported type: {kind} [json-pointer:/blocks/{i}/type]")
    return errors
