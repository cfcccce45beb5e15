"""The auto-rollback policy: when a bad commit may be reverted without a human, and why not.

Pure: the functions here read an ``Application`` and a ``Situation`` (what the bot remembers and
what the Git host said) and return values; the runner-side glue (``bot.alerts.autorollback``)
feeds them from the Application watch, stores every ``Decision`` and acts through the same
``commands.rollback.rollback`` as ``/rollback``. Keeping the rules here lets them be read, and
tested, without a watch, a store or a chat in the way.

The rules, in order (the first that applies decides):

1. **Trigger.** An automated sync to a new revision R ended Failed/Error once its retries ran
   out (``.operation`` cleared); a failed PostSync hook is the verification failing. Or the
   sync to R succeeded and the app then stayed Degraded for the grace period.
2. **Culprit.** The app was Synced and Healthy at the revision deployed before R; otherwise R
   is not shown to be the cause: alert only (``not_culprit``). The commit that brought R (the
   newest commit touching the app's path at R) must not be the one already deployed before
   (``no_change``).
3. **Guard rails.** Paused by ``/autorollback off`` (``paused``); self-heal off, so people are
   working by hand (``selfheal_off``); never a revert of the policy's own revert, nor of a
   person's undo of it (``policy_revert``, ``undone``: no ping-pong); then, for reverts, at most
   ``per_app_per_hour`` and ``global_per_hour`` an hour (``rate_limited_app``/``_global``).
4. **Action.** Mode ``propose``: a Rollback button in the incident thread (a person decides, so
   no rate limit). ``dry_run``: decide and audit only (rate-limited as a real revert would be).
   Mode ``on``: revert (``acted``), under the app's operation lock like ``/rollback``; when a
   person's command holds it, the glue skips instead (``busy``).

At most one decision per (app, R): the glue claims it durably before anything else.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Literal

from commands.argocd.app import FAILED_PHASES, Application, Problem, dig, short
from commands.githost.port import CommitInfo
from commands.results import Fact

REQUESTED_BY = "auto-rollback policy"
TRAILER = f"Requested-by: {REQUESTED_BY}"
Mode = Literal["on", "propose", "off"]
MODES: tuple[Mode, ...] = ("on", "propose", "off")
TriggerKind = Literal["sync_failed", "postsync_failed", "degraded"]
_REVERTS = re.compile(r"^This reverts commit ([0-9a-f]{7,40})\b", re.M)
MAX_PROBLEMS = 10


class Reason(enum.StrEnum):
    ACTED = "acted"
    PROPOSED = "proposed"
    DRY_RUN = "dry_run"
    NOT_CULPRIT = "not_culprit"
    NO_CHANGE = "no_change"
    PAUSED = "paused"
    SELFHEAL_OFF = "selfheal_off"
    POLICY_REVERT = "policy_revert"
    UNDONE = "undone"
    RATE_LIMITED_APP = "rate_limited_app"
    RATE_LIMITED_GLOBAL = "rate_limited_global"
    NO_COMMIT = "no_commit"
    DUPLICATE = "duplicate"  # the same (app, R) seen again: not a new decision
    BUSY = "busy"  # a person's command holds the app's operation lock: theirs to finish


@dataclass(frozen=True)
class PolicyConfig:
    """``auto_rollback`` from the settings, as the policy reads it."""

    apps: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    mode: Mode = "on"
    dry_run: bool = False
    per_app_per_hour: int = 2
    global_per_hour: int = 10
    degraded_grace: float = 60.0


def mode_for(app: Application, config: PolicyConfig) -> tuple[Mode, str]:
    """The app's mode and where it comes from; the annotation wins over the patterns."""
    note = app.auto_rollback
    if note is not None:
        for mode in MODES:
            if note == mode:
                return mode, "annotation"
        return "off", f"annotation value '{note[:20]}' is not on, propose or off"
    if any(fnmatch.fnmatch(app.name, p) for p in config.apps) or any(
        fnmatch.fnmatch(app.project, p) for p in config.projects
    ):
        return config.mode, "configuration"
    return "off", "not opted in"


# -- triggers -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trigger:
    kind: TriggerKind
    app: str
    revision: str  # R
    previous: str  # the revision deployed before R ("" if none)
    operation: str  # startedAt of the sync that brought R
    phase: str
    message: str
    problems: tuple[Problem, ...] = ()

    @property
    def incident(self) -> str:
        """The incident problem whose thread tells the story."""
        return "degraded" if self.kind == "degraded" else "sync_failed"

    def why(self) -> str:
        if self.kind == "postsync_failed":
            what = (
                f"the PostSync verification of the automated sync to {short(self.revision)} failed"
            )
        elif self.kind == "sync_failed":
            what = f"the automated sync to {short(self.revision)} ended {self.phase}"
        else:
            what = f"{self.app} stayed Degraded after the automated sync to {short(self.revision)}"
        return what + (f": {self.message}" if self.message else "")

    def evidence(self) -> tuple[Fact, ...]:
        facts = [
            Fact("trigger", self.kind),
            Fact("revision", f"{short(self.previous)} → {short(self.revision)}"),
        ]
        if self.phase:
            facts.append(Fact("operation", self.phase))
        if self.message:
            facts.append(Fact("message", self.message[:300]))
        facts += [Fact("resource", p.line()[:200]) for p in self.problems[:3]]
        return tuple(facts)


def _automated(app: Application) -> bool:
    return app.initiated_by == "auto-sync"


def _op_revision(app: Application) -> str:
    state = app.operation_state
    rev = dig(state, "syncResult", "revision") or dig(state, "operation", "sync", "revision")
    return str(rev or "")


def _history(app: Application) -> list[str]:
    items = dig(app.raw, "status", "history", default=[]) or []
    return [str(h.get("revision") or "") for h in items if isinstance(h, dict)]


def _hook_failed(app: Application, hook: str) -> bool:
    resources: list[Any] = dig(app.raw, "status", "operationState", "syncResult", "resources")
    return any(
        isinstance(r, dict) and r.get("hookType") == hook and r.get("hookPhase") in FAILED_PHASES
        for r in resources or []
    )


def failed_sync(app: Application) -> Trigger | None:
    """An automated sync to a new revision that failed for good (retries over)."""
    if app.phase not in FAILED_PHASES or app.operation is not None or not _automated(app):
        return None
    history = _history(app)
    revision, previous = _op_revision(app), (history[-1] if history else "")
    if not revision or revision == previous:
        return None  # a re-sync of what runs already failed: no new commit to blame
    kind: TriggerKind = "postsync_failed" if _hook_failed(app, "PostSync") else "sync_failed"
    return Trigger(
        kind,
        app.name,
        revision,
        previous,
        str(app.operation_state.get("startedAt") or ""),
        app.phase,
        app.operation_message,
        tuple(app.sync_problems()[:MAX_PROBLEMS]),
    )


def degraded_after_sync(app: Application) -> Trigger | None:
    """Degraded now, after a successful automated sync to R (the grace period is the glue's)."""
    if app.health_status != "Degraded" or app.operation_running or app.phase != "Succeeded":
        return None
    history = _history(app)
    revision = _op_revision(app)
    if not _automated(app) or not revision or not history or history[-1] != revision:
        return None
    previous = next((h for h in reversed(history) if h and h != revision), "")
    if not previous:
        return None  # the first deployment: nothing to go back to
    return Trigger(
        "degraded",
        app.name,
        revision,
        previous,
        str(app.operation_state.get("startedAt") or ""),
        app.phase,
        app.health_message or "Degraded.",
        tuple(app.unhealthy_resources()[:MAX_PROBLEMS]),
    )


def health_mark(app: Application) -> tuple[str, bool] | None:
    """(revision, healthy?) when the app is settled at its deployed revision: idle, Synced, and
    Healthy or Degraded. What rule 2 remembers about each revision."""
    if app.operation_running or app.sync_status != "Synced":
        return None
    rev = app.revision
    if not rev or rev != app.deployed_revision:
        return None
    if app.health_status == "Healthy":
        return rev, True
    if app.health_status == "Degraded":
        return rev, False
    return None


# -- the decision ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Situation:
    """Everything rule 2-4 need, gathered by the glue."""

    mode: Mode
    previous_good: bool | None  # the app was Synced and Healthy at the previous revision
    paused_until: float | None
    self_heal: bool
    commit: CommitInfo | None  # the commit that brought R
    commit_error: str = ""
    previous_commit: str = ""  # the commit that brought the previous revision
    policy_reverts: frozenset[str] = frozenset()  # every revert commit the policy made
    acted_app: int = 0  # the policy's reverts of this app in the last hour
    acted_all: int = 0  # ... of every app
    now: float = 0.0


@dataclass(frozen=True)
class Decision:
    action: Literal["act", "propose", "skip"]
    reason: Reason
    detail: str  # one plain sentence for the thread and the audit log


def reverted_sha(message: str) -> str | None:
    """The commit a ``git revert`` message says it reverts."""
    found = _REVERTS.search(message)
    return found.group(1) if found else None


def made_by_policy(commit: CommitInfo, reverts: frozenset[str]) -> bool:
    return commit.sha in reverts or TRAILER in commit.message


def _undoes_policy(commit: CommitInfo, reverts: frozenset[str]) -> bool:
    sha = reverted_sha(commit.message)
    return sha is not None and any(r.startswith(sha) for r in reverts)


def decide(trigger: Trigger, s: Situation, config: PolicyConfig) -> Decision:
    app, rev, prev = trigger.app, short(trigger.revision), short(trigger.previous)

    def skip(reason: Reason, detail: str) -> Decision:
        return Decision("skip", reason, detail)

    if not s.previous_good:
        was = "was Degraded" if s.previous_good is False else "was not seen Synced and Healthy"
        return skip(
            Reason.NOT_CULPRIT,
            f"{app} {was} at {prev} before {rev}, so {rev} is not shown to be the cause: "
            "alert only.",
        )
    if s.paused_until is not None and s.paused_until > s.now:
        return skip(Reason.PAUSED, f"Auto-rollback is paused for {app}.")
    if not s.self_heal:
        return skip(
            Reason.SELFHEAL_OFF, f"Self-heal is off for {app}: people are working on it by hand."
        )
    commit = s.commit
    if commit is None:
        return skip(Reason.NO_COMMIT, s.commit_error or f"No commit found that brought {rev}.")
    if s.previous_commit and s.previous_commit == commit.sha:
        return skip(
            Reason.NO_CHANGE,
            f"Nothing under {app}'s path changed between {prev} and {rev}: no commit to blame.",
        )
    if made_by_policy(commit, s.policy_reverts):
        return skip(
            Reason.POLICY_REVERT,
            f"{commit.short_sha} is a revert the policy made itself; it never reverts those.",
        )
    if _undoes_policy(commit, s.policy_reverts):
        return skip(
            Reason.UNDONE,
            f"{commit.short_sha} undoes a revert of the policy: a person brought the change back.",
        )
    subject = f'{commit.short_sha} "{commit.subject}"'
    if s.mode == "propose" and not config.dry_run:  # a person decides: no rate limit
        return Decision("propose", Reason.PROPOSED, f"Proposes to revert {subject}.")
    if s.acted_app >= config.per_app_per_hour:
        return skip(
            Reason.RATE_LIMITED_APP,
            f"{app} was rolled back {s.acted_app} time(s) in the last hour "
            f"(limit {config.per_app_per_hour}).",
        )
    if s.acted_all >= config.global_per_hour:
        return skip(
            Reason.RATE_LIMITED_GLOBAL,
            f"The policy rolled back {s.acted_all} time(s) in the last hour "
            f"(limit {config.global_per_hour} for all apps).",
        )
    if config.dry_run:
        return skip(Reason.DRY_RUN, f"Dry run: would revert {subject}; nothing written.")
    return Decision("act", Reason.ACTED, f"Reverting {subject}.")
