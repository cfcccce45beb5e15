"""Command results, progress and alerts as Discord message JSON (plain dicts, no SDK).

Returns the REST wire shape: ``{"content", "embeds", "components", "allowed_mentions"}``. The
adapter in bot/ turns it into discord.py objects (``Embed.from_dict``, buttons from the component
dicts) or sends it as is. ``content`` carries the headline because that is what a phone
notification shows; the embed carries the colour, facts and lists; components carry buttons.

A command button's ``custom_id`` is "chatops:cmd:" + the command, so the command survives a
restart with no server-side state (a ``discord.ui.DynamicItem`` matches the prefix). Discord has
no native confirmation dialog: destructive buttons get the danger style and the adapter asks for
confirmation. A command that does not fit in a custom_id raises ``RenderError`` rather than being
cut into a different command. Mentions are never parsed: a Kubernetes event saying "@everyone"
must not ping anyone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from commands.results import Action, Link, Result, Step
from notifiers.alert import Alert
from notifiers.render import common as rc

Message = dict[str, Any]
Embed = dict[str, Any]
Component = dict[str, Any]

ACTION_ROW, BUTTON = 1, 2
PRIMARY, SECONDARY, SUCCESS, DANGER, LINK = 1, 2, 3, 4, 5
NO_MENTIONS: dict[str, list[str]] = {"parse": []}

_INLINE_MARKUP = re.compile(r"([\\*_~`|])")
_LINE_MARKUP = re.compile(r"^(\s*)([>#-])", re.MULTILINE)


def escape(text: str) -> str:
    """Discord markdown: emphasis, code, spoilers anywhere; quotes, headings, lists at line start."""
    return _LINE_MARKUP.sub(r"\1\\\2", _INLINE_MARKUP.sub(r"\\\1", text))


def _button_style(action: Action) -> int:
    if rc.is_destructive(action):
        return DANGER
    return PRIMARY if action.style == "primary" else SECONDARY


def custom_id(command: str) -> str:
    """The custom_id that routes ``command`` back into the core; raises if it cannot fit."""
    cid = rc.DISCORD_CUSTOM_ID_PREFIX + command
    if rc.measure(cid) > rc.DISCORD_CUSTOM_ID:
        raise rc.RenderError(
            f"command {command[:40]!r}… is too long for a Discord button "
            f"({rc.measure(cid)} > {rc.DISCORD_CUSTOM_ID} characters in custom_id)"
        )
    return cid


def _components(actions: Sequence[Action], links: Sequence[Link]) -> list[Component]:
    buttons: list[Component] = []
    seen: set[str] = set()
    for action in actions:
        cid = custom_id(action.command)
        if cid in seen:  # Discord rejects a message with duplicate custom_ids
            continue
        seen.add(cid)
        buttons.append(
            {
                "type": BUTTON,
                "style": _button_style(action),
                "label": rc.clip(action.label, rc.DISCORD_BUTTON_LABEL),
                "custom_id": cid,
            }
        )
    for link in links:
        if len(link.url) > rc.DISCORD_BUTTON_URL:
            continue  # Discord would reject the whole message; a missing link is the lesser harm
        buttons.append(
            {
                "type": BUTTON,
                "style": LINK,
                "label": rc.clip(link.title, rc.DISCORD_BUTTON_LABEL),
                "url": link.url,
            }
        )
    per_row = min(rc.BUTTONS_PER_ROW, rc.DISCORD_BUTTONS_PER_ROW)
    rows = rc.chunk(buttons, per_row)[: min(rc.MAX_BUTTON_ROWS, rc.DISCORD_ACTION_ROWS)]
    return [{"type": ACTION_ROW, "components": row} for row in rows]


def reply_components(actions: Sequence[Action]) -> list[Component]:
    """The buttons of a thread reply that offers a next step (no link buttons)."""
    return _components(actions, ())


def embed_total(embed: Embed) -> int:
    """The characters Discord counts against the 6000 total of an embed."""
    total = rc.measure(embed.get("title", "")) + rc.measure(embed.get("description", ""))
    total += sum(rc.measure(f["name"]) + rc.measure(f["value"]) for f in embed.get("fields", ()))
    total += rc.measure(embed.get("footer", {}).get("text", ""))
    total += rc.measure(embed.get("author", {}).get("name", ""))
    return total


def _fit_embed(embed: Embed) -> Embed:
    """Clip every part to its limit, then bring the total under ``DISCORD_EMBED_TOTAL``:
    first shorten a long description (keeping its head), then drop trailing fields."""
    if "title" in embed:
        embed["title"] = rc.clip(embed["title"], rc.DISCORD_EMBED_TITLE)
    if "description" in embed:
        embed["description"] = rc.clip(embed["description"], rc.DISCORD_EMBED_DESCRIPTION)
    if "fields" in embed:
        embed["fields"] = [
            {**f, "name": rc.clip(f["name"], rc.DISCORD_FIELD_NAME),
             "value": rc.clip(f["value"], rc.DISCORD_FIELD_VALUE)}
            for f in embed["fields"][: rc.DISCORD_EMBED_FIELDS]
        ]  # fmt: skip
    if "footer" in embed:
        embed["footer"] = {
            **embed["footer"],
            "text": rc.clip(embed["footer"]["text"], rc.DISCORD_FOOTER_TEXT),
        }
    over = embed_total(embed) - rc.DISCORD_EMBED_TOTAL
    description = embed.get("description", "")
    if over > 0 and rc.measure(description) > rc.DISCORD_FIELD_VALUE:
        keep = max(rc.DISCORD_FIELD_VALUE, rc.measure(description) - over)
        embed["description"] = rc.clip(description, keep)
    while embed_total(embed) > rc.DISCORD_EMBED_TOTAL and embed.get("fields"):
        embed["fields"].pop()
    over = embed_total(embed) - rc.DISCORD_EMBED_TOTAL
    if over > 0 and "description" in embed:
        embed["description"] = rc.clip(
            embed["description"], max(0, rc.measure(embed["description"]) - over)
        )
    if embed.get("fields") == []:
        del embed["fields"]
    return embed


def _message(content: str, embeds: list[Embed], components: list[Component]) -> Message:
    return {
        "content": rc.clip(content, rc.DISCORD_CONTENT),
        "embeds": [_fit_embed(e) for e in embeds][: rc.DISCORD_EMBEDS],
        "components": components,
        "allowed_mentions": NO_MENTIONS,
    }


def _headline(emoji: str, subject: str, what: str) -> str:
    return f"{emoji} {escape(subject)}: {escape(what)}" if what else f"{emoji} {escape(subject)}"


_MARKUP = rc.Markup(escape=escape, bold="**", code=lambda sha: f"`{sha.replace('`', '')}`")


# --- public API -----------------------------------------------------------------------------


def result_message(result: Result) -> Message:
    style = rc.STATUS_STYLE[result.status]
    content = _headline(style.emoji, f"{result.command} {result.target}", result.summary)
    embed: Embed = {"color": style.colour}
    if result.facts:
        lines = [rc.fact_line(_MARKUP, f.name, f.value) for f in result.facts]
        embed["description"] = rc.fit_lines(lines, rc.DISCORD_EMBED_DESCRIPTION)
    if result.steps:
        embed["footer"] = {"text": rc.steps_summary(result.steps)}  # footers render no markdown
    embeds = [embed] if len(embed) > 1 else []
    return _message(content, embeds, _components(result.actions, result.links))


def progress_message(command: str, target: str, steps: Sequence[Step]) -> Message:
    style, phrase = rc.progress_state(steps)
    content = _headline(style.emoji, f"{command} {target}", phrase)
    embeds: list[Embed] = []
    if steps:
        description = rc.fit_lines(rc.step_lines(steps, _MARKUP), rc.DISCORD_EMBED_DESCRIPTION)
        embeds.append({"color": style.colour, "description": description})
    return _message(content, embeds, [])


def _alert_description(alert: Alert) -> str:
    lines = [escape(alert.summary), ""] if alert.summary else []
    lines += rc.alert_fact_lines(alert, _MARKUP)
    return rc.fit_lines(lines, rc.DISCORD_EMBED_DESCRIPTION)


def _list_field(title: str, count: int, lines: list[str]) -> dict[str, Any]:
    """A full-width field listing resources or events, capped at ``MAX_LIST_ITEMS``."""
    return {
        "name": f"{title} ({count})",
        "value": rc.fit_lines(lines, rc.DISCORD_FIELD_VALUE, max_items=rc.MAX_LIST_ITEMS),
        "inline": False,
    }


def _alert_fields(alert: Alert) -> list[dict[str, Any]]:
    fields = []
    if alert.resources:
        lines = rc.resource_lines(alert, _MARKUP)
        fields.append(_list_field("Resources", len(alert.resources), lines))
    if alert.events:
        lines = rc.event_lines(alert, _MARKUP)
        fields.append(_list_field("Warning events", len(alert.events), lines))
    return fields


def alert_message(alert: Alert) -> Message:
    """The incident message (posted to the alert channel, later edited in place)."""
    style = rc.SEVERITY_STYLE[alert.severity]
    content = f"{style.emoji} {escape(alert.title)}"
    embed: Embed = {"color": style.colour}
    description = _alert_description(alert)
    if description:
        embed["description"] = description
    fields = _alert_fields(alert)
    if fields:
        embed["fields"] = fields
    footer = alert.key
    if alert.acknowledged_by:
        footer += f" · {rc.ACK_EMOJI} acknowledged by {alert.acknowledged_by}"
    embed["footer"] = {"text": footer}
    embed["timestamp"] = alert.occurred_at.astimezone(UTC).isoformat()
    links = (Link("Open in Argo CD", alert.url),) if alert.url else ()
    return _message(content, [embed], _components(alert.actions, links))
