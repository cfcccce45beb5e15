"""Chat sinks: where the outbox worker's messages actually leave the process.

Each sink implements ``notifiers.delivery.ChatSink`` for one platform and maps that platform's
failures onto the three cases the worker acts on (``slack_failure``/``discord_failure``):

- ``RateLimited(retry_after)``: HTTP 429, Slack's ``ratelimited``;
- ``Transient``: HTTP 5xx, timeouts, refused or reset connections, and the Slack errors its
  docs call temporary (``internal_error``, ``fatal_error``, ``service_unavailable``,
  ``request_timeout``, ``team_added_to_org``). The worker holds the channel back and keeps
  trying for the retry horizon (24 h by default);
- ``Permanent``: everything else the platform answers: ``channel_not_found``,
  ``not_in_channel``, ``is_archived``, ``invalid_blocks``, ``invalid_auth``/``token_revoked``
  on Slack; 400 (invalid form body), 401, 403 (Missing Access) and 404 (Unknown Channel /
  Message) on Discord. These fail the message at once: an unknown error is permanent, because
  a message-specific problem treated as transient would stall its whole channel.

Messages are rendered here, at send time, by ``render_slack``/``render_discord``, so the outbox
stores the neutral Alert and a renderer fix applies to alerts still queued.

Tokens live in the clients' headers only; error texts carry the platform's error code, never
the request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from notifiers.alert import Alert
from notifiers.delivery import ChatSink, DeliveryError, Permanent, RateLimited, Transient
from notifiers.render import discord as render_discord
from notifiers.render import slack as render_slack

DISCORD_API = "https://discord.com/api/v10"
TIMEOUT = 15.0

# Slack "ok": false errors that a retry can fix; every other error is permanent
_SLACK_TRANSIENT = {
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "team_added_to_org",
}


def _retry_after(headers: Mapping[str, str], default: float = 1.0) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", headers.get("retry-after", default))))
    except (TypeError, ValueError):
        return default


def slack_failure(what: str, status: int, error: str, headers: Mapping[str, str]) -> DeliveryError:
    """What an unsuccessful Slack Web API answer means for delivery."""
    error = error or f"HTTP {status}"
    if status == 429 or error == "ratelimited":
        return RateLimited(_retry_after(headers), what)
    if status >= 500 or error in _SLACK_TRANSIENT:
        return Transient(f"{what}: {error}")
    return Permanent(f"{what}: {error}")


def discord_failure(
    what: str, status: int, data: Mapping[str, Any], headers: Mapping[str, str]
) -> DeliveryError | None:
    """What a Discord REST status means for delivery; None for success."""
    if status == 429:
        after = data.get("retry_after")
        retry = float(after) if isinstance(after, int | float) else _retry_after(headers)
        return RateLimited(retry, what)
    if status >= 500:
        return Transient(f"{what}: HTTP {status}")
    if status >= 400:
        code = data.get("code", "")
        msg = str(data.get("message", ""))[:200]
        return Permanent(f"{what}: HTTP {status} {code} {msg}".rstrip())
    return None


class SlackSink:
    platform = "slack"

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackSink | None:
        if settings.slack_bot_token is None:
            return None
        client = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            timeout=int(TIMEOUT),
        )
        return cls(client)

    async def _call(self, method: str, **params: Any) -> dict[str, Any]:
        try:
            resp = await self.client.api_call(method, json=params)
        except SlackApiError as e:
            # e.response is a SlackResponse, or the raw HTTP response when the body was no JSON
            status = int(getattr(e.response, "status_code", 0) or getattr(e.response, "status", 0))
            data = getattr(e.response, "data", None)
            error = str(data.get("error", "")) if isinstance(data, dict) else ""
            headers = getattr(e.response, "headers", None) or {}
            raise slack_failure(f"slack {method}", status, error, headers) from None
        except (aiohttp.ClientError, OSError) as e:  # refused, reset, timed out (TimeoutError)
            raise Transient(f"slack {method}: {type(e).__name__}") from None
        return dict(resp.data) if isinstance(resp.data, dict) else {}

    async def post(self, channel: str, alert: Alert) -> str:
        msg = render_slack.alert_blocks(alert)
        data = await self._call("chat.postMessage", channel=channel, unfurl_links=False, **msg)
        return str(data.get("ts", ""))

    async def update(self, channel: str, ref: str, alert: Alert) -> None:
        msg = render_slack.alert_blocks(alert)
        await self._call("chat.update", channel=channel, ts=ref, **msg)

    async def reply(self, channel: str, ref: str, alert: Alert, *, broadcast: bool = False) -> str:
        msg = render_slack.alert_thread_reply(alert)
        data = await self._call(
            "chat.postMessage",
            channel=channel,
            thread_ts=ref,
            reply_broadcast=broadcast,
            unfurl_links=False,
            **msg,
        )
        return str(data.get("ts", ""))


def discord_reply(alert: Alert) -> dict[str, Any]:
    """A short thread reply: the headline and summary, no embed fields, and no buttons unless
    the reply carries actions."""
    full = render_discord.alert_message(alert)
    embeds = full.get("embeds") or []
    slim: list[dict[str, Any]] = []
    if embeds:
        first = {k: v for k, v in embeds[0].items() if k in ("color", "description", "timestamp")}
        slim.append(first)
    out = {"content": full.get("content", ""), "embeds": slim, "allowed_mentions": {"parse": []}}
    if alert.actions:  # a reply offering a next step (auto-rollback's Undo): its buttons only
        out["components"] = render_discord.reply_components(alert.actions)
    return out


class DiscordSink:
    """Discord REST v10 over aiohttp: messages in a channel, replies referencing the root."""

    platform = "discord"

    def __init__(self, token: str, api_url: str = DISCORD_API) -> None:
        self._token = token
        self.api_url = api_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DiscordSink | None:
        if settings.discord_token is None:
            return None
        return cls(
            settings.discord_token.get_secret_value(), settings.discord_api_url or DISCORD_API
        )

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={
                    "Authorization": f"Bot {self._token}",
                    "User-Agent": "DiscordBot (https://github.com/argocd-chatops, 0.1)",
                },
                timeout=aiohttp.ClientTimeout(total=TIMEOUT),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _request(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.api_url + path
        try:
            async with self._http().request(method, url, json=body) as resp:
                text = await resp.text()
                status = resp.status
                headers = resp.headers
        except (aiohttp.ClientError, OSError) as e:  # refused, reset, timed out (TimeoutError)
            raise Transient(f"discord {method} {path}: {type(e).__name__}") from None
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        failure = discord_failure(f"discord {method} {path}", status, data, headers)
        if failure is not None:
            raise failure
        return data

    async def post(self, channel: str, alert: Alert) -> str:
        data = await self._request(
            "POST", f"/channels/{channel}/messages", render_discord.alert_message(alert)
        )
        return str(data.get("id", ""))

    async def update(self, channel: str, ref: str, alert: Alert) -> None:
        await self._request(
            "PATCH", f"/channels/{channel}/messages/{ref}", render_discord.alert_message(alert)
        )

    async def reply(self, channel: str, ref: str, alert: Alert, *, broadcast: bool = False) -> str:
        body = discord_reply(alert)
        body["message_reference"] = {
            "message_id": ref,
            "channel_id": channel,
            "fail_if_not_exists": False,
        }
        data = await self._request("POST", f"/channels/{channel}/messages", body)
        return str(data.get("id", ""))


def build(settings: Settings) -> dict[str, ChatSink]:
    """The sinks the settings enable, by platform."""
    sinks: dict[str, ChatSink] = {}
    slack = SlackSink.from_settings(settings)
    if slack is not None:
        sinks["slack"] = slack
    discord = DiscordSink.from_settings(settings)
    if discord is not None:
        sinks["discord"] = discord
    return sinks


def _is_sink(obj: Any) -> bool:
    return all(callable(getattr(obj, m, None)) for m in ("post", "update", "reply")) and bool(
        getattr(obj, "platform", None)
    )


def choose(settings: Settings, given: Mapping[str, Any] | None) -> dict[str, ChatSink]:
    """Given ChatSinks win; a platform given as anything else (e.g. the chat adapters
    ``serve`` passes) or not given gets a sink built from the settings."""
    out: dict[str, ChatSink] = dict(build(settings))
    for platform, obj in (given or {}).items():
        if _is_sink(obj):
            out[platform] = obj
    return out


async def close(sinks: Mapping[str, ChatSink]) -> None:
    for sink in sinks.values():
        closer = getattr(sink, "close", None)
        if closer is not None:
            await closer()
