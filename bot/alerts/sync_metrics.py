"""Sync operations as Prometheus metrics, from the Application stream the bot already watches.

Every operation Argo CD runs shows up on the stream, whoever started it (auto-sync, the UI, CI,
this bot), so the watch is the one place that sees them all. An operation is identified by its
app and ``status.operationState.startedAt``; it is counted once, when its phase is terminal
(Succeeded, Failed or Error: Argo CD has no other final phase; a terminated operation ends
Failed) and ``finishedAt`` is set, as:

- ``chatops_argocd_sync_operations_total{app,project,argocd_instance,phase}``, and
- ``chatops_argocd_sync_duration_seconds{...}``: ``finishedAt - startedAt`` (when both parse).

What is counted (the rule is about what the bot can know, not guess):

- The first sight of an app after start-up is a baseline: an operation already over then may
  have been counted by the previous process, so it is not counted. One still running is, once
  it finishes (its own timestamps give the duration, however long before start-up it began).
- The memory (app -> last operation) outlives the stream: Argo CD re-sends every app when the
  stream reconnects, and a re-sent operation is not counted again. One that finished while the
  stream was down is counted when the stream is back (the bot knew the app before). Of several
  operations run during one outage only the last is visible, hence counted.
- Two operations of one app started within the same second share a ``startedAt`` (Argo CD
  writes second precision) and count as one.

The label is ``argocd_instance``, not ``instance``: Prometheus attaches its own ``instance``
(the scrape target) and renames a scraped one to ``exported_instance`` (``honor_labels``
false, the default), which would break every query on it. It is "default" until the bot
watches several Argo CD instances.
"""

from __future__ import annotations

from datetime import datetime

from bot.metrics import Registry
from commands.argocd.app import TERMINAL_PHASES, Application

DEFAULT_INSTANCE = "default"
# syncs take seconds to an hour (hooks, waves, health waits); the default buckets stop at 5 min
SYNC_BUCKETS: tuple[float, ...] = (5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
LABELS = ("app", "project", "argocd_instance", "phase")


def _when(text: object) -> datetime | None:
    """An RFC 3339 metav1.Time ("2024-05-01T10:00:00Z"), None if absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


class OperationMetrics:
    """Counts each finished sync operation of one Argo CD instance once (see module doc).

    Several of these (one per Argo CD instance) may share a ``Registry``: the series are the
    same, the ``argocd_instance`` label tells them apart."""

    def __init__(self, registry: Registry, *, instance: str = DEFAULT_INSTANCE) -> None:
        self.instance = instance
        self.duration = registry.histogram(
            "chatops_argocd_sync_duration_seconds",
            "Duration of finished Argo CD sync operations (finishedAt - startedAt), by app,"
            " project, Argo CD instance and final phase; any initiator, auto-sync included",
            LABELS,
            buckets=SYNC_BUCKETS,
        )
        self.operations = registry.counter(
            "chatops_argocd_sync_operations_total",
            "Finished Argo CD sync operations by app, project, Argo CD instance and final phase"
            " (Succeeded, Failed, Error)",
            LABELS,
        )
        # app -> (startedAt of its latest operation, whether that one is over); "" = none yet
        self._last: dict[str, tuple[str, bool]] = {}

    def saw(self, kind: str, app: Application) -> None:
        """One event of the Application stream (ADDED, MODIFIED, DELETED)."""
        name = app.name
        if not name:
            return
        if kind == "DELETED":
            self._last.pop(name, None)
            return
        state = app.operation_state
        started = str(state.get("startedAt") or "")
        over = bool(started) and app.phase in TERMINAL_PHASES and bool(state.get("finishedAt"))
        prev = self._last.get(name)
        self._last[name] = (started, over)
        if prev is None or not over or prev == (started, True):
            return  # a baseline, still running, or already counted
        self._count(app, started, state.get("finishedAt"))

    def _count(self, app: Application, started: str, finished: object) -> None:
        labels = {
            "app": app.name,
            "project": app.project,
            "argocd_instance": self.instance,
            "phase": app.phase,
        }
        self.operations.inc(1.0, **labels)
        begin, end = _when(started), _when(finished)
        if begin is not None and end is not None and end >= begin:
            self.duration.observe((end - begin).total_seconds(), **labels)
