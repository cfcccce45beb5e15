"""One incident thread's waiting messages, coalesced: what is worth sending next, and nothing more.

A thread (one incident in one channel) has two kinds of message:

- the ROOT: the incident's message, first posted, then edited in place. Only its latest state
  matters, so the queue holds at most one root operation: a newer post or edit replaces the
  waiting one (``add`` returns the superseded row, which the worker marks "merged"), and a
  waiting post absorbs later edits (the post goes out with the newest content).
- REPLIES in the thread (repeats, acknowledgements, reminders, the recovery). Their order is
  kept. When more than ``burst`` of them wait (the channel was rate limited or down), they go
  out as ONE reply: the newest, with "+N more events: 3× …" counting every one it stands for.

The root always goes before the replies: a reply needs the root's message reference, and the
root then already reads as the replies describe. Decisions are taken when the chat call is
about to be made (``take``), not when a message is queued, so everything that arrived while the
channel waited is folded in. Pure logic: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, replace

from notifiers.alert import Alert
from notifiers.delivery.model import OutboxItem

SUMMARY_KINDS = 5  # distinct reply titles named in a summary; the rest are "…"
TITLE_CHARS = 80


@dataclass(frozen=True)
class Batch:
    """What one chat call sends: ``item`` is the row it is recorded against, ``folded`` the
    earlier replies it summarizes (recorded as merged into it), ``alert`` what is rendered."""

    item: OutboxItem
    alert: Alert
    folded: tuple[OutboxItem, ...] = ()

    @property
    def is_root(self) -> bool:
        return self.item.op in ("post", "update")


def _label(alert: Alert) -> str:
    text = "Recovered" if alert.kind == "recovered" else alert.title
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"


def summarize(items: list[OutboxItem]) -> Alert:
    """The newest reply, saying how many earlier ones it stands for and what they were."""
    last = items[-1].alert
    earlier = items[:-1]
    if not earlier:
        return last
    counts = Counter(_label(i.alert) for i in earlier)
    named = [f"{n}× {title}" for title, n in counts.most_common(SUMMARY_KINDS)]
    if len(counts) > SUMMARY_KINDS:
        named.append("…")
    n = len(earlier)
    line = f"+{n} more event{'s' if n != 1 else ''}: " + ", ".join(named)
    return replace(last, summary=f"{last.summary}\n{line}" if last.summary else line)


class ThreadQueue:
    def __init__(self) -> None:
        self.root: OutboxItem | None = None
        self.replies: deque[OutboxItem] = deque()

    def __len__(self) -> int:
        return (self.root is not None) + len(self.replies)

    def add(self, item: OutboxItem) -> OutboxItem | None:
        """Queue ``item``; returns the row it superseded (a waiting root), if any."""
        if item.op == "reply":
            self.replies.append(item)
            return None
        old, self.root = self.root, item
        if old is not None:
            _absorb(item, old)
        return old

    def take(self, burst: int) -> Batch | None:
        """The next call to make: the root if one waits, else the waiting replies (all of them
        as one summary when more than ``burst`` wait)."""
        if self.root is not None:
            root, self.root = self.root, None
            return Batch(root, root.alert)
        if not self.replies:
            return None
        if len(self.replies) <= burst:
            item = self.replies.popleft()
            return Batch(item, item.alert)
        items = list(self.replies)
        self.replies.clear()
        last = items[-1]
        broadcast = any(i.broadcast for i in items)
        last.broadcast = broadcast
        return Batch(last, summarize(items), tuple(items[:-1]))

    def put_back(self, batch: Batch) -> OutboxItem | None:
        """Undo ``take`` after a failed try. A root that was superseded meanwhile is returned
        (the newer one keeps its post and retry state); replies go back in front, in order."""
        if not batch.is_root:
            for item in reversed((*batch.folded, batch.item)):
                self.replies.appendleft(item)
            return None
        if self.root is None:
            self.root = batch.item
            return None
        _absorb(self.root, batch.item)
        return batch.item

    def drain_replies(self) -> list[OutboxItem]:
        items = list(self.replies)
        self.replies.clear()
        return items

    def drain(self) -> list[OutboxItem]:
        items = ([self.root] if self.root is not None else []) + list(self.replies)
        self.root = None
        self.replies.clear()
        return items


def _absorb(newer: OutboxItem, older: OutboxItem) -> None:
    """``newer`` replaces ``older`` as the root operation: a post stays a post (the root was
    never delivered), and the retry state of the older row carries over."""
    if older.op == "post":
        newer.op = "post"
    newer.tries = max(newer.tries, older.tries)
    if older.first_failed_at is not None and (
        newer.first_failed_at is None or older.first_failed_at < newer.first_failed_at
    ):
        newer.first_failed_at = older.first_failed_at
    newer.created_at = min(newer.created_at, older.created_at)
