"""What a Slack command shows: one channel message (``chat.postMessage``, its ``ts`` kept) edited
with ``chat.update`` as steps complete, ending with the Result and its buttons; errors and
"are you sure" prompts only to the caller (``response_url`` or ``chat.postEphemeral``).

When the bot is not in the channel (a private channel, a DM), the command's ``response_url``
carries the message instead, visible in the channel; it allows five uses, so only the result
goes that way. The adapter is reached through a port (``Poster``) so this module does not
import it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from commands.results import Result, Step
from notifiers.render import slack as render_slack

CONFIRM_ACTION = "chatops:confirm"
CANCEL_ACTION = "chatops:cancel"
_NO_CHANNEL = ("not_in_channel", "channel_not_found", "is_archived")


class Poster(Protocol):
    """What a reply needs of ``bot.chat.slack.SlackAdapter``."""

    client: AsyncWebClient

    async def respond(self, response_url: str, body: dict[str, Any]) -> None: ...


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": text if len(text) <= limit else text[: limit - 1] + "…"}


def confirm_message(prompt: str, command: str) -> dict[str, Any]:
    """An ephemeral "are you sure" with a Confirm button that opens Slack's native confirm
    dialog (so the click that comes back is a confirmed one) and a Cancel button."""
    text = render_slack.escape(prompt)
    return {
        "text": f"⚠️ {text}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"⚠️ *{text}*"}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": CONFIRM_ACTION,
                        "text": _plain("Confirm", 75),
                        "style": "danger",
                        "value": command,
                        "confirm": {
                            "title": _plain("Are you sure?", 100),
                            "text": _plain(prompt, 300),
                            "confirm": _plain("Yes, go ahead", 30),
                            "deny": _plain("Cancel", 30),
                            "style": "danger",
                        },
                    },
                    {
                        "type": "button",
                        "action_id": CANCEL_ACTION,
                        "text": _plain("Cancel", 75),
                        "value": "cancel",
                    },
                ],
            },
        ],
    }


class SlackReply:
    """The dispatcher's ``Reply`` for one Slack command: one channel message, edited in place;
    ephemeral errors and confirmations for the caller only."""

    def __init__(
        self,
        slack: Poster,
        channel: str,
        user_id: str,
        response_url: str | None,
    ) -> None:
        self._slack = slack
        self.channel = channel
        self.user_id = user_id
        self.response_url = response_url
        self.ts: str | None = None
        self._via_response_url = False
        self._lock = asyncio.Lock()

    async def progress(self, command: str, target: str, steps: Sequence[Step]) -> None:
        await self._show(render_slack.progress_blocks(command, target, steps), final=False)

    async def result(self, result: Result) -> None:
        await self._show(render_slack.result_blocks(result), final=True)

    async def ask_confirm(self, prompt: str, command: str) -> None:
        await self._ephemeral(confirm_message(prompt, command))

    async def error(self, text: str) -> None:
        await self._ephemeral({"text": f"⚠️ {render_slack.escape(text)}"})

    async def _show(self, message: dict[str, Any], *, final: bool) -> None:
        client = self._slack.client
        async with self._lock:
            if self._via_response_url:
                if final:  # response_url allows 5 uses: spend them on the result only
                    await self._respond({**message, "replace_original": True})
                return
            if self.ts is not None:
                await client.chat_update(channel=self.channel, ts=self.ts, **message)
                return
            try:
                resp = await client.chat_postMessage(channel=self.channel, **message)
            except SlackApiError as e:
                # the bot is not in this channel (private channel, DM): answer through the
                # command's response_url instead, visible in the channel
                if e.response.get("error") not in _NO_CHANNEL or not self.response_url:
                    raise
                self._via_response_url = True
                await self._respond({**message, "response_type": "in_channel"})
                return
            self.ts = str(resp["ts"])
            self.channel = str(resp.get("channel") or self.channel)

    async def _ephemeral(self, message: dict[str, Any]) -> None:
        if self.response_url:
            await self._respond(
                {**message, "response_type": "ephemeral", "replace_original": False}
            )
        else:
            await self._slack.client.chat_postEphemeral(
                channel=self.channel, user=self.user_id, **message
            )

    async def _respond(self, body: dict[str, Any]) -> None:
        assert self.response_url is not None
        await self._slack.respond(self.response_url, body)
