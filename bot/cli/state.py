"""Opening the state store for a CLI command: any reason it cannot be opened (a missing or
read-only directory, a directory in its place, a newer schema) is a configuration problem that
names ``CHATOPS_STATE_DB``, never a traceback."""

from __future__ import annotations

from bot.settings import ConfigError, Settings
from bot.state import db
from bot.state import store as state


def open_store(settings: Settings) -> state.Store:
    failures: tuple[type[BaseException], ...] = (OSError, *db.errors())
    try:
        return state.open_store(settings)
    except state.StoreError as e:
        raise ConfigError([f"CHATOPS_STATE_DB: {e}"]) from None
    except failures as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(
            [f"CHATOPS_STATE_DB: cannot open {db.redact(settings.state_db)} ({reason})."]
        ) from None
