"""Input checks done before any API call: names, durations, timeouts."""

from __future__ import annotations

import math
import re

from commands import errors

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_DURATION_TEXT = 20
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


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
    seconds: float
    if len(raw) > MAX_DURATION_TEXT:  # "9" * 400 would overflow a float
        raise errors.BadInput(
            f"'{_clip(text)}' is not a {what}.",
            hint=f"The accepted range is {human(minimum)} to {human(maximum)}.",
        )
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        seconds = float(raw)
    else:
        m = _DURATION.match(raw)
        if not raw or not m or not any(m.groups()):
            raise errors.BadInput(
                f"'{_clip(text)}' is not a {what}.",
                hint=f"Write it like 90s, 30m, 1h30m or 2d; accepted range {human(minimum)} "
                f"to {human(maximum)}.",
            )
        d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        seconds = float(d * 86400 + h * 3600 + mi * 60 + s)
    return within(seconds, minimum=minimum, maximum=maximum, what=what)


def within(seconds: float, *, minimum: float, maximum: float, what: str = "duration") -> float:
    if not minimum <= seconds <= maximum:
        shown = human(seconds) if math.isfinite(seconds) else str(seconds)
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
    s = int(seconds)
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
