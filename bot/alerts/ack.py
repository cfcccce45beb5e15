"""The ``ack`` command, on whichever replica it reaches.

Acknowledging changes the incident engine, which only the leading replica runs (one replica
alone always leads). On the leader ``ack`` applies at once (``apply``). Anywhere else (a follower,
or a leader between terms) ``AnyReplica`` commits the request to the shared store
(``bot.state.acks``), waits up to ``WAIT`` seconds for the leader's drain to apply it, and answers
with the leader's own words ("Acknowledged …", "… was already acknowledged by …", "There is no
open incident …"); when no leader answers in time, it says the ack is queued and will be applied.

Authorization and the audit row happen once, in the dispatcher of the replica the user reached
(``ack_role`` on the incident's app); the leader's drain applies the request without either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bot.state.acks import AckOutcome, AckQueue, Apply
from bot.state.alerts import AlertStore
from commands import errors
from commands.results import Fact, Result, Status
from notifiers.delivery import OutboxItem

WAIT = 5.0  # how long a follower waits for the leader to apply an ack before saying "queued"
POLL = 0.1  # how often it looks
USAGE = "INCIDENT"
ABOUT = "Acknowledge an alert (stops its re-announcements), e.g. ack payments:degraded"

Handler = Callable[[Any, list[str]], Awaitable[Result]]


class CommandRegistry(Protocol):
    """Where the ``ack`` command goes: the chat dispatcher (``bot.chat.dispatch.Dispatcher``),
    passed in by the server wiring; alerts never import the chat package."""

    def register(
        self,
        name: str,
        handler: Callable[[Any, list[str]], Awaitable[Result]],
        *,
        mutating: bool,
        usage: str = "",
        about: str = "",
    ) -> None: ...


def register(commands: CommandRegistry, handler: Handler) -> None:
    """``ack`` on the dispatcher (authorized with ``ack_role`` on the incident's app)."""
    commands.register("ack", handler, mutating=False, usage=USAGE, about=ABOUT)


def incident_ref(args: list[str]) -> str:
    if not args:
        raise errors.BadInput(
            "Say which incident to acknowledge.", hint="e.g. ack payments:degraded"
        )
    return args[0]


def who(inv: Any) -> str:
    return str(getattr(inv, "user_name", "") or getattr(inv, "user_id", "") or "someone")


async def apply(
    alert_store: AlertStore, after: Callable[[list[OutboxItem]], None], ref: str, by: str
) -> AckOutcome:
    """Acknowledge in the leader's engine; what it did, in the words the user gets."""
    inc, fresh, items = await alert_store.acknowledge(ref, by)
    after(items)
    if inc is None:
        return AckOutcome("not_found", ref, f"There is no open incident {ref}.")
    if not fresh:
        return AckOutcome("noop", inc.key, f"{inc.key} was already acknowledged by {inc.acked_by}.")
    return AckOutcome("changed", inc.key, f"Acknowledged {inc.key}; it will not be re-announced.")


def result(answer: AckOutcome) -> Result:
    if answer.outcome == "not_found":
        raise errors.NotFound(answer.summary)
    status = Status.CHANGED if answer.outcome == "changed" else Status.NOOP
    return Result("ack", answer.target, status, answer.summary)


class AnyReplica:
    """The ``ack`` handler of a replica that may or may not lead.

    ``local`` gives this replica's own ``apply`` while it leads (None otherwise); ``leader``
    names the replica holding the Lease, for the "queued" answer."""

    def __init__(
        self,
        queue: AckQueue,
        local: Callable[[], Apply | None],
        leader: Callable[[], str | None],
        *,
        wait: float = WAIT,
        poll: float = POLL,
    ) -> None:
        self.queue = queue
        self.local = local
        self.leader = leader
        self.wait, self.poll = wait, poll

    async def __call__(self, inv: Any, args: list[str]) -> Result:
        ref, by = incident_ref(args), who(inv)
        here = self.local()
        if here is not None:
            return result(await here(ref, by))
        request = await self.queue.submit(ref, by)
        answer = await self.queue.answer(request, self.wait, self.poll)
        if answer is not None:
            return result(answer)
        leader = self.leader()
        whom = f"the leading replica ({leader})" if leader else "a leading replica"
        return Result(
            "ack",
            ref,
            Status.NOOP,
            f"Your acknowledgement of {ref} is queued: {whom} has not applied it yet. It will be "
            "applied as soon as a leading replica picks it up; the incident's thread will say so.",
            facts=(Fact("hint", "No need to acknowledge again."),),
        )
