"""Durable state: the SQLite store (audit, locks, timers), the alert tables (incidents, outbox) and the self-heal timer scheduler. May import bot.settings, notifiers and commands."""
