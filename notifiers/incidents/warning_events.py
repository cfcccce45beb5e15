"""Kubernetes Warning events: which incident they belong to, and how they are counted.

A crash-looping pod can emit thousands of Warning events in minutes. Posting them one by one
would bury the channel, and attaching them to an incident of their own while the app already
has an open sync-failed or Degraded incident would split one problem across two threads. So:

- Correlation: a Warning event attaches to the app's active Degraded incident, else its active
  sync-failed incident; only when neither exists does it get (or reopen) a warning incident of
  its own. The engine (``notifiers.incidents.engine``) owns creating and reopening that incident.
- Grouping: events are folded by (reason, object) with counts. At most ``max_event_groups``
  groups are kept; events for further objects are counted under ``OTHER_EVENTS``, so every
  event is counted and an incident's size stays bounded however long the storm lasts.

The groups live in ``Incident.events`` as ``{(reason, object): [message, count]}``; apart from
``Incident.to_json``/``from_json``, which persist that shape, only these functions touch it.
"""

from __future__ import annotations

from collections.abc import Mapping

from notifiers.alert import EventCount
from notifiers.incidents.model import Incident, Problem, incident_key

OTHER_EVENTS = ("(other)", "more objects")  # where events beyond max_event_groups are counted
ATTACH_ORDER: tuple[Problem, ...] = ("degraded", "sync_failed")  # preferred owners, in order


def owner(incidents: Mapping[str, Incident], app: str) -> Incident | None:
    """The app's active problem incident a Warning event should join, if there is one."""
    for problem in ATTACH_ORDER:
        inc = incidents.get(incident_key(app, problem))
        if inc is not None and inc.active:
            return inc
    return None


def fold(inc: Incident, ev: EventCount, max_groups: int) -> None:
    """Count ``ev`` into its (reason, object) group, or under ``OTHER_EVENTS`` when full."""
    key = (ev.reason, ev.object)
    group = inc.events.get(key)
    if group is None and len(inc.events) >= max_groups:
        key = OTHER_EVENTS
        group = inc.events.get(key)
        if group is None:
            group = inc.events[key] = ["", 0]
    elif group is None:
        group = inc.events[key] = [ev.message, 0]
    if ev.message and key != OTHER_EVENTS:
        group[0] = ev.message
    group[1] = int(group[1]) + ev.count
    inc.events_total += ev.count


def groups(inc: Incident) -> tuple[EventCount, ...]:
    """The folded groups, largest first (ties by reason, then object)."""
    ordered = sorted(inc.events.items(), key=lambda kv: (-int(kv[1][1]), kv[0]))
    return tuple(EventCount(r, o, str(m), int(n)) for (r, o), (m, n) in ordered)
