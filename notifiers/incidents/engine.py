"""Correlation: many reports about one problem become one incident, one thread, few messages.

Three sources report the same trouble in different words: Argo CD notification webhooks, the
bot's own watch of Applications and Kubernetes Warning events. They are all turned into a
``Signal`` first; the ``Engine`` keys incidents by ``"<app>:<problem>"`` (problem: sync_failed,
degraded, warning_events), so a webhook and a watch reporting the same failed operation are one
incident, and Argo CD's retries or a re-listed watch change nothing visible.

Lifecycle (``Incident.state``)::

    pending ──grace──▶ open ──healthy/synced──▶ recovering ──hold──▶ resolved ──window──▶ closed
       └─healthy─▶ (dropped, nobody paged)        ◀──problem again (a flap)──┘   │
                        ▲──────────────── problem again within the flap window ──┘

- Degraded and warning-only incidents wait ``degraded_grace`` before the first message, so a
  Degraded blip during a rollout pages nobody. A failed sync opens at once.
- Recovery edits the thread root and adds one closing reply. A problem coming back within
  ``flap_window`` reopens the SAME incident (one "again" reply the first time); from then on the
  incident is flapping: state changes only edit the root, and recovery is announced only after
  ``flapping_hold`` of continuous health. A flapping app never costs a message per flap.
- Warning events attach to the app's open sync-failed/Degraded incident if there is one, else to
  a warning incident of their own; they are folded by (reason, object) with counts, at most
  ``max_event_groups`` groups, the rest counted under "other": every event is counted.

The engine is pure and single-threaded: the caller passes ``now`` and persists what it returns
(``Changes``: incidents to save, messages to deliver). It never does I/O, so tests drive it
deterministically and the bot runs it inside its group-commit writer.

This module holds the lifecycle; the values live in ``notifiers.incidents.model``, the wording of
each message in ``notifiers.incidents.alerts`` and the Warning-event rules in
``notifiers.incidents.warning_events``: import those names from there.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import cast

from notifiers.alert import Alert
from notifiers.incidents import alerts as incident_alerts
from notifiers.incidents import warning_events
from notifiers.incidents.alerts import Actions, default_actions
from notifiers.incidents.model import (
    Changes,
    Effect,
    Incident,
    Policy,
    Problem,
    Signal,
    absorb,
    incident_key,
)
from notifiers.routing import Target

# (app, project, namespace[, instance]): the instance is passed when the signal has one
Route = Callable[..., tuple[Target, ...]]


class Engine:
    def __init__(
        self,
        policy: Policy,
        route: Route,
        *,
        actions: Actions = default_actions,
        ui_url: str = "",
    ) -> None:
        self.policy = policy
        self.route = route
        self.actions = actions
        self.ui_url = ui_url.rstrip("/")
        self.incidents: dict[str, Incident] = {}  # key -> the incident that owns the key now
        self._ids = itertools.count(1)
        self._heap: list[tuple[float, int, str]] = []
        self._last_ok: dict[str, str] = {}  # app -> startedAt of its latest successful sync

    # -- state ----------------------------------------------------------------------------
    def load(self, incidents: Iterable[Incident], next_id: int) -> None:
        self.incidents = {}
        self._heap = []
        for inc in incidents:
            if inc.state != "closed":
                self.incidents[inc.key] = inc
                self._schedule(inc)
        self._ids = itertools.count(max(next_id, 1))

    def find(self, ref: str) -> Incident | None:
        """By key (``payments:degraded``) or id (``#12``/``12``)."""
        ref = ref.strip()
        if ref in self.incidents:
            return self.incidents[ref]
        if ref.lstrip("#").isdigit():
            wanted = int(ref.lstrip("#"))
            return next((i for i in self.incidents.values() if i.id == wanted), None)
        return None

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def _schedule(self, inc: Incident) -> None:
        due = inc.deadline(self.policy)
        if due is not None:
            heapq.heappush(self._heap, (due, inc.id, inc.key))

    def _save(self, ch: Changes, inc: Incident) -> None:
        ch.saved[inc.id] = inc
        ch.dropped.discard(inc.id)
        self._schedule(inc)

    # -- rendering ------------------------------------------------------------------------
    def alert(self, inc: Incident, now: float) -> Alert:
        return incident_alerts.incident_alert(inc, ui_url=self.ui_url, actions=self.actions)

    def _note(self, inc: Incident, now: float, title: str, summary: str = "") -> Alert:
        """A thread reply about ``inc`` (repeat, acknowledgement, recovery, re-announcement)."""
        return incident_alerts.note(self.alert(inc, now), now, title, summary)

    def _post(self, ch: Changes, inc: Incident, now: float) -> None:
        inc.state = "open"
        inc.pending_until = None
        inc.announced_at = inc.last_announce = now
        ch.emit(Effect(inc.id, inc.targets, "post", self.alert(inc, now)))

    def _update(self, ch: Changes, inc: Incident, now: float) -> None:
        if inc.announced_at is not None:
            ch.emit(Effect(inc.id, inc.targets, "update", self.alert(inc, now)))

    def _reply(self, ch: Changes, inc: Incident, alert: Alert, broadcast: bool = False) -> None:
        if inc.announced_at is not None:
            ch.emit(Effect(inc.id, inc.targets, "reply", alert, broadcast))

    # -- input ----------------------------------------------------------------------------
    def apply(self, sig: Signal, now: float) -> Changes:
        ch = Changes()
        handler = {
            "sync_failed": self._on_problem,
            "degraded": self._on_problem,
            "healthy": self._on_healthy,
            "sync_ok": self._on_sync_ok,
            "warning": self._on_warning,
            "deleted": self._on_deleted,
            "info": self._on_info,
        }[sig.kind]
        handler(ch, sig, now)
        return ch

    def apply_all(self, signals: Iterable[Signal], now: float) -> Changes:
        ch = Changes()
        for sig in signals:
            ch.merge(self.apply(sig, now))
        return ch

    def _new(self, sig: Signal, problem: Problem, now: float) -> Incident:
        inc = Incident(
            id=next(self._ids),
            key=incident_key(sig.app, problem),
            app=sig.app,
            problem=problem,
            state="pending",
            opened_at=now,
            targets=self._route(sig),
        )
        absorb(inc, sig)
        self.incidents[inc.key] = inc
        return inc

    def _route(self, sig: Signal) -> tuple[Target, ...]:
        project = sig.project or "default"
        if sig.instance:  # routes may match the Argo CD instance
            return self.route(sig.app, project, sig.namespace, sig.instance)
        return self.route(sig.app, project, sig.namespace)

    def _on_problem(self, ch: Changes, sig: Signal, now: float) -> None:
        problem = cast(Problem, sig.kind)
        if problem == "sync_failed" and sig.operation:
            last_ok = self._last_ok.get(sig.app, "")
            if last_ok and sig.operation <= last_ok:
                return  # a late report (e.g. a webhook retry) of a failure already superseded
        inc = self.incidents.get(incident_key(sig.app, problem))
        if inc is None or inc.state == "closed":
            inc = self._new(sig, problem, now)
            inc.operation = sig.operation
            if problem == "degraded" and self.policy.degraded_grace > 0:
                inc.pending_until = now + self.policy.degraded_grace
            else:
                self._post(ch, inc, now)
            self._save(ch, inc)
            return
        changed = absorb(inc, sig)
        if inc.state == "pending":
            self._save(ch, inc)
            return
        new_op = problem == "sync_failed" and sig.operation and sig.operation != inc.operation
        if new_op:
            inc.operation = sig.operation
        if inc.state in ("recovering", "resolved"):
            first_flap = inc.flaps == 0
            inc.flaps += 1
            inc.state = "open"
            inc.recovering_since = inc.resolved_at = None
            inc.resolution = ""
            self._update(ch, inc, now)
            if first_flap:
                word = incident_alerts.PROBLEM_WORDS[problem]
                self._reply(ch, inc, self._note(inc, now, f"{inc.app}: {word} again", inc.message))
        elif new_op:
            inc.repeats += 1
            self._update(ch, inc, now)
            title = f"{inc.app}: sync failed again"
            self._reply(ch, inc, self._note(inc, now, title, inc.message))
        elif changed:
            self._update(ch, inc, now)
        else:
            return
        self._save(ch, inc)

    def _recover(self, ch: Changes, inc: Incident, now: float, resolution: str) -> None:
        """Problem gone: drop it if nobody was told yet, else start (or finish) recovering."""
        if inc.state == "pending":
            del self.incidents[inc.key]
            ch.saved.pop(inc.id, None)
            ch.dropped.add(inc.id)
            return
        if inc.state != "open":
            return
        inc.state = "recovering"
        inc.recovering_since = now
        inc.resolution = resolution
        if inc.flaps:
            self._update(ch, inc, now)
            self._save(ch, inc)
        else:
            self._resolve(ch, inc, now)

    def _resolve(self, ch: Changes, inc: Incident, now: float) -> None:
        inc.state = "resolved"
        inc.resolved_at = now
        self._update(ch, inc, now)
        self._reply(ch, inc, incident_alerts.closing(self.alert(inc, now)))
        self._save(ch, inc)

    def _on_healthy(self, ch: Changes, sig: Signal, now: float) -> None:
        inc = self.incidents.get(incident_key(sig.app, "degraded"))
        if inc is not None:
            self._recover(ch, inc, now, sig.message or "Health is back to Healthy.")

    def _on_sync_ok(self, ch: Changes, sig: Signal, now: float) -> None:
        if sig.operation and sig.operation > self._last_ok.get(sig.app, ""):
            self._last_ok[sig.app] = sig.operation
        inc = self.incidents.get(incident_key(sig.app, "sync_failed"))
        if inc is None or (sig.operation and inc.operation and sig.operation < inc.operation):
            return
        rev = f" at {sig.revision[:7]}" if sig.revision else ""
        self._recover(ch, inc, now, sig.message or f"A later sync succeeded{rev}.")

    def _on_deleted(self, ch: Changes, sig: Signal, now: float) -> None:
        for problem in ("sync_failed", "degraded", "warning_events"):
            inc = self.incidents.get(incident_key(sig.app, problem))
            if inc is None or not inc.active:
                continue
            if inc.state == "pending":
                self._recover(ch, inc, now, "")
            else:
                inc.resolution = "The Application was deleted."
                self._resolve(ch, inc, now)
        self._last_ok.pop(sig.app, None)

    def _on_info(self, ch: Changes, sig: Signal, now: float) -> None:
        """Details found later (resource tree, commit author): update whatever is open."""
        for problem in ("sync_failed", "degraded"):
            inc = self.incidents.get(incident_key(sig.app, problem))
            # resources found later (the resource tree) describe health, not the sync result
            found = sig if problem == "degraded" else replace(sig, resources=())
            if inc is not None and inc.active and absorb(inc, found):
                self._update(ch, inc, now)
                self._save(ch, inc)

    def _on_warning(self, ch: Changes, sig: Signal, now: float) -> None:
        if sig.event is None or sig.event.count <= 0:
            return
        target = warning_events.owner(self.incidents, sig.app)
        if target is None:
            target = self.incidents.get(incident_key(sig.app, "warning_events"))
            if target is None or target.state == "closed":
                target = self._new(sig, "warning_events", now)
                target.pending_until = now + self.policy.degraded_grace
                target.message = "Kubernetes reports Warning events for this app's resources."
            elif target.state == "resolved":
                target.flaps += 1
                target.state = "open"
                target.resolved_at = None
                target.resolution = ""
        warning_events.fold(target, sig.event, self.policy.max_event_groups)
        target.last_event_at = now
        if target.state == "pending" and target.pending_until is not None:
            if target.pending_until <= now:
                self._post(ch, target, now)
        else:
            self._update(ch, target, now)
        self._save(ch, target)

    # -- time -----------------------------------------------------------------------------
    def tick(self, now: float) -> Changes:
        ch = Changes()
        while self._heap and self._heap[0][0] <= now:
            _, inc_id, key = heapq.heappop(self._heap)
            inc = self.incidents.get(key)
            if inc is None or inc.id != inc_id:
                continue
            due = inc.deadline(self.policy)
            if due is None or due > now:
                continue  # moved since it was scheduled; its new deadline is in the heap
            if inc.state == "pending":
                self._post(ch, inc, now)
                self._save(ch, inc)
            elif inc.state == "recovering":
                self._resolve(ch, inc, now)
            elif inc.state == "open":  # a warning incident gone quiet
                minutes = round(self.policy.warning_quiet / 60)
                inc.resolution = f"No new Warning events for {minutes} min."
                self._resolve(ch, inc, now)
            elif inc.state == "resolved":
                inc.state = "closed"
                del self.incidents[key]
                ch.saved[inc.id] = inc
        return ch

    def reannounce(self, now: float) -> Changes:
        """Unacknowledged open incidents get a reminder in their thread, shown in the channel."""
        ch = Changes()
        every = self.policy.reannounce_interval
        for inc in list(self.incidents.values()):
            if inc.state != "open" or inc.acked_by or inc.announced_at is None:
                continue
            if now - (inc.last_announce or inc.announced_at) < every:
                continue
            inc.last_announce = now
            minutes = round((now - inc.opened_at) / 60)
            title = self.alert(inc, now).title
            note = self._note(
                inc, now, f"Still unacknowledged: {title}", f"Open for {minutes} min."
            )
            self._reply(ch, inc, note, broadcast=True)
            self._save(ch, inc)
        return ch

    def acknowledge(self, ref: str, by: str, now: float) -> tuple[Incident | None, bool, Changes]:
        """(incident, newly acknowledged?, changes)."""
        ch = Changes()
        inc = self.find(ref)
        if inc is None or inc.acked_by:
            return inc, False, ch
        inc.acked_by = by
        inc.acked_at = now
        self._update(ch, inc, now)
        self._reply(ch, inc, self._note(inc, now, f"Acknowledged by {by}"))
        self._save(ch, inc)
        return inc, True, ch
