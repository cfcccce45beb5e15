"""Reading the settings: the one error that lists every configuration problem.

``bot.settings`` is the public home of ``ConfigError``; it lives here, below the models, because
an instance's ``token_env`` is read (and can be missing) long after the settings were loaded.
"""

from __future__ import annotations


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
