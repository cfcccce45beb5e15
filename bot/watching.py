"""The bot's own eyes: the Argo CD application stream and Kubernetes Warning events.

Why watch when Argo CD Notifications exists: alerts then work without it, and without its
``oncePer`` blind spot (a second Degraded at the same revision sends nothing). Both watches only
turn what they see into ``Signal``s; the incident engine decides what is new, so reconnecting,
re-listing or restarting never re-alerts something already reported.

This module is the one door ``bot.alerting`` (and the tests) go through; the watches live apart
because they share little but the reconnect policy:

- ``bot.app_watch``: ``AppWatch``, the Argo CD application stream (asyncio).
- ``bot.event_watch``: ``EventWatch`` and its ``Correlator``, Kubernetes Warning events (a
  thread: the official Kubernetes client is synchronous).
- ``bot.reconnect``: ``Backoff``, the capped, jittered wait both use after a disconnect.
"""

from __future__ import annotations

from bot.app_watch import AppWatch, Emit
from bot.event_watch import ALERT_REASONS, Correlator, EventWatch, Gone
from bot.reconnect import Backoff

__all__ = ["ALERT_REASONS", "AppWatch", "Backoff", "Correlator", "Emit", "EventWatch", "Gone"]
