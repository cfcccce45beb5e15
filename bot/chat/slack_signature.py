"""Slack request signatures, checked on the raw bytes before anything parses the body.

Slack signs every HTTP request: ``X-Slack-Signature: v0=hex(HMAC-SHA256(signing secret,
"v0:{X-Slack-Request-Timestamp}:{raw body}"))``, and a request whose timestamp is more than five
minutes off is to be refused (https://api.slack.com/authentication/verifying-requests-from-slack).

Everything here treats the headers as hostile: they may be missing, repeated, non-ASCII bytes
(aiohttp hands those over as surrogate escapes), or thousands of digits long. Each such case is a
``Rejected`` with a reason for the log, never an exception that would become a 500, and the
timestamp is bounded before it becomes a number. The comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from multidict import MultiMapping

MAX_SKEW = 300.0  # seconds between Slack's timestamp and our clock
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"
RETRY_HEADER = "X-Slack-Retry-Num"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() accepts "²" and "٣"
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_RETRY = re.compile(r"[0-9]{1,4}")


class Rejected(Exception):
    """The request is not (validly) signed; ``reason`` is for the log, never for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Signed:
    """The signature headers of a request, well-formed and within the time window."""

    timestamp: str
    signature: str

    def verify(self, secret: bytes, body: bytes) -> bool:
        base = b"v0:" + self.timestamp.encode("ascii") + b":" + body
        expected = hmac.digest(secret, base, hashlib.sha256)
        return hmac.compare_digest(expected, bytes.fromhex(self.signature[3:]))

    @property
    def identity(self) -> str:
        """What makes these exact bytes unique for replay protection."""
        return f"{self.timestamp}:{self.signature}"


def _one(headers: MultiMapping[str] | Mapping[str, str], name: str) -> str | None:
    if isinstance(headers, MultiMapping):
        values = headers.getall(name, [])
        if len(values) > 1:
            raise Rejected(f"{name} is repeated")
        return values[0] if values else None
    return headers.get(name)


def check_headers(headers: MultiMapping[str] | Mapping[str, str], now: float) -> Signed:
    """The well-formed, timely signature headers; ``Rejected`` otherwise."""
    timestamp = _one(headers, TIMESTAMP_HEADER)
    signature = _one(headers, SIGNATURE_HEADER)
    if timestamp is None or signature is None:
        raise Rejected("the request is not signed")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise Rejected(f"{TIMESTAMP_HEADER} is not a Unix time")
    if not _SIGNATURE.fullmatch(signature):
        raise Rejected(f"{SIGNATURE_HEADER} is not a v0 signature")
    if abs(now - int(timestamp)) > MAX_SKEW:
        raise Rejected(f"{TIMESTAMP_HEADER} is more than 5 minutes off")
    return Signed(timestamp, signature)


def retry_number(headers: MultiMapping[str] | Mapping[str, str]) -> int | None:
    """``X-Slack-Retry-Num`` (Slack re-sending an event it thinks we missed), if present;
    ``ValueError`` when it is not a small number."""
    value = _one(headers, RETRY_HEADER)
    if value is None:
        return None
    if not _RETRY.fullmatch(value):
        raise ValueError(f"{RETRY_HEADER} is not a number")
    return int(value)
