"""The Git-host port of /rollback: what the rollback flow asks of GitHub or GitLab.

A rollback is a ``git revert`` made through the host's API, so the repository Argo CD watches
moves forward to a state without the bad change and auto-sync can stay on. The rollback flow
finds the commit (``find_commit_for_path`` or ``commit``), shows it (``preview``) and, once a
person confirms, calls ``revert``. Each host implements this Protocol; the values and the
wording shared by both (the revert message git itself would write, the conflict and "nothing
to revert" errors) live here so the two stay alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from commands import errors
from commands.validation import human

SHORT = 7
_SHA = re.compile(r"^[0-9a-fA-F]{4,40}$")
_MAX_LISTED_PATHS = 10


class NothingToRevert(errors.Conflict):
    """The revert would change nothing: already reverted, or the commit changed nothing."""

    kind = "nothing_to_revert"


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    short_sha: str
    author: str
    subject: str
    message: str
    authored_at: datetime
    parents: tuple[str, ...]
    files: tuple[str, ...]
    url: str

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


@dataclass(frozen=True)
class RevertOutcome:
    kind: Literal["committed", "pull_request"]
    sha: str  # the new revert commit
    url: str  # the commit, or the pull/merge request to review
    branch: str  # where the revert commit is: the configured branch or rollback/<short>
    reverted: CommitInfo
    message: str


class GitHost(Protocol):
    async def find_commit_for_path(self, path: str, revision: str) -> CommitInfo:
        """The newest commit on the branch that touched ``path`` and is ``revision`` or one of
        its ancestors."""
        ...

    async def commit(self, sha: str) -> CommitInfo:
        """NotFound if unknown; BadInput if not on the configured branch."""
        ...

    async def preview(self, sha: str) -> CommitInfo:
        """``commit`` plus an early check, without writing, that the revert applies: raises
        Conflict (with the paths) or NothingToRevert as ``revert`` would."""
        ...

    async def revert(self, sha: str, *, requested_by: str) -> RevertOutcome:
        """Write the revert on the branch, or on ``rollback/<short>`` with a pull/merge request
        when the branch is protected."""
        ...

    async def check_access(self) -> list[str]:
        """The permissions the token is missing, named as the host names them (for doctor)."""
        ...


def short(sha: str) -> str:
    return sha[:SHORT]


def check_sha(text: str) -> str:
    """A commit id as typed by a person: 4 to 40 hex digits (branch names are refused)."""
    sha = text.strip()
    if not _SHA.match(sha):
        shown = sha if len(sha) <= 50 else sha[:50] + "…"
        raise errors.BadInput(
            f"'{shown}' is not a commit SHA.", hint="Give 7 to 40 hexadecimal characters."
        )
    return sha.lower()


def normalize_path(path: str) -> str:
    """An app's source path as Argo CD stores it ("./apps/x/", "apps/x") -> "apps/x"; "" for
    the repository root."""
    clean = path.strip().strip("/")
    while clean.startswith("./"):
        clean = clean[2:].lstrip("/")
    return "" if clean == "." else clean


def subject_of(message: str) -> str:
    return message.strip().split("\n", 1)[0].strip()


def revert_message(commit: CommitInfo, requested_by: str) -> str:
    """The message ``git revert`` writes, plus a trailer saying who asked, from where.

    A merge commit is reverted against its first parent; git says so in its own words."""
    who = " ".join(requested_by.split()) or "unknown"
    if commit.is_merge:
        body = f"This reverts commit {commit.sha}, reversing\nchanges made to {commit.parents[0]}."
    else:
        body = f"This reverts commit {commit.sha}."
    return f'Revert "{commit.subject}"\n\n{body}\n\nRequested-by: {who}\n'


def rollback_branch(commit: CommitInfo) -> str:
    return f"rollback/{commit.short_sha}"


def pull_request_text(commit: CommitInfo, branch: str, requested_by: str) -> tuple[str, str]:
    """Title and body of the pull/merge request opened when the branch is protected."""
    title = f'Revert "{commit.subject}"'
    body = (
        f"Reverts {commit.sha} ({commit.subject}) on `{branch}`.\n\n"
        f"Requested by {' '.join(requested_by.split())} with /rollback. The branch is "
        "protected, so the revert waits for review here; merge it to roll back."
    )
    return title, body


def conflict(commit_short: str, paths: list[str] | tuple[str, ...]) -> errors.Conflict:
    listed = ", ".join(paths[:_MAX_LISTED_PATHS])
    if len(paths) > _MAX_LISTED_PATHS:
        listed += f" and {len(paths) - _MAX_LISTED_PATHS} more"
    where = f" in: {listed}" if listed else ""
    return errors.Conflict(
        f"Reverting {commit_short} conflicts with later changes{where}.",
        hint=f"Nothing was written. Revert it by hand: git revert {commit_short}",
    )


def nothing_to_revert(commit_short: str, branch: str) -> NothingToRevert:
    return NothingToRevert(
        f"Reverting {commit_short} would change nothing on {branch}: it is already reverted, "
        "or it changed nothing.",
        hint="Nothing was written.",
    )


def not_on_branch(commit_short: str, branch: str, repo: str) -> errors.BadInput:
    return errors.BadInput(
        f"Commit {commit_short} is not on branch {branch} of {repo}.",
        hint="Pick a commit from that branch's history.",
    )


def age(authored_at: datetime, now: datetime | None = None) -> str:
    """``2h30m ago``, for the confirmation that shows the commit."""
    now = now or datetime.now(UTC)
    seconds = (now - authored_at).total_seconds()
    if seconds < 60:
        return "just now"
    return "".join(re.findall(r"\d+[dhms]", human(seconds))[:2]) + " ago"


def parse_time(text: str) -> datetime:
    """ISO 8601 as GitHub ("...Z") and GitLab ("...+03:00", "....000Z") write it."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
