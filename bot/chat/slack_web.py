"""Slack's Web API as the adapter uses it: the client (base URL from settings, for proxies and
tests; 429s and connection errors retried by slack-sdk honouring ``Retry-After``), user-group
members for the authorizer, replies through a command's ``response_url``, and Slack errors put
in a few words for the log and /readyz.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.settings import Settings

log = logging.getLogger(__name__)
# slack-sdk's webhook client writes its URL into DEBUG lines and INFO retry lines; a response_url
# is a capability (anyone holding it can post as the bot for 30 minutes), so its logger stays
# at WARNING whatever the root level is
_response_url_log = logging.getLogger(f"{__name__}.response_url")
_response_url_log.setLevel(logging.WARNING)

RATE_LIMIT_RETRIES = 5


def retry_handlers() -> list[Any]:
    return [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
    ]


def make_client(settings: Settings, session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
    """The Web API client: base URL from settings (proxies, tests), 429s retried."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    base = (
        settings.slack_api_url
        if settings.slack_api_url.endswith("/")
        else f"{settings.slack_api_url}/"
    )
    return AsyncWebClient(
        token=token, base_url=base, session=session, retry_handlers=retry_handlers()
    )


def group_resolver(client: AsyncWebClient) -> Callable[[str], Awaitable[set[str]]]:
    """Members of a Slack user group (``usergroups.users.list``); the authorizer caches it."""

    async def members(group_id: str) -> set[str]:
        resp = await client.usergroups_users_list(usergroup=group_id)
        return {str(u) for u in resp.get("users") or []}

    return members


async def respond(client: AsyncWebClient, response_url: str, body: dict[str, Any]) -> None:
    """Post ``body`` to a command's or a click's ``response_url`` (on the client's session)."""
    webhook = AsyncWebhookClient(
        response_url,
        session=client.session,
        retry_handlers=retry_handlers(),
        logger=_response_url_log,
    )
    resp = await webhook.send_dict(body)
    if resp.status_code >= 400:
        log.warning("response_url answered %s", resp.status_code)


def describe(e: Exception) -> str:
    """An exception in a few words for the log and /readyz: Slack's error code, not its text."""
    if isinstance(e, SlackApiError):
        return f"Slack error {e.response.get('error') or e.response.status_code}"
    return type(e).__name__
