"""Errors a person can read.

Every failure that reaches a chat user, a webhook sender or a CLI user is a ``CommandError``
with a one-sentence ``user_message`` and an optional ``hint`` (what to do next). The REST
clients (Argo CD, GitHub, GitLab) map HTTP failures to these through one shared table,
``commands.http_errors``, each adding only what its service alone says; the Kubernetes client
maps its failures in ``commands.kube.client.map_error``. The chat front-ends never see a status
code, a raw body, or a token.

    CommandError
    ├── BadInput        the request itself is wrong (name, duration, argument) -> CLI exit 2
    ├── Denied          not allowed (chat authorization, Argo CD 403, sync window)
    │   └── Unauthorized   the bot's own credentials were rejected (401)
    ├── NotFound        no such application / commit / resource (with close matches)
    ├── Conflict        an operation is already running, the branch moved, a merge conflict
    ├── Unavailable     the service cannot be reached or answered 5xx
    │   └── RateLimited    (commands.http_errors) 429 or a rate-limit 403; carries retry_after
    └── Timeout         the thing we waited for did not happen in time

Anything that is not a CommandError is a bug: it is logged with its traceback and shown as
"Internal error (ref xxxx)".
"""

from __future__ import annotations

import secrets


class CommandError(Exception):
    """A failure with a message written for the person who asked."""

    kind = "error"

    def __init__(self, user_message: str, *, hint: str | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.hint = hint

    def __str__(self) -> str:
        return self.user_message if not self.hint else f"{self.user_message} {self.hint}"


class BadInput(CommandError):
    kind = "bad_input"


class Denied(CommandError):
    kind = "denied"


class Unauthorized(Denied):
    kind = "unauthorized"


class NotFound(CommandError):
    kind = "not_found"

    def __init__(
        self, user_message: str, *, hint: str | None = None, suggestions: tuple[str, ...] = ()
    ) -> None:
        super().__init__(user_message, hint=hint)
        self.suggestions = suggestions


class Conflict(CommandError):
    kind = "conflict"


class Unavailable(CommandError):
    kind = "unavailable"


class Timeout(CommandError):
    kind = "timeout"


def internal_ref() -> str:
    """A short reference that ties a chat "Internal error" to the log line with the traceback."""
    return secrets.token_hex(2)
