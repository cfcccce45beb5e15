"""The HTTP answers of Argo CD, GitHub (token and App) and GitLab, read the same way everywhere.

Every client of a REST service maps a failed answer to a ``commands.errors`` error a person can
read. The part all of them share lives here, so that a rate limit, a rejected token or a 403
read the same whichever service said it:

    answer                                            error
    no answer (DNS, refused, TLS, reset)              Unavailable  "<Service> at <url> is unreachable (ConnectError)."
    429, or a 403 that is a rate limit (GitHub's      RateLimited  "<Service>'s API rate limit is exhausted for <who>."
      x-ratelimit-remaining: 0, or "rate limit" in       hint: "Retry in 4m." from Retry-After or the reset header
      its message: primary and secondary limits)
    401                                               Unauthorized "<Service> rejected <credential> (401)."
    403                                               Denied       "<Service> denied <who> access to <what>: <message>."
    404                                               NotFound     "<Service> could not find <what>."
    409                                               Conflict     "<Service> refused the request for <what>: <message>."
    400, 422                                          BadInput     "<Service> refused the request for <what>: <message>."
    5xx and anything else                             Unavailable  "<Service> answered 502 for <what>: <message>."

A client passes its ``Service`` (names, and the setting each kind of failure points at) and may
pass ``specific``: a hook that sees the answer first (after the rate-limit check) and returns
its own error for what only that service says - Argo CD's "another operation is already in
progress", GitHub's ``X-Accepted-GitHub-Permissions``, GitLab's ``insufficient_scope`` - or None
for the shared mapping.

The service's message is one line, at most ``MAX_MESSAGE`` characters, with any secret the
client names (its token) and anything shaped like a token blanked; request headers never appear anywhere (GitHub's rate limits:
docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api, "Exceeding the rate
limit": 403 or 429, ``x-ratelimit-remaining: 0`` with ``x-ratelimit-reset`` epoch seconds, or a
``retry-after`` in seconds for secondary limits; GitLab answers 429 with ``Retry-After`` and
``RateLimit-Reset``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from commands import errors
from commands.validation import human

MAX_MESSAGE = 300
# Whatever a body echoes that looks like a credential: a bearer value, GitHub's and GitLab's
# token formats (ghp_/gho_/ghu_/ghs_/ghr_, github_pat_, glpat-).
_TOKEN_LIKE = re.compile(
    r"(?<=Bearer )\S+|\bgh[pousr]_[A-Za-z0-9]{16,}|\bgithub_pat_\w{16,}|\bglpat-[\w-]{16,}",
    re.IGNORECASE,
)


class RateLimited(errors.Unavailable):
    """The service refuses more requests for a while; ``retry_after`` seconds, when it says."""

    def __init__(self, user_message: str, *, hint: str, retry_after: float | None) -> None:
        super().__init__(user_message, hint=hint)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Service:
    """How a client names its service and the settings its failures point at."""

    name: str  # "Argo CD"
    who: str  # whose requests: "the bot", "the Git token", "the app"
    credential: str  # what a 401 rejected: "the bot's token"
    credential_hint: str  # after a 401: which setting holds the credential
    address_hint: str  # when unreachable: which setting holds the address
    permission_hint: str = "Grant the missing permission, then retry."
    unavailable_hint: str = "The service may be restarting; try again shortly."


@dataclass(frozen=True)
class Answer:
    """A failed answer, read once: status, the service's own message, the JSON body, headers."""

    status: int
    message: str
    body: dict[str, Any] = field(default_factory=dict)
    headers: httpx.Headers = field(default_factory=httpx.Headers)

    @property
    def low(self) -> str:
        return self.message.lower()


Specific = Callable[[Answer], errors.CommandError | None]


def read(resp: httpx.Response, *, secrets: Iterable[str] = ()) -> Answer:
    """The answer's status, one-line message (truncated, secrets blanked), body and headers.
    The body must have been read (``await resp.aread()`` for a streamed response)."""
    try:
        parsed = resp.json()
    except ValueError:
        parsed = None
    body = parsed if isinstance(parsed, dict) else {}
    if parsed is None:
        text = resp.text.strip()
        message = text.splitlines()[0] if text else resp.reason_phrase
    else:
        message = _message_of(body)
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    message = _TOKEN_LIKE.sub("***", message)
    message = " ".join(message.split())
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "…"
    return Answer(resp.status_code, message, body, resp.headers)


def _message_of(body: dict[str, Any]) -> str:
    """``message`` (or ``error``) as Argo CD, GitHub and GitLab write it: a string, a list, or
    GitLab's field -> [problems]; plus GitHub's ``errors[].message`` details."""
    value = body.get("message") or body.get("error") or ""
    if isinstance(value, list):
        text = "; ".join(str(v) for v in value)
    elif isinstance(value, dict):
        text = "; ".join(
            f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in value.items()
        )
    else:
        text = str(value)
    for item in body.get("errors") or []:
        if isinstance(item, dict) and item.get("message"):
            text += f" {item['message']}"
    return text.strip()


def check_response(
    resp: httpx.Response,
    service: Service,
    *,
    what: str = "",
    specific: Specific | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Return if ``resp`` succeeded; else raise the error it means (see the module table)."""
    if resp.status_code < 400:
        return
    raise error_for(read(resp, secrets=secrets), service, what=what, specific=specific)


def error_for(
    answer: Answer, service: Service, *, what: str = "", specific: Specific | None = None
) -> errors.CommandError:
    """The error a failed answer means: a rate limit first, then ``specific``, then the table."""
    limited = rate_limited(answer, service)
    if limited is not None:
        return limited
    if specific is not None:
        found = specific(answer)
        if found is not None:
            return found
    return generic(answer, service, what=what)


def generic(answer: Answer, service: Service, *, what: str = "") -> errors.CommandError:
    name, status, msg = service.name, answer.status, answer.message
    about = f" for {what}" if what else ""
    detail = f": {msg}." if msg else "."
    if status == 401:
        return errors.Unauthorized(
            f"{name} rejected {service.credential} (401).", hint=service.credential_hint
        )
    if status == 403:
        return errors.Denied(
            f"{name} denied {service.who} access" + (f" to {what}" if what else "") + detail,
            hint=service.permission_hint,
        )
    if status == 404:
        return errors.NotFound(f"{name} could not find {what or 'that resource'}.")
    if status == 409:
        return errors.Conflict(f"{name} refused the request{about}{detail}")
    if status in (400, 422):
        return errors.BadInput(f"{name} refused the request{about}{detail}")
    return errors.Unavailable(
        f"{name} answered {status}{about}{detail}", hint=service.unavailable_hint
    )


def rate_limited(answer: Answer, service: Service) -> RateLimited | None:
    """A 429, or a 403 that says it is a rate limit, as the same error for every service."""
    remaining = answer.headers.get("x-ratelimit-remaining")
    limited = answer.status == 429 or (
        answer.status == 403 and (remaining == "0" or "rate limit" in answer.low)
    )
    if not limited:
        return None
    wait = retry_after(answer.headers)
    hint = (
        f"Retry in {human(max(math.ceil(wait), 1))}."
        if wait is not None
        else "Retry in a few minutes."
    )
    reset = _reset_epoch(answer.headers)
    if reset is not None and not answer.headers.get("retry-after"):
        at = datetime.fromtimestamp(reset, UTC).strftime("%H:%M")
        hint = f"It resets at {at} UTC: r{hint[1:]}"
    return RateLimited(
        f"{service.name}'s API rate limit is exhausted for {service.who}.",
        hint=hint,
        retry_after=wait,
    )


def retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds or an HTTP date), else the reset time of
    GitHub (``x-ratelimit-reset``) or GitLab (``RateLimit-Reset``), in epoch seconds."""
    now = time.time() if now is None else now
    value = headers.get("retry-after", "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        reset = headers.get(name, "").strip()
        if reset.isdigit():
            return max(0.0, int(reset) - now)
    return None


def _reset_epoch(headers: httpx.Headers) -> int | None:
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        reset = headers.get(name, "").strip()
        if reset.isdigit() and len(reset) <= 12:
            return int(reset)
    return None


def unreachable(service: Service, url: str, exc: BaseException) -> errors.Unavailable:
    """No answer at all (DNS, refused, TLS, reset, timeout): the service, where it was looked
    for (without any user:password in the URL) and the kind of failure; never the request."""
    return errors.Unavailable(
        f"{service.name} at {_safe_url(url)} is unreachable ({type(exc).__name__}).",
        hint=service.address_hint,
    )


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
