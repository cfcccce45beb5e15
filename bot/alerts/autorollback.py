"""The auto-rollback policy at run time: fed by the Application watch, acting through /rollback.

``commands.autorollback`` says what to do; this module gathers what it needs to know and does
it. ``AutoRollback.observe`` sees every Application change the watch sees (cheap: an app that is
not opted in costs one dict lookup), remembers how each opted-in app settled at each revision
(``PolicyLedger`` marks), starts the grace timer of a Degraded app, and hands a trigger to one
task that decides under a lock, so rate limits and the once-per-(app, R) claim stay exact:

    trigger -> already decided? -> gather (pause, self-heal, Git: the commit that brought R,
    the policy's reverts, counts) -> decide -> to act, take the app's operation lock
    (``bot.alerts.policy_lock``; held by a person: skip, ``busy``) -> claim (app, R) durably ->
    audit -> say it in the incident thread -> act: ``commands.rollback.rollback`` (CAS,
    conflicts, protected branch -> pull request) with ``Requested-by: auto-rollback policy``,
    followed to Synced and Healthy -> release the lock.

With several Argo CD instances the policy follows each instance's watch (``observer(svc)``) and
names an app as chat does (``APP@INSTANCE``, ``NAMESPACE/APP``): its marks, claims, pauses,
incident thread and buttons are that app's, and it reads and reverts it with the Services of
its instance.

Every decision is audited (``platform`` "policy") and counted by reason; rollbacks are counted
by trigger and outcome. Messages go into the incident's thread through the same outbox as the
alerts (``IncidentThreads``), so they survive a chat outage like any alert.

Slightly over 400 lines on purpose: observing, deciding and acting share one object's state (the
decision lock, the grace timers, the triggers already fired, the task set that ``close`` and
``idle`` wait on); cutting them apart would pass that state between modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from bot.alerts.policy_lock import PolicyLock
from bot.metrics import Registry, rollbacks
from bot.settings import Settings
from bot.state.alerts import AlertStore
from bot.state.autorollback import HOUR, Claim, PolicyLedger
from bot.state.leader import identity
from bot.state.locks import OperationLocks
from bot.state.store import Store
from commands import errors
from commands import rollback as rollback_cmd
from commands.argocd.app import Application, short
from commands.autorollback import (
    REQUESTED_BY,
    Decision,
    Reason,
    Situation,
    Trigger,
    decide,
    degraded_after_sync,
    failed_sync,
    health_mark,
    mode_for,
)
from commands.context import Caller, Services
from commands.githost import port as githost
from commands.results import Action, Result, Status
from commands.sync import SyncOptions
from notifiers.alert import Alert, AlertKind, Severity
from notifiers.delivery import OutboxItem
from notifiers.incidents.alerts import note
from notifiers.incidents.engine import Engine
from notifiers.incidents.model import Effect, incident_key

log = logging.getLogger(__name__)

INCIDENT_WAIT = 10.0  # how long a reply waits for its incident to be announced
MAX_REMEMBERED = 10_000
POLICY = Caller(REQUESTED_BY, "policy")


class IncidentThreads:
    """Replies in an incident's thread, through the alert outbox."""

    def __init__(
        self,
        alert_store: Callable[[], AlertStore | None],
        deliver: Callable[[list[OutboxItem]], None],
        wait: float = INCIDENT_WAIT,
    ) -> None:
        self.alert_store = alert_store
        self.deliver = deliver
        self.wait = wait

    @staticmethod
    def _snapshot(engine: Engine, key: str) -> tuple[int, Any, Alert] | None:
        inc = engine.incidents.get(key)
        if inc is None or inc.announced_at is None or inc.state == "closed":
            return None
        return inc.id, inc.targets, engine.alert(inc, time.time())

    async def reply(
        self,
        app: str,
        problem: str,
        title: str,
        summary: str,
        *,
        severity: Severity = Severity.INFO,
        actions: tuple[Action, ...] = (),
        broadcast: bool = False,
    ) -> bool:
        """False when there is no announced incident to reply to (within ``wait``)."""
        store = self.alert_store()
        if store is None:
            return False
        key = incident_key(app, problem)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        # the watch's signals reach the incident engine through a queue: wait for the incident
        while (found := await store.writer.submit(lambda _db: self._snapshot(store.engine, key))) is None:  # fmt: skip
            if loop.time() >= deadline:
                log.info("auto-rollback: no announced incident %s to reply to", key)
                return False
            await asyncio.sleep(0.1)
        inc_id, targets, base = found
        kind: AlertKind = "degraded" if problem == "degraded" else "sync_failed"
        alert = replace(
            note(base, time.time(), title, summary), kind=kind, severity=severity, actions=actions
        )
        self.deliver(await store.enqueue([Effect(inc_id, targets, "reply", alert, broadcast)]))
        return True


class AutoRollback:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        services: Services,
        threads: IncidentThreads,
        metrics: Registry,
        *,
        clock: Callable[[], float] = time.time,
        locks: OperationLocks | None = None,
    ) -> None:
        self.config = settings.auto_rollback_policy()
        self.store = store
        self.services = services
        self.threads = threads
        self.ledger = PolicyLedger(store)
        self.clock = clock
        self.lock = PolicyLock(locks or OperationLocks(store, identity(settings.instance_id)))
        self.opts = SyncOptions(
            prune=True,
            timeout=settings.sync_timeout,
            retry_limit=settings.retry_limit,
            presync_timeout=settings.presync_timeout,
            postsync_timeout=settings.postsync_timeout,
        )
        self._marks: dict[str, dict[str, bool]] = {}  # app -> revision -> healthy (recent)
        self._fired: dict[tuple[str, str], None] = {}  # (app, R) handed to a decision
        self._degraded: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._decide = asyncio.Lock()
        self.m_rollbacks = rollbacks(metrics)
        self.m_decisions = metrics.counter(
            "chatops_autorollback_decisions_total",
            "Auto-rollback decisions by reason (acted, proposed, dry_run, or why not)",
            ("reason",),
        )

    # -- from the watch (synchronous, on the event loop) ----------------------------------------
    def observer(self, services: Services) -> Callable[[str, Application], None]:
        """What the Application watch of ``services``' Argo CD instance calls on each change."""
        return lambda kind, app: self.observe(kind, app, services)

    def observe(self, kind: str, app: Application, services: Services | None = None) -> None:
        try:
            self._observe(kind, app, services or self.services)
        except Exception:  # never break the watch's stream
            log.exception("auto-rollback: observing %s failed", app.name)

    def _observe(self, kind: str, app: Application, svc: Services) -> None:
        name = svc.label(svc.qualified(app))  # as the watch's incidents and chat name it
        if kind == "DELETED":
            self._marks.pop(name, None)
            self._stop_grace(name)
            return
        mode, _source = mode_for(app, self.config)
        if mode == "off":
            self._stop_grace(name)
            return
        trigger = failed_sync(app)
        if trigger is not None:
            self._stop_grace(name)
            self._fire(replace(trigger, app=name), app, svc)
            return  # no mark from the failed state itself
        self._grace(app, name, svc)
        mark = health_mark(app)
        if mark is not None and self._marks.get(name, {}).get(mark[0]) is not mark[1]:
            revs = self._marks.setdefault(name, {})
            revs[mark[0]] = mark[1]
            while len(revs) > 5:
                del revs[next(iter(revs))]
            self._spawn(self.store.run(self.ledger.mark, name, mark[0], mark[1], self.clock()))

    def _fire(self, trigger: Trigger, app: Application, svc: Services) -> None:
        key = (trigger.app, trigger.revision)
        if key in self._fired:
            return
        self._fired[key] = None
        while len(self._fired) > MAX_REMEMBERED:
            del self._fired[next(iter(self._fired))]
        hint = self._marks.get(trigger.app, {}).get(trigger.previous)
        self._spawn(self._handle(trigger, app, hint, svc))

    def _grace(self, app: Application, name: str, svc: Services) -> None:
        trigger = degraded_after_sync(app)
        running = self._degraded.get(name)
        if trigger is None or (name, trigger.revision) in self._fired:
            self._stop_grace(name)
            return
        if running is not None and running[0] == trigger.revision:
            return
        self._stop_grace(name)
        task = self._spawn(self._after_grace(svc, name, svc.qualified(app), trigger.revision))
        self._degraded[name] = (trigger.revision, task)

    def _stop_grace(self, name: str) -> None:
        running = self._degraded.pop(name, None)
        if running is not None and running[1] is not asyncio.current_task():
            running[1].cancel()

    async def _after_grace(self, svc: Services, name: str, qualified: str, revision: str) -> None:
        await asyncio.sleep(self.config.degraded_grace)
        self._degraded.pop(name, None)
        app = await svc.argocd.get(qualified)
        trigger = degraded_after_sync(app)
        if trigger is not None and trigger.revision == revision:
            grace = round(self.config.degraded_grace)
            message = f"Degraded for {grace}s: {trigger.message}"
            self._fire(replace(trigger, app=name, message=message), app, svc)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(_logged(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.lock.close()

    async def idle(self) -> None:
        """Until every decision and action started so far has finished (tests)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # -- deciding -------------------------------------------------------------------------------
    async def _handle(
        self, trigger: Trigger, app: Application, hint: bool | None, svc: Services
    ) -> None:
        held: list[str] = []  # the operation lock this decision took: released when it is done
        try:
            await self._decide_and_act(trigger, app, hint, svc, held)
        finally:
            for key in held:
                await self.lock.release(key)

    async def _decide_and_act(
        self,
        trigger: Trigger,
        app: Application,
        hint: bool | None,
        svc: Services,
        held: list[str],
    ) -> None:
        mode, _source = mode_for(app, self.config)
        async with self._decide:
            if await self.store.run(self.ledger.decided, trigger.app, trigger.revision):
                self.m_decisions.inc(reason=Reason.DUPLICATE.value)
                return
            situation = await self._situation(trigger, app, mode, hint, svc)
            decision = decide(trigger, situation, self.config)
            commit = situation.commit
            if decision.action == "act" and commit is not None:  # as the dispatcher names it
                key = trigger.app  # named as chat names it (APP@INSTANCE, NAMESPACE/APP)
                decision = await self.lock.take(key, commit, decision, held)
            claim = Claim(
                trigger.app,
                trigger.revision,
                trigger.kind,
                decision.action,
                decision.reason.value,
                decision.detail,
                commit.sha if commit is not None else "",
                situation.now,
            )
            if not await self.store.run(self.ledger.claim, claim):
                self.m_decisions.inc(reason=Reason.DUPLICATE.value)
                return
            self.m_decisions.inc(reason=decision.reason.value)
            audit_id = await self.store.run(self._audit_start, trigger)
        log.info(
            "auto-rollback %s at %s: %s (%s)",
            trigger.app,
            short(trigger.revision),
            decision.reason.value,
            decision.detail,
        )
        if decision.action == "act" and commit is not None:
            await self._act(trigger, decision, commit, audit_id, svc)
            return
        await self.store.run(self.store.audit_end, audit_id, decision.reason.value, decision.detail)
        await self._tell(trigger, decision, commit)

    async def _situation(
        self, trigger: Trigger, app: Application, mode: Any, hint: bool | None, svc: Services
    ) -> Situation:
        led = self.ledger
        now = self.clock()
        previous_good = hint
        if previous_good is None and trigger.previous:
            previous_good = (await self.store.run(led.marks, trigger.app)).get(trigger.previous)
        commit: githost.CommitInfo | None = None
        commit_error = previous_commit = ""
        git = svc.git
        if git is None:
            commit_error = "Rollback is not configured: no Git host."
        else:
            path = githost.normalize_path(app.source_path)
            try:
                commit = await git.find_commit_for_path(path, trigger.revision)
                if trigger.previous:
                    previous_commit = (await git.find_commit_for_path(path, trigger.previous)).sha
            except errors.CommandError as e:
                commit_error = f"The commit that brought {short(trigger.revision)}: {e}"
        return Situation(
            mode=mode,
            previous_good=previous_good,
            paused_until=await self.store.run(led.paused_until_sync, trigger.app),
            self_heal=app.self_heal,
            commit=commit,
            commit_error=commit_error,
            previous_commit=previous_commit,
            policy_reverts=await self.store.run(led.policy_reverts),
            acted_app=await self.store.run(led.acted_since, now - HOUR, trigger.app),
            acted_all=await self.store.run(led.acted_since, now - HOUR),
            now=now,
        )

    def _audit_start(self, trigger: Trigger) -> int:
        return self.store.audit_start(
            platform="policy",
            user_id="auto-rollback",
            user_name=REQUESTED_BY,
            channel="",
            command="autorollback",
            args=f"{trigger.kind} {short(trigger.previous)}..{short(trigger.revision)}",
            app=trigger.app,
        )

    # -- telling and acting ---------------------------------------------------------------------
    def _why(self, trigger: Trigger) -> str:
        return f"Why: {trigger.why()}."

    async def _tell(
        self, trigger: Trigger, decision: Decision, commit: githost.CommitInfo | None
    ) -> None:
        app = trigger.app
        pause = Action("Pause auto-rollback", f"autorollback off {app}")
        if decision.action == "propose" and commit is not None:
            button = Action(
                f"Roll back {commit.short_sha}",
                f"rollback {app} {commit.sha}",
                style="danger",
                confirm=rollback_cmd.confirm_text(app, commit),
            )
            title = f"{app}: auto-rollback proposes reverting {commit.short_sha}"
            summary = f'{self._why(trigger)} Revert {commit.short_sha} "{commit.subject}" by '
            summary += f"{commit.author}: {commit.url}"
            await self.threads.reply(app, trigger.incident, title, summary, actions=(button, pause))
            return
        title = f"{app}: auto-rollback did not act ({decision.reason.value})"
        await self.threads.reply(
            app, trigger.incident, title, f"{decision.detail} {self._why(trigger)}"
        )

    async def _act(
        self,
        trigger: Trigger,
        decision: Decision,
        commit: githost.CommitInfo,
        audit_id: int,
        svc: Services,
    ) -> None:
        app = trigger.app

        async def reverted(outcome: githost.RevertOutcome) -> None:
            await self.store.run(self.ledger.set_revert, app, trigger.revision, outcome.sha)
            actions = [Action("Pause auto-rollback", f"autorollback off {app}")]
            if outcome.kind == "committed":
                what = f"Reverted {commit.short_sha} with {short(outcome.sha)}: {outcome.url}"
                actions.insert(
                    0,
                    Action(
                        "Undo",
                        f"rollback {app} {outcome.sha}",
                        style="danger",
                        confirm=f"Revert the auto-rollback {short(outcome.sha)} of {app}, "
                        f'bringing back {commit.short_sha} "{commit.subject}"?',
                    ),
                )
                title = f"{app}: auto-rollback reverted {commit.short_sha}"
            else:
                what = f"{outcome.branch} is protected: opened a pull request: {outcome.url}"
                title = f"{app}: auto-rollback proposes a revert of {commit.short_sha}"
            summary = (
                f"{self._why(trigger)} {app} was Synced and Healthy at "
                f'{short(trigger.previous)}. {commit.short_sha} "{commit.subject}" by '
                f"{commit.author} brought {short(trigger.revision)}. {what}. Following it to "
                "Synced and Healthy."
            )
            await self.threads.reply(
                app, trigger.incident, title, summary, actions=tuple(actions), broadcast=True
            )

        try:
            result = await rollback_cmd.rollback(
                svc,  # the app's instance; ``app`` names it too (APP@INSTANCE)
                app,
                commit=commit.sha,
                opts=self.opts,
                caller=POLICY,
                requested_by=REQUESTED_BY,
                on_revert=reverted,
            )
        except Exception:  # a bug must not leave the audit row open
            ref = errors.internal_ref()
            log.exception("auto-rollback of %s failed (ref %s)", app, ref)
            result = Result("rollback", app, Status.FAILED, f"Internal error (ref {ref}).")
        self.m_rollbacks.inc(trigger="auto", outcome=result.status.value)
        await self.store.run(self.ledger.set_outcome, app, trigger.revision, result.status.value)
        await self.store.run(
            self.store.audit_end, audit_id, decision.reason.value, f"{result.status}: "
            f"{result.summary}"
        )  # fmt: skip
        ok = result.status is Status.CHANGED
        await self.threads.reply(
            app,
            trigger.incident,
            f"{app}: auto-rollback {'done' if ok else 'failed'}",
            result.summary,
            severity=Severity.RESOLVED if ok else Severity.CRITICAL,
            actions=result.actions,
        )


async def _logged(coro: Coroutine[Any, Any, Any]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("auto-rollback task failed")
