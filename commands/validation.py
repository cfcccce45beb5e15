"""Input checks done before any API call: names, durations, timeouts, counts.

Every number a user types is bounded BEFORE it is converted: the text is length-checked and
matched against a plain digits pattern first, so ``int()`` never meets Python's 4,300-digit limit
(ValueError), ``float()`` never returns ``inf``/``nan``, and no range check or message formats an
infinite value (OverflowError). A mistake is always ``errors.BadInput`` (a usage error: the chat
shows the usage line, the CLI exits 2).
"""

from __future__ import annotations

import math
import re

from commands import errors

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$", re.ASCII)
_SECONDS = re.compile(r"^\d+(\.\d+)?$", re.ASCII)
_INTEGER = re.compile(r"^[-+]?\d+$", re.ASCII)
_DIGITS = re.compile(r"^\d+$", re.ASCII)
# "1d23h59m59s" is 11 characters and a day in seconds 6 digits: 24 is plenty for any real
# duration or count, and far below what makes int()/float() misbehave
MAX_NUMBER_CHARS = 24
MAX_INCIDENT_KEY = 300  # "APP:PROBLEM": an app name is at most 253 characters


def app_name(name: str) -> str:
    """An Argo CD Application name is a DNS-1123 subdomain (<= 253 chars, lowercase)."""
    if not name or len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        raise errors.BadInput(
            f"'{_clip(name)}' is not a valid application name.",
            hint="Use lowercase letters, digits, '-' and '.', starting and ending with a letter "
            "or digit (at most 253 characters).",
        )
    return name


def namespace(name: str) -> str:
    """A namespace is a DNS-1123 label (<= 63 chars)."""
    if not name or len(name) > 63 or not _DNS1123_LABEL.match(name):
        raise errors.BadInput(
            f"'{_clip(name)}' is not a valid namespace.",
            hint="Use lowercase letters, digits and '-', at most 63 characters.",
        )
    return name


def duration(text: str, *, minimum: float, maximum: float, what: str = "duration") -> float:
    """Parse ``90``, ``90s``, ``30m``, ``1h30m``, ``2d`` to seconds, within [minimum, maximum]."""
    raw = text.strip().lower()
    seconds: float | None = None
    if raw and len(raw) <= MAX_NUMBER_CHARS:
        if _SECONDS.match(raw):
            seconds = float(raw)
        elif (m := _DURATION.match(raw)) and any(m.groups()):
            d, h, mi, s = (int(g) if g else 0 for g in m.groups())
            seconds = float(d * 86400 + h * 3600 + mi * 60 + s)
    if seconds is None:
        wrong = "is too long for" if len(raw) > MAX_NUMBER_CHARS else "is not"
        raise errors.BadInput(
            f"'{_clip(text)}' {wrong} a {what}.",
            hint=f"Write it like 90s, 30m, 1h30m or 2d; accepted range {human(minimum)} "
            f"to {human(maximum)}.",
        )
    return within(seconds, minimum=minimum, maximum=maximum, what=what)


def integer(text: str, *, minimum: int, maximum: int, what: str = "number") -> int:
    """A whole number typed by a user (``--retry-limit``, ``--limit``), within [min, max]."""
    raw = text.strip()
    if len(raw) > MAX_NUMBER_CHARS or not _INTEGER.match(raw):
        wrong = "is too long for a" if len(raw) > MAX_NUMBER_CHARS else "is not a valid"
        raise errors.BadInput(
            f"'{_clip(text)}' {wrong} {what}.",
            hint=f"Use a whole number from {minimum} to {maximum}.",
        )
    value = int(raw)
    if not minimum <= value <= maximum:
        raise errors.BadInput(
            f"A {what} of {value} is out of range.",
            hint=f"The accepted range is {minimum} to {maximum}.",
        )
    return value


def incident_ref(text: str) -> str:
    """An alert incident as ``ack`` takes it: its key (``payments:degraded``) or ``#ID``."""
    raw = text.strip()
    number = raw[1:] if raw.startswith("#") else raw
    if _DIGITS.match(number):
        if len(number) > 12:  # ids count incidents of one bot: a trillion is plenty
            raise errors.BadInput(f"'{_clip(text)}' is not an incident number.")
        return raw
    if not raw or len(raw) > MAX_INCIDENT_KEY or ":" not in raw:
        raise errors.BadInput(
            f"'{_clip(text)}' is not an incident.",
            hint="Use the key shown on the alert (e.g. payments:degraded) or its #number.",
        )
    return raw


def within(seconds: float, *, minimum: float, maximum: float, what: str = "duration") -> float:
    if not math.isfinite(seconds) or not minimum <= seconds <= maximum:
        shown = human(seconds) if math.isfinite(seconds) else "that length"
        raise errors.BadInput(
            f"A {what} of {shown} is out of range.",
            hint=f"The accepted range is {human(minimum)} to {human(maximum)}.",
        )
    return seconds


def human(seconds: float) -> str:
    """``5400`` -> ``1h30m``; ``45`` -> ``45s``."""
    return "".join(duration_units(seconds))


def duration_units(seconds: float) -> list[str]:
    """``5400`` -> ``["1h", "30m"]``; under a minute, seconds alone: ``45`` -> ``["45s"]``.

    The one split of a duration into days, hours, minutes and seconds: ``human`` joins it for
    commands, the renderers (``render_common.duration``) space it for chat."""
    s = int(seconds) if math.isfinite(seconds) else 0
    if s < 60:
        return [f"{s}s"]
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, s = divmod(s, size)
        if n:
            parts.append(f"{n}{unit}")
    return parts


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
