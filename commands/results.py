"""What a command returns: data, never chat markup.

A command reports ``Step`` events while it runs (rendered as message edits in chat and as lines
on a terminal) and ends with one ``Result``. Renderers in notifiers/ turn these into Block Kit,
Discord embeds or terminal text; ``Action.command`` is a command string that buttons route back
into the same core (``"sync postgresql"``).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


class Status(enum.StrEnum):
    CHANGED = "changed"
    NOOP = "noop"
    FAILED = "failed"
    DENIED = "denied"


class StepState(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class Fact:
    name: str
    value: str


@dataclass(frozen=True)
class Link:
    title: str
    url: str


@dataclass(frozen=True)
class Action:
    label: str
    command: str  # routed back into the core, e.g. "rollback postgresql"
    style: str = "default"  # default | primary | danger
    confirm: str | None = None  # confirmation text for destructive actions


@dataclass(frozen=True)
class Step:
    """One progress event: ``name`` is stable (``refresh``, ``presync``, ``sync``, ``wait``,
    ``postsync``), ``state`` moves RUNNING -> DONE/SKIPPED/FAILED, ``detail`` is one short line."""

    name: str
    state: StepState
    detail: str = ""


@dataclass(frozen=True)
class Result:
    command: str
    target: str
    status: Status
    summary: str
    facts: tuple[Fact, ...] = ()
    links: tuple[Link, ...] = ()
    actions: tuple[Action, ...] = ()
    steps: tuple[Step, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status in (Status.CHANGED, Status.NOOP)

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "target": self.target,
            "status": self.status.value,
            "ok": self.ok,
            "summary": self.summary,
            "facts": {f.name: f.value for f in self.facts},
            "links": [{"title": lk.title, "url": lk.url} for lk in self.links],
            "actions": [
                {"label": a.label, "command": a.command, "style": a.style, "confirm": a.confirm}
                for a in self.actions
            ],
            "steps": [
                {"name": s.name, "state": s.state.value, "detail": s.detail} for s in self.steps
            ],
        }


Progress = Callable[[Step], Awaitable[None]]


async def no_progress(step: Step) -> None:
    """A Progress sink that drops events (tests, scripts)."""


class StepLog:
    """Records steps and forwards them to a sink; the recorded list goes into the Result."""

    def __init__(self, sink: Progress = no_progress) -> None:
        self._sink = sink
        self.steps: list[Step] = []

    async def __call__(self, name: str, state: StepState, detail: str = "") -> None:
        step = Step(name, state, detail)
        # keep only the latest state per step name, in first-seen order
        for i, s in enumerate(self.steps):
            if s.name == name:
                self.steps[i] = step
                break
        else:
            self.steps.append(step)
        await self._sink(step)
