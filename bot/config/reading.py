"""Reading the settings: the YAML file, the environment's unknown names, and every problem
turned into one sentence a person can act on (``ConfigError``), never a traceback.

``bot.settings.load`` puts these together around the ``Settings`` class. ``bot.settings`` is the
public home of ``ConfigError``; it lives here, below the models, because an instance's
``token_env`` is read (and can be missing) long after the settings were loaded.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


class ConfigError(Exception):
    """Every configuration problem at once, each with how to fix it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = ["Configuration problems:"]
        lines += [f"  - {p}" for p in self.problems]
        lines.append("Set them as CHATOPS_* environment variables or in the YAML file (--config).")
        return "\n".join(lines)


_HINTS = {
    "missing": "is required",
    "extra_forbidden": "is not a known setting (check the spelling)",
}


def read_file(path: str) -> dict[str, Any]:
    """The YAML file's settings, keys as field names (``git-repo`` -> ``git_repo``)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError([f"Config file {path} does not exist."]) from None
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError([f"Config file {path} cannot be read: {_short(e)}"]) from None
    if not isinstance(loaded, dict):
        raise ConfigError([f"Config file {path} must be a mapping of settings."])
    return {str(k).replace("-", "_").lower(): v for k, v in loaded.items()}


def unknown_env(env: Mapping[str, str], data: dict[str, Any], fields: Collection[str]) -> list[str]:
    """A problem for each ``CHATOPS_*`` variable that names no setting (an instance's
    ``token_env`` may be any name, ``CHATOPS_*`` included)."""
    listed = data.get("instances")
    token_envs = {
        str(i.get("token_env"))
        for i in (listed if isinstance(listed, list) else [])
        if isinstance(i, dict)
    }
    unknown = [
        k
        for k in env
        if k.startswith("CHATOPS_")
        and k != "CHATOPS_CONFIG"
        and k not in token_envs
        and k[8:].lower().split("__")[0] not in fields
    ]
    return [f"{k} is not a known setting (check the spelling)." for k in sorted(unknown)]


def validation_problems(e: ValidationError, fields: Collection[str]) -> list[str]:
    """Each pydantic error as one sentence naming the ``CHATOPS_*`` setting it is about."""
    problems: list[str] = []
    for err in e.errors():
        if not err["loc"] and err["type"] == "value_error":  # a check across settings
            problems += str(err.get("ctx", {}).get("error", err["msg"])).splitlines()
            continue
        loc = ".".join(str(p) for p in err["loc"])
        top = str(err["loc"][0]) if err["loc"] else loc
        name = f"CHATOPS_{top.upper()}" if top in fields else loc
        where = f"{name} ({loc})" if loc != top else name
        msg = _HINTS.get(err["type"], err["msg"])
        problems.append(f"{where}: {msg}.")
    return problems


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:200]
