r"""A local fake of the Discord REST API (v10) for discord.py.

Point discord.py at it with ``discord.http.Route.BASE = fake.api_url`` (restore it afterwards)
and ``await client.login(fake.token)``: login calls ``GET /users/@me`` and
``GET /oauth2/applications/@me``, both answered here. No gateway runs; interactions are fed to
the client from ``tests.fakes.discord_payloads`` and registered with ``add_interaction`` so this
fake knows their token, channel and message, as Discord does.

It answers the way discord.py depends on: ``Content-Type: application/json`` exactly (discord.py
compares the header verbatim), the interaction callback with 200 and an InteractionCallbackResponse
(``with_response``), 429 with a ``Via`` header and ``{message, retry_after, global}`` (without
``Via`` discord.py takes a 429 for a Cloudflare ban), Discord's JSON error bodies with their codes
(10003 unknown channel, 10008 unknown message, 10062 unknown interaction, 40060 already
acknowledged, 50006 empty message, 50027 invalid webhook token, 50035 invalid form body), and the
message limits (content, embeds, components) so a renderer bug fails here as it would in Discord.

Strict where Discord is (developer docs): a body that is not JSON is 400 code 50109 "The request
body contains invalid JSON."; application command names must match ``^[-_\p{L}\p{N}]{1,32}$``
and be lowercase ("Application Commands" > "Application Command Naming"), else 50035 with
``APPLICATION_COMMAND_INVALID_NAME``; and the first response to an interaction must come within
3 s ("Receiving and Responding": "you must send an initial response within 3 seconds"), later
callbacks are 404 10062 Unknown interaction (``callback_window``, on by default).
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes import discord_payloads as dp
from tests.fakes.common import Served
from tests.fakes.recording import Call, Recorder
from tests.fakes.server import ThreadedServer

Json = dict[str, Any]

EPHEMERAL, LOADING = 1 << 6, 1 << 7
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 1, 4, 5, 6, 7
AUTOCOMPLETE_RESULT, MODAL = 8, 9
_MESSAGE_FIELDS = ("content", "embeds", "components", "flags", "allowed_mentions", "attachments")


class DiscordError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: Json | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> Json:
        body: Json = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def _unknown(what: str, code: int) -> DiscordError:
    return DiscordError(404, code, f"Unknown {what}")


@dataclass
class _Interaction:
    payload: Json
    responded: bool = False
    expired: bool = False
    received: float = 0.0  # time.monotonic() when Discord sent it to the bot
    original_id: str | None = None  # message id of the original response
    callback_type: int | None = None


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response whose Content-Type is exactly ``application/json`` (no charset)."""
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


class FakeDiscord(Served, Recorder):
    def __init__(
        self,
        token: str = "fake-discord-bot-token",  # noqa: S107 - a fake credential
        *,
        application_id: str = dp.APPLICATION_ID,
        bot_user_id: str = dp.BOT_USER_ID,
        interactions_endpoint_url: str | None = None,
        callback_window: float = 3.0,
    ) -> None:
        super().__init__()
        self.callback_window = callback_window  # seconds to the first response (Discord: 3)
        self.token = token
        self.application_id = application_id
        self.bot_user = dp.user(bot_user_id, "chatops", bot=True)
        self.interactions_endpoint_url = interactions_endpoint_url
        self._ids = itertools.count(1_300_000_000_000_000_000)
        self._channels: dict[str, str | None] = {}  # channel id -> guild id
        self._messages: dict[str, Json] = {}
        self._interactions: dict[str, _Interaction] = {}  # by token
        self._commands: dict[str | None, list[Json]] = {}  # guild id (None = global) -> commands
        self.add_channel(dp.CHANNEL_ID, dp.GUILD_ID)
        app = web.Application()
        app.router.add_route("*", "/api/v10/{path:.*}", self._dispatch)
        self.server = ThreadedServer(app)

    # -- lifecycle: start(), stop() and url come from Served ------------------------------
    @property
    def api_url(self) -> str:
        """The value for ``discord.http.Route.BASE``."""
        return self.server.url + "/api/v10"

    # -- configuring state ------------------------------------------------------------------
    def add_channel(self, channel_id: str, guild_id: str | None = dp.GUILD_ID) -> None:
        with self.lock:
            self._channels[channel_id] = guild_id

    def add_interaction(self, payload: Json) -> Json:
        """Register an INTERACTION_CREATE payload (as Discord knows what it sent); returns it.
        A component interaction's message is stored unless the fake already has it."""
        with self.lock:
            state = _Interaction(copy.deepcopy(payload), received=time.monotonic())
            msg = payload.get("message")
            if msg is not None:
                self._messages.setdefault(msg["id"], copy.deepcopy(msg))
                state.original_id = msg["id"]
            self._channels.setdefault(payload["channel_id"], payload.get("guild_id"))
            self._interactions[payload["token"]] = state
        return payload

    def expire_interaction(self, payload: Json) -> None:
        """Past the 3 s (callback) / 15 min (token) windows."""
        with self.lock:
            self._interactions[payload["token"]].expired = True

    # -- reading state ----------------------------------------------------------------------
    def message(self, message_id: str) -> Json:
        with self.lock:
            return copy.deepcopy(self._messages[message_id])

    def messages_in(self, channel_id: str) -> list[Json]:
        with self.lock:
            return [
                copy.deepcopy(m) for m in self._messages.values() if m["channel_id"] == channel_id
            ]

    def original_response(self, payload: Json) -> Json | None:
        """The interaction's original response message (None before a callback)."""
        with self.lock:
            state = self._interactions[payload["token"]]
            if state.original_id is None or not state.responded:
                return None
            return copy.deepcopy(self._messages[state.original_id])

    def callback_type(self, payload: Json) -> int | None:
        with self.lock:
            return self._interactions[payload["token"]].callback_type

    def commands(self, guild_id: str | None = None) -> list[Json]:
        with self.lock:
            return copy.deepcopy(self._commands.get(guild_id, []))

    # -- HTTP -------------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> Json:
        if not request.can_read_body:
            return {}
        if request.content_type == "multipart/form-data":
            form = await request.post()
            raw = form.get("payload_json")
            return json.loads(raw) if isinstance(raw, str) else {}
        body = await request.json()
        return body if isinstance(body, dict) else {"_list": body}

    async def _dispatch(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        name = f"{request.method} {path}"
        try:
            body = await self._body(request)
            invalid_json = False
        except ValueError:
            body, invalid_json = {}, True
        params = {**dict(request.query), **body}
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}

        def reply(status: int, payload: Any, extra: dict[str, str] | None = None) -> web.Response:
            self.record(Call(name, params, time.monotonic(), status, headers))
            if status == 204:
                return web.Response(status=204)
            return json_response(payload, status, extra)

        plan = self.take_failure(name)
        if plan is not None:
            if plan.kind == "rate_limit":
                scope = "global" if plan.is_global else "user"
                extra = {
                    "Via": "1.1 google",
                    "Retry-After": str(max(1, int(plan.retry_after))),
                    "X-RateLimit-Scope": scope,
                }
                if plan.is_global:
                    extra["X-RateLimit-Global"] = "true"
                msg = {"message": "You are being rate limited.", "retry_after": plan.retry_after,
                       "global": plan.is_global, "code": 0}  # fmt: skip
                return reply(429, msg, extra)
            return reply(plan.status, {"message": "Internal Server Error", "code": 0})
        if invalid_json:
            return reply(400, {"message": "The request body contains invalid JSON.", "code": 50109})
        try:
            with self.lock:
                status, payload = self._route(request.method, path, request, body)
        except DiscordError as e:
            return reply(e.status, e.body())
        return reply(status, payload)

    def _auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {self.token}":
            raise DiscordError(401, 0, "401: Unauthorized")

    def _route(self, method: str, path: str, request: web.Request, body: Json) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        query = request.query
        match method, parts:
            case "GET", ["users", "@me"]:
                self._auth(request)
                return 200, copy.deepcopy(self.bot_user) | {"verified": True, "flags": 0}
            case "GET", ["oauth2", "applications", "@me"]:
                self._auth(request)
                return 200, self._app_info()
            case "GET", ["gateway"]:
                return 200, {"url": self.url.replace("http", "ws") + "/gateway"}
            case "GET", ["gateway", "bot"]:
                self._auth(request)
                return 200, {
                    "url": self.url.replace("http", "ws") + "/gateway",
                    "shards": 1,
                    "session_start_limit": {"total": 1000, "remaining": 999,
                                            "reset_after": 0, "max_concurrency": 1},
                }  # fmt: skip
            case "POST", ["interactions", iid, token, "callback"]:
                return self._callback(
                    iid, token, body, query.get("with_response", "") in ("1", "true")
                )
            case (("GET" | "PATCH" | "DELETE"), ["webhooks", app_id, token, "messages", mid]):
                return self._webhook_message(method, app_id, token, mid, body)
            case "POST", ["webhooks", app_id, token]:
                return self._followup(app_id, token, body, query.get("wait", "") in ("1", "true"))
            case "GET", ["channels", cid]:
                self._auth(request)
                return 200, self._channel_payload(cid)
            case "POST", ["channels", cid, "messages"]:
                self._auth(request)
                self._channel_payload(cid)
                return 200, self._create(cid, body)
            case (("GET" | "PATCH" | "DELETE"), ["channels", cid, "messages", mid]):
                self._auth(request)
                self._channel_payload(cid)
                return self._message_op(method, mid, body, channel_id=cid)
            case (("PUT" | "GET"), ["applications", app_id, "guilds", gid, "commands"]):
                self._auth(request)
                return 200, self._bulk_commands(method, app_id, gid, body)
            case (("PUT" | "GET"), ["applications", app_id, "commands"]):
                self._auth(request)
                return 200, self._bulk_commands(method, app_id, None, body)
        raise DiscordError(404, 0, "404: Not Found")

    # -- handlers ---------------------------------------------------------------------------
    def _snowflake(self) -> str:
        return str(next(self._ids))

    def _app_info(self) -> Json:
        return {
            "id": self.application_id,
            "name": "chatops",
            "icon": None,
            "description": "Argo CD ChatOps (fake)",
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": dp.user(dp.USER_ID, "owner"),
            "team": None,
            "verify_key": "0" * 64,
            "flags": 0,
            "summary": "",
            "interactions_endpoint_url": self.interactions_endpoint_url,
            "bot": copy.deepcopy(self.bot_user),
        }

    def _channel_payload(self, cid: str) -> Json:
        if cid not in self._channels:
            raise _unknown("Channel", 10003)
        guild_id = self._channels[cid]
        return dp.text_channel(cid, f"channel-{cid[-4:]}", guild_id or dp.GUILD_ID)

    def _new_message(self, cid: str, body: Json, *, flags: int = 0, **extra: Any) -> Json:
        _check_message(body, allow_empty=bool(flags & LOADING))
        msg = dp.message(
            message_id=self._snowflake(),
            channel_id=cid,
            guild_id=self._channels.get(cid),
            content=body.get("content") or "",
            embeds=[_normalize_embed(e) for e in body.get("embeds") or []],
            components=body.get("components") or [],
            author=copy.deepcopy(self.bot_user),
            flags=(body.get("flags") or 0) | flags,
        )
        msg["timestamp"] = _now()
        msg.update(extra)
        self._messages[msg["id"]] = msg
        return msg

    def _create(self, cid: str, body: Json) -> Json:
        extra: Json = {}
        ref = body.get("message_reference")
        if isinstance(ref, dict) and ref.get("message_id"):
            # a reply carries its reference back, type 0 = DEFAULT (a reply): "Message
            # Reference Structure", discord.com/developers/docs/resources/message
            extra["message_reference"] = {
                "type": 0,
                "message_id": str(ref["message_id"]),
                "channel_id": str(ref.get("channel_id") or cid),
            }
        return copy.deepcopy(self._new_message(cid, body, **extra))

    def _edit(self, msg: Json, body: Json) -> None:
        merged = {k: msg.get(k) for k in ("content", "embeds", "components")}
        merged.update({k: v for k, v in body.items() if k in _MESSAGE_FIELDS})
        _check_message(merged)
        for key in ("content", "components"):
            if key in body:
                msg[key] = body[key] if body[key] is not None else ("" if key == "content" else [])
        if "embeds" in body:
            msg["embeds"] = [_normalize_embed(e) for e in body["embeds"] or []]
        msg["flags"] = msg.get("flags", 0) & ~LOADING
        msg.setdefault("edits", 0)
        msg["edits"] += 1
        msg["edited_timestamp"] = _now()

    def _interaction(self, token: str, *, callback: bool = False) -> _Interaction:
        state = self._interactions.get(token)
        if state is None or (state.expired and callback):
            raise _unknown("interaction", 10062)
        if state.expired:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return state

    def _callback(self, iid: str, token: str, body: Json, with_response: bool) -> tuple[int, Any]:
        state = self._interaction(token, callback=True)
        payload = state.payload
        if payload["id"] != iid:
            raise _unknown("interaction", 10062)
        if state.responded:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - state.received > self.callback_window:
            raise _unknown("interaction", 10062)  # the 3-second window has passed
        kind = body.get("type")
        data = body.get("data") or {}
        cid = payload["channel_id"]
        is_component = payload["type"] == dp.MESSAGE_COMPONENT
        resource: Json = {"type": kind}
        if kind == CHANNEL_MESSAGE:
            msg = self._new_message(cid, data, interaction=_metadata(payload))
            state.original_id = msg["id"]
            resource["message"] = copy.deepcopy(msg)
        elif kind == DEFERRED_CHANNEL_MESSAGE:
            msg = self._new_message(cid, {"flags": data.get("flags", 0)}, flags=LOADING,
                                    interaction=_metadata(payload))  # fmt: skip
            state.original_id = msg["id"]
            resource["message"] = copy.deepcopy(msg)
        elif kind in (DEFERRED_UPDATE, UPDATE_MESSAGE):
            if not is_component:
                raise DiscordError(400, 50035, "Invalid Form Body",
                                   {"type": {"_errors": [{"code": "INTERACTION_RESPONSE_TYPE_INVALID",
                                                          "message": "Invalid interaction response type"}]}})  # fmt: skip
            if kind == UPDATE_MESSAGE:
                msg = self._messages[str(state.original_id)]
                self._edit(msg, data)
                resource["message"] = copy.deepcopy(msg)
        elif kind in (MODAL, AUTOCOMPLETE_RESULT):
            pass
        else:
            raise DiscordError(400, 50035, "Invalid Form Body")
        state.responded = True
        state.callback_type = kind
        if not with_response:
            return 204, None
        original = self._messages.get(str(state.original_id)) if state.original_id else None
        interaction: Json = {"id": iid, "type": payload["type"]}
        if original is not None:
            interaction["response_message_id"] = original["id"]
            interaction["response_message_loading"] = bool(original.get("flags", 0) & LOADING)
            interaction["response_message_ephemeral"] = bool(original.get("flags", 0) & EPHEMERAL)
        return 200, {"interaction": interaction, "resource": resource}

    def _webhook_message(
        self, method: str, app_id: str, token: str, mid: str, body: Json
    ) -> tuple[int, Any]:
        if app_id != self.application_id:
            raise _unknown("Webhook", 10015)
        state = self._interaction(token)
        if mid == "@original":
            if not state.responded or state.original_id is None:
                raise _unknown("Message", 10008)
            mid = state.original_id
        return self._message_op(method, mid, body)

    def _message_op(
        self, method: str, mid: str, body: Json, channel_id: str | None = None
    ) -> tuple[int, Any]:
        """GET, PATCH or DELETE of a message, through a channel or an interaction webhook
        alike; through a channel the message must be in that channel (else Unknown Message)."""
        msg = self._messages.get(mid)
        if msg is None or (channel_id is not None and msg["channel_id"] != channel_id):
            raise _unknown("Message", 10008)
        if method == "DELETE":
            del self._messages[mid]
            return 204, None
        if method == "PATCH":
            self._edit(msg, body)
        return 200, copy.deepcopy(msg)

    def _followup(self, app_id: str, token: str, body: Json, wait: bool) -> tuple[int, Any]:
        if app_id != self.application_id:
            raise _unknown("Webhook", 10015)
        state = self._interaction(token)
        if not state.responded:
            raise _unknown("Webhook", 10015)
        msg = self._new_message(state.payload["channel_id"], body, webhook_id=self.application_id)
        return (200, copy.deepcopy(msg)) if wait else (204, None)

    def _bulk_commands(self, method: str, app_id: str, gid: str | None, body: Json) -> list[Json]:
        if app_id != self.application_id:
            raise DiscordError(403, 50001, "Missing Access")
        if method == "PUT":
            _check_command_names(body.get("_list", []))
            existing = {c["name"]: c for c in self._commands.get(gid, [])}
            saved = []
            for cmd in body.get("_list", []):
                old = existing.get(cmd["name"])
                saved.append(
                    {
                        "type": 1,
                        "options": [],
                        "default_member_permissions": None,
                        "nsfw": False,
                        **cmd,
                        "id": old["id"] if old else self._snowflake(),
                        "application_id": self.application_id,
                        "version": self._snowflake(),
                        **({"guild_id": gid} if gid else {}),
                    }
                )
            self._commands[gid] = saved
        return copy.deepcopy(self._commands.get(gid, []))


def _valid_command_name(name: Any) -> bool:
    """``^[-_\\p{L}\\p{N}]{1,32}$`` and lowercase (Python's ``\\w`` is letters, digits, "_")."""
    return (
        isinstance(name, str)
        and 1 <= len(name) <= 32
        and all(ch in "-_" or ch.isalpha() or ch.isdigit() for ch in name)
        and name == name.lower()
    )


def _check_command_names(commands: list[Json]) -> None:
    errors: Json = {}
    for i, cmd in enumerate(commands):
        if not _valid_command_name(cmd.get("name")):
            errors[str(i)] = {"name": {"_errors": [{"code": "APPLICATION_COMMAND_INVALID_NAME",
                                                    "message": "Command name is invalid"}]}}  # fmt: skip
    if errors:
        raise DiscordError(400, 50035, "Invalid Form Body", errors)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _metadata(payload: Json) -> Json:
    who = payload.get("member", {}).get("user") or payload.get("user")
    return {"id": payload["id"], "type": payload["type"], "name": payload.get("data", {}).get("name", ""),
            "user": who}  # fmt: skip


def _normalize_embed(embed: Json) -> Json:
    return {"type": "rich", **embed}


def _length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _form_error(path: str, message: str, code: str = "BASE_TYPE_MAX_LENGTH") -> DiscordError:
    errors: Json = {}
    node = errors
    for part in path.split("."):
        node = node.setdefault(part, {})
    node["_errors"] = [{"code": code, "message": message}]
    return DiscordError(400, 50035, "Invalid Form Body", errors)


def _check_message(body: Json, *, allow_empty: bool = False) -> None:
    """The message checks Discord makes (50006 empty, 50035 with a per-field error)."""
    content = body.get("content") or ""
    embeds = body.get("embeds") or []
    components = body.get("components") or []
    if (
        not allow_empty
        and not content
        and not embeds
        and not components
        and not body.get("attachments")
    ):
        raise DiscordError(400, 50006, "Cannot send an empty message")
    if _length(content) > 2000:
        raise _form_error("content", "Must be 2000 or fewer in length.")
    if len(embeds) > 10:
        raise _form_error("embeds", "Must be 10 or fewer in length.")
    total = 0
    for i, e in enumerate(embeds):
        for key, limit in (("title", 256), ("description", 4096)):
            if _length(e.get(key) or "") > limit:
                raise _form_error(f"embeds.{i}.{key}", f"Must be {limit} or fewer in length.")
        fields = e.get("fields") or []
        if len(fields) > 25:
            raise _form_error(f"embeds.{i}.fields", "Must be 25 or fewer in length.")
        for j, f in enumerate(fields):
            if not f.get("name") or _length(f["name"]) > 256:
                raise _form_error(
                    f"embeds.{i}.fields.{j}.name", "Must be between 1 and 256 in length."
                )
            if not f.get("value") or _length(f["value"]) > 1024:
                raise _form_error(
                    f"embeds.{i}.fields.{j}.value", "Must be between 1 and 1024 in length."
                )
        footer = (e.get("footer") or {}).get("text") or ""
        if _length(footer) > 2048:
            raise _form_error(f"embeds.{i}.footer.text", "Must be 2048 or fewer in length.")
        total += (
            _length(e.get("title") or "") + _length(e.get("description") or "") + _length(footer)
        )
        total += sum(_length(f["name"]) + _length(f["value"]) for f in fields)
        total += _length((e.get("author") or {}).get("name") or "")
    if total > 6000:
        raise _form_error(
            "embeds", "Embed size exceeds maximum size of 6000", "MAX_EMBED_SIZE_EXCEEDED"
        )
    if len(components) > 5:
        raise _form_error("components", "Must be 5 or fewer in length.")
    ids: set[str] = set()
    for i, row in enumerate(components):
        if row.get("type") != 1 or not 1 <= len(row.get("components") or []) <= 5:
            raise _form_error(
                f"components.{i}", "Invalid action row", "COMPONENT_LAYOUT_WIDTH_EXCEEDED"
            )
        for j, b in enumerate(row["components"]):
            where = f"components.{i}.components.{j}"
            if b.get("style") == 5:
                if not b.get("url") or "custom_id" in b:
                    raise _form_error(
                        where,
                        "Link buttons need a url and no custom_id",
                        "BUTTON_COMPONENT_INVALID_URL",
                    )
            else:
                cid = b.get("custom_id") or ""
                if not cid or _length(cid) > 100:
                    raise _form_error(f"{where}.custom_id", "Must be between 1 and 100 in length.")
                if cid in ids:
                    raise _form_error(f"{where}.custom_id", "Component custom id cannot be duplicated",
                                      "COMPONENT_CUSTOM_ID_DUPLICATED")  # fmt: skip
                ids.add(cid)
            if _length(b.get("label") or "") > 80:
                raise _form_error(f"{where}.label", "Must be 80 or fewer in length.")
