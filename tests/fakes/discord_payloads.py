"""Raw Discord gateway payloads for tests: GUILD_CREATE and INTERACTION_CREATE.

discord.py offers no public way to inject an interaction without a gateway, so adapter tests
feed these dicts to the (private, pinned) ``client._connection.parse_guild_create`` and
``parse_interaction_create``. They carry the fields discord.py 2.7 reads; anything else Discord
sends is left out. Register each interaction with ``FakeDiscord.add_interaction`` so the fake
REST API knows its token and channel, as real Discord does::

    client._connection.parse_guild_create(guild_create(GUILD, channels={CHANNEL: "ops"}))
    payload = fake.add_interaction(slash_command("sync", {"app": "payments"}, ...))
    client._connection.parse_interaction_create(payload)
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

Json = dict[str, Any]

APPLICATION_ID = "1100000000000000001"
BOT_USER_ID = "1100000000000000002"
GUILD_ID = "1100000000000000100"
CHANNEL_ID = "1100000000000000200"
USER_ID = "1100000000000000300"
TIMESTAMP = "2024-05-01T12:00:00.000000+00:00"

# interaction and component types
PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
BUTTON = 2
_OPTION_TYPE = {str: 3, int: 4, bool: 5, float: 10}
ALL_PERMISSIONS = str((1 << 50) - 1)

_snowflakes = itertools.count(1_200_000_000_000_000_000)


def snowflake() -> str:
    return str(next(_snowflakes))


def user(user_id: str = USER_ID, username: str = "alice", *, bot: bool = False) -> Json:
    return {
        "id": user_id,
        "username": username,
        "discriminator": "0",
        "global_name": username.title(),
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


def member(
    user_id: str = USER_ID, username: str = "alice", roles: Sequence[str] = (), **extra: Any
) -> Json:
    """A guild member as in an interaction payload; ``roles`` are role IDs (strings)."""
    return {
        "user": user(user_id, username),
        "roles": list(roles),
        "joined_at": TIMESTAMP,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "nick": None,
        "avatar": None,
        "permissions": ALL_PERMISSIONS,
        **extra,
    }


def role(role_id: str, name: str, position: int = 1) -> Json:
    return {
        "id": role_id,
        "name": name,
        "color": 0,
        "hoist": False,
        "position": position,
        "permissions": "0",
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def text_channel(channel_id: str, name: str, guild_id: str = GUILD_ID, position: int = 0) -> Json:
    return {
        "id": channel_id,
        "type": 0,
        "guild_id": guild_id,
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
    }


def guild_create(
    guild_id: str = GUILD_ID,
    *,
    name: str = "Platform",
    channels: Mapping[str, str] | None = None,
    roles: Mapping[str, str] | None = None,
    members: Sequence[Json] = (),
    owner_id: str = USER_ID,
) -> Json:
    """GUILD_CREATE: ``channels`` and ``roles`` map ID -> name; @everyone (= guild ID) is added."""
    chans = channels if channels is not None else {CHANNEL_ID: "ops"}
    role_list = [role(guild_id, "@everyone", 0)]
    role_list += [role(rid, rname, i + 1) for i, (rid, rname) in enumerate((roles or {}).items())]
    return {
        "id": guild_id,
        "name": name,
        "icon": None,
        "owner_id": owner_id,
        "unavailable": False,
        "member_count": len(members) + 1,
        "large": False,
        "features": [],
        "roles": role_list,
        "emojis": [],
        "stickers": [],
        "channels": [
            text_channel(cid, cname, guild_id, i) for i, (cid, cname) in enumerate(chans.items())
        ],
        "threads": [],
        "members": list(members),
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "joined_at": TIMESTAMP,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "system_channel_flags": 0,
    }


def _interaction(
    kind: int,
    data: Json,
    *,
    guild_id: str | None,
    channel_id: str,
    user_id: str,
    username: str,
    roles: Sequence[str],
    application_id: str,
) -> Json:
    payload: Json = {
        "id": snowflake(),
        "application_id": application_id,
        "type": kind,
        "data": data,
        "token": "itok-" + secrets.token_urlsafe(24),
        "version": 1,
        "channel_id": channel_id,
        "channel": {"id": channel_id, "type": 0, "guild_id": guild_id, "name": "ops"},
        "locale": "en-US",
        "app_permissions": ALL_PERMISSIONS,
        "attachment_size_limit": 10 * 1024 * 1024,
        "entitlements": [],
        "authorizing_integration_owners": {"0": guild_id} if guild_id else {"1": user_id},
        "context": 0 if guild_id else 1,
    }
    if guild_id:
        payload["guild_id"] = guild_id
        payload["guild_locale"] = "en-US"
        payload["guild"] = {"id": guild_id, "locale": "en-US", "features": []}
        payload["member"] = member(user_id, username, roles)
    else:
        payload["user"] = user(user_id, username)
    return payload


def slash_command(
    name: str,
    options: Mapping[str, str | int | bool | float] | None = None,
    *,
    command_id: str | None = None,
    guild_id: str | None = GUILD_ID,
    channel_id: str = CHANNEL_ID,
    user_id: str = USER_ID,
    username: str = "alice",
    roles: Sequence[str] = (),
    application_id: str = APPLICATION_ID,
    subcommand: str | None = None,
) -> Json:
    """INTERACTION_CREATE for ``/name opt:value ...`` (APPLICATION_COMMAND, chat input)."""
    opts: list[Json] = [
        {"name": k, "type": _OPTION_TYPE[type(v)], "value": v} for k, v in (options or {}).items()
    ]
    if subcommand is not None:
        opts = [{"name": subcommand, "type": 1, "options": opts}]
    data: Json = {"id": command_id or snowflake(), "name": name, "type": 1, "options": opts}
    if guild_id:
        data["guild_id"] = guild_id
    return _interaction(
        APPLICATION_COMMAND,
        data,
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=user_id,
        username=username,
        roles=roles,
        application_id=application_id,
    )


def message(
    *,
    message_id: str | None = None,
    channel_id: str = CHANNEL_ID,
    guild_id: str | None = GUILD_ID,
    content: str = "",
    embeds: Sequence[Json] = (),
    components: Sequence[Json] = (),
    author: Json | None = None,
    flags: int = 0,
) -> Json:
    """A message object as the REST API returns it (and as a component interaction carries)."""
    msg: Json = {
        "id": message_id or snowflake(),
        "channel_id": channel_id,
        "type": 0,
        "content": content,
        "author": author or user(BOT_USER_ID, "chatops", bot=True),
        "timestamp": TIMESTAMP,
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": list(embeds),
        "components": list(components),
        "pinned": False,
        "flags": flags,
    }
    if guild_id:
        msg["guild_id"] = guild_id
    return msg


def button_click(
    custom_id: str,
    message: Json,
    *,
    guild_id: str | None = GUILD_ID,
    user_id: str = USER_ID,
    username: str = "alice",
    roles: Sequence[str] = (),
    application_id: str = APPLICATION_ID,
) -> Json:
    """INTERACTION_CREATE for a click on button ``custom_id`` of ``message`` (MESSAGE_COMPONENT).
    ``message`` is the message carrying the button, e.g. ``fake.message(id)``."""
    return _interaction(
        MESSAGE_COMPONENT,
        {"custom_id": custom_id, "component_type": BUTTON},
        guild_id=guild_id,
        channel_id=message["channel_id"],
        user_id=user_id,
        username=username,
        roles=roles,
        application_id=application_id,
    ) | {"message": message}


def modal_submit(
    custom_id: str,
    values: Mapping[str, str],
    *,
    guild_id: str | None = GUILD_ID,
    channel_id: str = CHANNEL_ID,
    user_id: str = USER_ID,
    username: str = "alice",
    roles: Sequence[str] = (),
    application_id: str = APPLICATION_ID,
) -> Json:
    """INTERACTION_CREATE for a submitted modal: ``values`` maps text input custom_id -> value."""
    rows = [
        {"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]}
        for k, v in values.items()
    ]
    return _interaction(
        MODAL_SUBMIT,
        {"custom_id": custom_id, "components": rows},
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=user_id,
        username=username,
        roles=roles,
        application_id=application_id,
    )
