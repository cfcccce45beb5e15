"""What Slack and Discord renderings share: the style tables, the platform limits, safe truncation,
and the lines both write (facts, resources, events, steps).

Both renderers look up status/severity/step styles here, so a colour or an emoji changes in one
place. The lines are built here once and written in each platform's markup through a ``Markup``
(its escape function, its bold marker, its inline code), so both show the same facts in the
same order and differ only in how they are marked up. Limits are named constants taken from the platforms' documentation; a message that breaks
one is rejected outright by the platform (the whole alert is lost), so every string is clipped
with ``clip`` before it goes out, and tests check every limit on every golden case.

Lengths are measured in UTF-16 code units: Discord counts that way, and it is never less than the
code-point count, so a text that fits by this measure fits on both platforms.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from commands import validation
from commands.results import Action, Status, Step, StepState
from notifiers.alert import Alert, Severity

ELLIPSIS = "…"

# --- Slack Block Kit limits -----------------------------------------------------------------
SLACK_MAX_BLOCKS = 50
SLACK_SECTION_TEXT = 3000
SLACK_CONTEXT_TEXT = 3000
SLACK_CONTEXT_ELEMENTS = 10
SLACK_ACTIONS_ELEMENTS = 25
SLACK_BUTTON_TEXT = 75
SLACK_BUTTON_VALUE = 2000
SLACK_BUTTON_URL = 3000
SLACK_ACTION_ID = 255
SLACK_CONFIRM_TITLE = 100
SLACK_CONFIRM_TEXT = 300
SLACK_CONFIRM_BUTTON = 30
SLACK_FALLBACK_TEXT = 40000

# --- Discord limits --------------------------------------------------------------------------
DISCORD_CONTENT = 2000
DISCORD_EMBEDS = 10
DISCORD_EMBED_TITLE = 256
DISCORD_EMBED_DESCRIPTION = 4096
DISCORD_EMBED_FIELDS = 25
DISCORD_FIELD_NAME = 256
DISCORD_FIELD_VALUE = 1024
DISCORD_FOOTER_TEXT = 2048
DISCORD_AUTHOR_NAME = 256
DISCORD_EMBED_TOTAL = 6000  # title + description + field names/values + footer + author, all embeds
DISCORD_BUTTONS_PER_ROW = 5
DISCORD_ACTION_ROWS = 5
DISCORD_BUTTON_LABEL = 80
DISCORD_CUSTOM_ID = 100
DISCORD_BUTTON_URL = 512

# --- our own layout choices (phone-readable), not platform limits ---------------------------
BUTTONS_PER_ROW = 5
MAX_BUTTON_ROWS = 5
MAX_LIST_ITEMS = 10  # resources / events listed before "… and N more"

# Command routing: a button carries the command string back into the core.
SLACK_ACTION_PREFIX = "chatops:"  # action_id "chatops:<n>", value = command
SLACK_LINK_ACTION_PREFIX = "chatops:link:"  # link buttons: Slack still sends a click to ack
SLACK_COMMAND_ACTION_ID = re.compile(r"^chatops:\d+$")
DISCORD_CUSTOM_ID_PREFIX = "chatops:cmd:"  # custom_id = prefix + command
DISCORD_CUSTOM_ID_PATTERN = r"chatops:cmd:(?P<command>.+)"  # for discord.ui.DynamicItem templates


class RenderError(ValueError):
    """The input cannot be rendered without changing its meaning (e.g. a command too long to fit
    in a button). Raised rather than truncating a command into a different command."""


@dataclass(frozen=True)
class Style:
    emoji: str
    colour: int  # 0xRRGGBB; Discord embed colour (Slack Block Kit has no colour bar)
    word: str  # short plain word for fallbacks: "failed"

    @property
    def hex(self) -> str:
        return f"#{self.colour:06X}"


GREEN, RED, AMBER, BLUE, GREY = 0x2EB67D, 0xE01E5A, 0xECB22E, 0x36C5F0, 0x9AA0A6

STATUS_STYLE: dict[Status, Style] = {
    Status.CHANGED: Style("✅", GREEN, "done"),
    Status.NOOP: Style("☑️", GREY, "nothing to do"),
    Status.FAILED: Style("❌", RED, "failed"),
    Status.DENIED: Style("⛔", AMBER, "denied"),
}

SEVERITY_STYLE: dict[Severity, Style] = {
    Severity.CRITICAL: Style("🔴", RED, "critical"),
    Severity.WARNING: Style("🟠", AMBER, "warning"),
    Severity.RESOLVED: Style("🟢", GREEN, "resolved"),
    Severity.INFO: Style("🔵", BLUE, "info"),
}

PROGRESS_STYLE = Style("⏳", BLUE, "in progress")
PROGRESS_FAILED_STYLE = Style("❌", RED, "failed")

STEP_EMOJI: dict[StepState, str] = {
    StepState.RUNNING: "⏳",
    StepState.DONE: "✅",
    StepState.SKIPPED: "⏭️",
    StepState.FAILED: "❌",
}

STEP_LABEL: dict[str, str] = {
    "refresh": "Refresh",
    "presync": "Pre-sync hook",
    "sync": "Sync",
    "wait": "Wait for healthy",
    "postsync": "Post-sync checks",
    "revert": "Git revert",
    "verify": "Verify rootless",
}

ACK_EMOJI = "👀"


def step_label(name: str) -> str:
    return STEP_LABEL.get(name, name)


def progress_state(steps: Sequence[Step]) -> tuple[Style, str]:
    """The style and short phrase for a progress headline: what is happening right now."""
    failed = [s for s in steps if s.state is StepState.FAILED]
    if failed:
        return PROGRESS_FAILED_STYLE, f"{step_label(failed[-1].name)} failed"
    running = [s for s in steps if s.state is StepState.RUNNING]
    if running:
        return PROGRESS_STYLE, f"{step_label(running[-1].name)}{ELLIPSIS}"
    if not steps:
        return PROGRESS_STYLE, f"starting{ELLIPSIS}"
    return PROGRESS_STYLE, f"finishing{ELLIPSIS}"


def is_destructive(action: Action) -> bool:
    return action.style == "danger" or action.confirm is not None


def short_sha(revision: str) -> str:
    """A 40/64-hex commit id shortened to 7; anything else (tags, branches) unchanged."""
    if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", revision):
        return revision[:7]
    return revision


def duration(seconds: float) -> str:
    """``750`` -> ``12m 30s``; ``45`` -> ``45s``; ``90061`` -> ``1d 1h 1m``."""
    return " ".join(validation.duration_units(max(0, int(seconds)))[:3])


# --- lines both platforms write, each in its own markup ------------------------------------


@dataclass(frozen=True)
class Markup:
    """How one platform marks up the shared lines."""

    escape: Callable[[str], str]  # neutralise the platform's markup in outside text
    bold: str  # "*" in Slack mrkdwn, "**" in Discord markdown
    code: Callable[[str], str]  # a short commit id as inline code

    def strong(self, text: str) -> str:
        return f"{self.bold}{self.escape(text)}{self.bold}"


def fact_line(m: Markup, name: str, value: str) -> str:
    return f"{m.bold}{m.escape(name)}:{m.bold} {m.escape(value)}"


def alert_fact_lines(alert: Alert, m: Markup) -> list[str]:
    """Where the alert happened, the commit behind it, and how long a recovery took."""
    lines = []
    for name, value in (
        ("cluster", alert.cluster),
        ("namespace", alert.namespace),
        ("project", alert.project),
        ("revision", short_sha(alert.revision)),
    ):
        if value:
            lines.append(fact_line(m, name, value))
    if alert.commit is not None:
        c = alert.commit
        text = m.code(short_sha(c.sha))
        if c.subject:
            text += f" {m.escape(c.subject)}"
        if c.author:
            text += f" ({m.escape(c.author)})"
        lines.append(f"{m.bold}commit:{m.bold} {text}")
    if alert.recovered_after is not None:
        lines.append(fact_line(m, "recovered after", duration(alert.recovered_after)))
    return lines


def resource_lines(alert: Alert, m: Markup) -> list[str]:
    """One bullet per resource in trouble; its namespace only where it is not the app's."""
    lines = []
    for r in alert.resources:
        where = (
            f" in {m.escape(r.namespace)}" if r.namespace and r.namespace != alert.namespace else ""
        )
        line = f"• {m.escape(r.kind)} {m.strong(r.name)}{where}"
        if r.status:
            line += f" ({m.escape(r.status)})"
        if r.message:
            line += f": {m.escape(clip(r.message, 300))}"
        lines.append(line)
    return lines


def event_lines(alert: Alert, m: Markup) -> list[str]:
    """One bullet per Warning event group, with its count when it repeated."""
    lines = []
    for e in alert.events:
        count = f" ×{e.count}" if e.count > 1 else ""
        line = f"• {m.strong(e.reason)}{count} {m.escape(e.object)}"
        if e.message:
            line += f": {m.escape(clip(e.message, 300))}"
        lines.append(line)
    return lines


def step_lines(steps: Sequence[Step], m: Markup) -> list[str]:
    """A running command's steps, one line each with its newest state and detail."""
    lines = []
    for s in steps:
        line = f"{STEP_EMOJI[s.state]} {m.strong(step_label(s.name))}"
        if s.detail:
            line += f" — {m.escape(s.detail)}"
        lines.append(line)
    return lines


def steps_summary(steps: Sequence[Step], escape: Callable[[str], str] | None = None) -> str:
    """A final result's steps on one line; failed steps keep their detail (escaped with
    ``escape``, or as is where the text is not rendered as markup)."""
    parts = []
    for s in steps:
        part = f"{STEP_EMOJI[s.state]} {step_label(s.name)}"
        if s.state is StepState.FAILED and s.detail:
            part += f": {escape(s.detail) if escape is not None else s.detail}"
        parts.append(part)
    return " · ".join(parts)


# --- measuring and clipping -----------------------------------------------------------------


def measure(text: str) -> int:
    """Length in UTF-16 code units (astral characters such as most emoji count 2)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _cut(text: str, budget: int) -> str:
    """The longest prefix of ``text`` measuring at most ``budget``, not ending inside a
    character sequence (combining mark, variation selector, zero-width joiner)."""
    used = 0
    end = 0
    for i, ch in enumerate(text):
        width = 2 if ord(ch) > 0xFFFF else 1
        if used + width > budget:
            break
        used += width
        end = i + 1
    # the next kept char may not start a sequence: back off while it would continue one
    while 0 < end < len(text) and _continues(text[end]):
        end -= 1
    while end > 0 and text[end - 1] == "\u200d":
        end -= 1
    return text[:end]


def _continues(ch: str) -> bool:
    return (
        unicodedata.combining(ch) != 0
        or ch in "\u200d\ufe0e\ufe0f"
        or 0x1F3FB <= ord(ch) <= 0x1F3FF  # skin-tone modifiers
        or 0xE0020 <= ord(ch) <= 0xE007F  # tag sequences (flags)
    )


def clip(text: str, limit: int) -> str:
    """``text`` if it fits, else a prefix ending in "…" that measures at most ``limit``."""
    if measure(text) <= limit:
        return text
    if limit <= 0:
        return ""
    head = _cut(text, limit - 1).rstrip()
    if head.endswith("\\") and not head.endswith("\\\\"):
        head = head[:-1]  # half of a Discord markdown escape would escape the ellipsis
    return head + ELLIPSIS


def clip_slack(text: str, limit: int) -> str:
    """``clip`` for Slack mrkdwn: never leaves half a ``<link|label>`` or ``&amp;`` entity."""
    if measure(text) <= limit:
        return text
    if limit <= 0:
        return ""
    head = _cut(text, limit - 1)
    lt, gt = head.rfind("<"), head.rfind(">")
    if lt > gt:
        head = head[:lt]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return head.rstrip() + ELLIPSIS


def fit_lines(
    lines: Iterable[str],
    limit: int,
    *,
    max_items: int | None = None,
    more: str = "… and {n} more",
    slack: bool = False,
) -> str:
    """Join ``lines`` with newlines within ``limit``. Lines that do not fit, or come after
    ``max_items``, are replaced by one "… and N more" line; an over-long first line is clipped."""
    cut = clip_slack if slack else clip
    items = list(lines)
    allowed = len(items) if max_items is None else min(max_items, len(items))
    shown: list[str] = []
    for line in items[:allowed]:
        hidden_after = len(items) - len(shown) - 1
        tail = "\n" + more.format(n=hidden_after) if hidden_after else ""
        if measure("\n".join([*shown, line]) + tail) <= limit:
            shown.append(line)
            continue
        room = limit - measure(tail)
        if not shown and room > 0:
            shown.append(cut(line, room))
            continue
        break
    hidden = len(items) - len(shown)
    text = "\n".join(shown)
    if hidden:
        text = f"{text}\n{more.format(n=hidden)}" if text else more.format(n=hidden)
    return cut(text, limit)


T = TypeVar("T")


def chunk(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
