"""Command results, progress and alerts as Slack Block Kit (plain dicts, no SDK).

The Slack adapter in bot/ passes these dicts to ``chat.postMessage``/``chat.update`` as they are,
so this module owns the whole wire shape: ``{"text": fallback, "blocks": [...]}``. ``text`` is
what a phone notification and a screen reader show, so it always starts with the headline
("✅ sync payments: Synced to a1b2c3d.").

Buttons route commands back into the core: a command button has ``action_id`` "chatops:<n>"
(unique within the message) and ``value`` = the command string; a link button has
``action_id`` "chatops:link:<n>" and a ``url`` (Slack still posts a click for it, which the
adapter only acknowledges). Everything from the outside world is escaped for mrkdwn and clipped
to the limits in ``render_common``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from commands.results import Action, Link, Result, Step
from notifiers.alert import Alert
from notifiers.render import common as rc

Block = dict[str, Any]
Message = dict[str, Any]


def escape(text: str) -> str:
    """Slack mrkdwn control characters; ``*``/``_`` have no escape in mrkdwn and stay."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": rc.clip(text, limit), "emoji": True}


def _section(mrkdwn: str) -> Block:
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": rc.clip_slack(mrkdwn, rc.SLACK_SECTION_TEXT)},
    }


def _context(*parts: str) -> Block:
    elements = [
        {"type": "mrkdwn", "text": rc.clip_slack(p, rc.SLACK_CONTEXT_TEXT)} for p in parts if p
    ]
    return {"type": "context", "elements": elements[: rc.SLACK_CONTEXT_ELEMENTS]}


def _headline(emoji: str, subject: str, what: str) -> tuple[str, str]:
    """(mrkdwn for the first block, plain-ish fallback text)."""
    mrkdwn = (
        f"{emoji} *{escape(subject)}*: {escape(what)}" if what else f"{emoji} *{escape(subject)}*"
    )
    fallback = (
        f"{emoji} {escape(subject)}: {escape(what)}" if what else f"{emoji} {escape(subject)}"
    )
    return mrkdwn, fallback


_MARKUP = rc.Markup(escape=escape, bold="*", code=lambda sha: f"`{escape(sha)}`")


def _confirm(action: Action, text: str) -> dict[str, Any]:
    return {
        "title": _plain(f"{action.label}?", rc.SLACK_CONFIRM_TITLE),
        "text": _plain(text, rc.SLACK_CONFIRM_TEXT),
        "confirm": _plain(action.label, rc.SLACK_CONFIRM_BUTTON),
        "deny": _plain("Cancel", rc.SLACK_CONFIRM_BUTTON),
        "style": "danger",
    }


def _buttons(actions: Sequence[Action], links: Sequence[Link]) -> list[Block]:
    """Action rows of at most ``BUTTONS_PER_ROW`` buttons: commands first, then links."""
    buttons: list[dict[str, Any]] = []
    for n, action in enumerate(actions):
        if len(action.command) > rc.SLACK_BUTTON_VALUE:
            raise rc.RenderError(
                f"command for button {action.label!r} is {len(action.command)} characters; "
                f"Slack allows {rc.SLACK_BUTTON_VALUE} in a button value"
            )
        button: dict[str, Any] = {
            "type": "button",
            "text": _plain(action.label, rc.SLACK_BUTTON_TEXT),
            "action_id": f"{rc.SLACK_ACTION_PREFIX}{n}",
            "value": action.command,
        }
        if rc.is_destructive(action):
            button["style"] = "danger"
        elif action.style == "primary":
            button["style"] = "primary"
        if action.confirm is not None:
            button["confirm"] = _confirm(action, action.confirm)
        buttons.append(button)
    for n, link in enumerate(links):
        if len(link.url) > rc.SLACK_BUTTON_URL:
            continue  # Slack would reject the whole message; a missing link is the lesser harm
        buttons.append(
            {
                "type": "button",
                "text": _plain(link.title, rc.SLACK_BUTTON_TEXT),
                "action_id": f"{rc.SLACK_LINK_ACTION_PREFIX}{n}",
                "url": link.url,
            }
        )
    rows = rc.chunk(buttons, rc.BUTTONS_PER_ROW)[: rc.MAX_BUTTON_ROWS]
    return [{"type": "actions", "elements": row} for row in rows]


def _finish(fallback: str, blocks: list[Block]) -> Message:
    """Apply the message-level limits: block count and fallback length."""
    if len(blocks) > rc.SLACK_MAX_BLOCKS:
        tail: list[Block] = []
        while blocks and blocks[-1]["type"] == "actions":
            tail.insert(0, blocks.pop())
        keep = rc.SLACK_MAX_BLOCKS - len(tail) - 1
        omitted = len(blocks) - keep
        blocks = [*blocks[:keep], _context(f"… {omitted} more sections not shown"), *tail]
    return {"text": rc.clip_slack(fallback, rc.SLACK_FALLBACK_TEXT), "blocks": blocks}


# --- public API -----------------------------------------------------------------------------


def result_blocks(result: Result) -> Message:
    """The final message of a command: headline, facts, steps, buttons."""
    style = rc.STATUS_STYLE[result.status]
    head, fallback = _headline(style.emoji, f"{result.command} {result.target}", result.summary)
    blocks: list[Block] = [_section(head)]
    if result.facts:
        lines = [rc.fact_line(_MARKUP, f.name, f.value) for f in result.facts]
        blocks.append(_section(rc.fit_lines(lines, rc.SLACK_SECTION_TEXT, slack=True)))
    if result.steps:
        blocks.append(_context(rc.steps_summary(result.steps, escape)))
    blocks.extend(_buttons(result.actions, result.links))
    return _finish(fallback, blocks)


def progress_blocks(command: str, target: str, steps: Sequence[Step]) -> Message:
    """The message edited while a command runs: one line per step, newest state each."""
    style, phrase = rc.progress_state(steps)
    head, fallback = _headline(style.emoji, f"{command} {target}", phrase)
    blocks: list[Block] = [_section(head)]
    if steps:
        lines = rc.step_lines(steps, _MARKUP)
        blocks.append(_section(rc.fit_lines(lines, rc.SLACK_SECTION_TEXT, slack=True)))
    return _finish(fallback, blocks)


def _slack_date(alert: Alert) -> str:
    """``<!date^…>`` renders in the reader's own time zone; the fallback is UTC."""
    ts = int(alert.occurred_at.timestamp())
    utc = alert.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{ts}^{{date_short_pretty}} {{time}}|{utc}>"


def alert_blocks(alert: Alert) -> Message:
    """The top message of an incident thread."""
    style = rc.SEVERITY_STYLE[alert.severity]
    head = f"{style.emoji} *{escape(alert.title)}*"
    if alert.summary:
        head += f"\n{escape(alert.summary)}"
    fallback = f"{style.emoji} {escape(alert.title)}"
    if alert.summary:
        fallback += f" — {escape(alert.summary)}"
    blocks: list[Block] = [_section(head)]
    facts = rc.alert_fact_lines(alert, _MARKUP)
    if facts:
        blocks.append(_section(rc.fit_lines(facts, rc.SLACK_SECTION_TEXT, slack=True)))
    for title, lines in (
        (f"*Resources* ({len(alert.resources)})", rc.resource_lines(alert, _MARKUP)),
        (f"*Warning events* ({len(alert.events)})", rc.event_lines(alert, _MARKUP)),
    ):
        if lines:
            body = rc.fit_lines(
                lines,
                rc.SLACK_SECTION_TEXT - rc.measure(title) - 1,
                max_items=rc.MAX_LIST_ITEMS,
                slack=True,
            )
            blocks.append(_section(f"{title}\n{body}"))
    context = [_slack_date(alert), escape(alert.key)]
    if alert.acknowledged_by:
        context.append(f"{rc.ACK_EMOJI} acknowledged by {escape(alert.acknowledged_by)}")
    blocks.append(_context(" · ".join(context)))
    links = (Link("Open in Argo CD", alert.url),) if alert.url else ()
    blocks.extend(_buttons(alert.actions, links))
    return _finish(fallback, blocks)


def alert_thread_reply(alert: Alert) -> Message:
    """A short reply in the incident's thread: a repeat, an acknowledgement or the recovery;
    buttons only when the reply carries actions (the engine's own replies carry none)."""
    style = rc.SEVERITY_STYLE[alert.severity]
    if alert.kind == "recovered":
        what = "Recovered"
        if alert.recovered_after is not None:
            what += f" after {rc.duration(alert.recovered_after)}"
        what = f"{what}."
    else:
        what = alert.title
    text = f"{style.emoji} *{escape(what)}*"
    fallback = f"{style.emoji} {escape(what)}"
    if alert.summary:
        text += f"\n{escape(alert.summary)}"
        fallback += f" — {escape(alert.summary)}"
    blocks: list[Block] = [_section(text)]
    if alert.kind != "recovered" and alert.resources:
        lines = rc.resource_lines(alert, _MARKUP)
        blocks.append(_section(rc.fit_lines(lines, rc.SLACK_SECTION_TEXT, max_items=3, slack=True)))
    context = [_slack_date(alert)]
    if alert.acknowledged_by:
        context.append(f"{rc.ACK_EMOJI} acknowledged by {escape(alert.acknowledged_by)}")
    blocks.append(_context(" · ".join(context)))
    blocks.extend(_buttons(alert.actions, ()))  # replies that offer a next step (auto-rollback)
    return _finish(fallback, blocks)
