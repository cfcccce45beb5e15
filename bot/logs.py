"""Logging for ``chatops serve`` and the CLI, set up in one place from the settings.

``CHATOPS_LOG_FORMAT=text`` (default) writes the familiar one line per record;
``CHATOPS_LOG_FORMAT=json`` writes one JSON object per line for log pipelines (Loki, Elastic,
Cloud Logging), with the keys ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message`` and,
when an exception is attached, ``exc`` (its traceback as one string).

Secrets are never logged on purpose (they are ``SecretStr``), and as a second line of defence
every configured secret value is replaced by ``***`` in whatever a record renders to, message
and traceback alike, in both formats.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO

from pydantic import SecretStr

from bot.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CLI_TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
MIN_SECRET = 4  # shorter values would blank out ordinary words
QUIET = ("apscheduler",)  # job bookkeeping is noise below DEBUG
HANDLER_NAME = "chatops"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (like logging's own
    last-resort handler), so a redirected or replaced stderr is followed."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold, longest first (so a secret containing another is
    replaced whole)."""
    values = set()
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
            if len(text) >= MIN_SECRET:
                values.add(text)
                values.update(line for line in text.splitlines() if len(line) >= 16)
    return sorted(values, key=len, reverse=True)


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt)
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return _redact(super().format(record), self.secrets)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _redact(record.getMessage(), self.secrets),
        }
        if record.exc_info:
            out["exc"] = _redact(self.formatException(record.exc_info), self.secrets)
        elif record.exc_text:
            out["exc"] = _redact(record.exc_text, self.secrets)
        if record.stack_info:
            out["stack"] = _redact(self.formatStack(record.stack_info), self.secrets)
        return json.dumps(out, ensure_ascii=False)


def formatter(settings: Settings, *, cli: bool = False) -> logging.Formatter:
    secrets = secret_values(settings)
    if settings.log_format == "json":
        return JsonFormatter(secrets)
    return TextFormatter(CLI_TEXT_FORMAT if cli else TEXT_FORMAT, secrets)


def setup(settings: Settings, *, cli: bool = False, stream: IO[str] | None = None) -> None:
    """Route every log record to stderr (or ``stream``) in the configured format.

    ``serve`` logs at ``CHATOPS_LOG_LEVEL`` (default INFO); the CLI only warnings and errors
    unless ``CHATOPS_LOG_LEVEL`` is set, so its output stays the command's own.
    """
    level = settings.log_level
    if cli and "log_level" not in settings.model_fields_set:
        level = "WARNING"
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.setFormatter(formatter(settings, cli=cli))
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)  # set up again (the CLI, then serve): replace, never double
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
