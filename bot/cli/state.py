"""Opening the state store for a CLI command: any reason it cannot be opened (a missing or
read-only directory, a directory in its place, a newer schema) is a configuration problem that
names ``CHATOPS_STATE_DB``, never a traceback."""

from __future__ import annotations

import sqlite3

from bot.settings import ConfigError, Settings
from bot.state.store import Store, StoreError


def open_store(settings: Settings) -> Store:
    try:
        return Store(settings.state_db)
    except StoreError as e:
        raise ConfigError([f"CHATOPS_STATE_DB: {e}"]) from None
    except (OSError, sqlite3.Error) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(
            [f"CHATOPS_STATE_DB: cannot open {settings.state_db} ({reason})."]
        ) from None
