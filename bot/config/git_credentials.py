"""The Git credentials check: a token, or a complete GitHub App installation, never both or half.

``Settings`` runs it as a validator (a wrong combination stops start-up); the server wiring
runs it again to explain why no GitHub App token could be made.
"""

from __future__ import annotations

import os
from typing import Literal, Protocol

from pydantic import SecretStr


class GitCredentials(Protocol):
    """The settings this check reads (``bot.settings.Settings`` has them all)."""

    @property
    def git_provider(self) -> Literal["github", "gitlab"]: ...
    @property
    def git_repo(self) -> str | None: ...
    @property
    def git_token(self) -> SecretStr | None: ...
    @property
    def git_app_id(self) -> str | None: ...
    @property
    def git_app_installation_id(self) -> str | None: ...
    @property
    def git_app_private_key(self) -> SecretStr | None: ...
    @property
    def git_app_private_key_file(self) -> str | None: ...
    @property
    def uses_git_app(self) -> bool: ...
    @property
    def git_app_key_given(self) -> bool: ...


_APP_KEY = "CHATOPS_GIT_APP_PRIVATE_KEY or CHATOPS_GIT_APP_PRIVATE_KEY_FILE"


def git_credential_problems(s: GitCredentials) -> list[str]:
    """What is wrong with the Git credentials, one sentence each; empty when they are usable."""
    if not s.uses_git_app:
        if s.git_repo and not s.git_token:
            return [
                "CHATOPS_GIT_REPO is set but no credential is: set CHATOPS_GIT_TOKEN, or a "
                f"GitHub App's CHATOPS_GIT_APP_ID, CHATOPS_GIT_APP_INSTALLATION_ID and {_APP_KEY}."
            ]
        return []
    problems = []
    missing = [
        name
        for name, value in (
            ("CHATOPS_GIT_APP_ID", s.git_app_id),
            ("CHATOPS_GIT_APP_INSTALLATION_ID", s.git_app_installation_id),
            (_APP_KEY, s.git_app_key_given or None),
        )
        if not value
    ]
    if missing:
        problems.append(
            f"GitHub App authentication is half configured: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set."
        )
    if s.git_app_private_key and s.git_app_private_key_file:
        problems.append(f"Set only one of {_APP_KEY}, not both.")
    key_file = s.git_app_private_key_file
    if key_file and not os.path.isfile(key_file):
        problems.append(f"CHATOPS_GIT_APP_PRIVATE_KEY_FILE: {key_file} does not exist.")
    if s.git_token:
        problems.append(
            "Both CHATOPS_GIT_TOKEN and GitHub App settings are set: keep one way to authenticate."
        )
    if s.git_provider != "github":
        problems.append(
            "GitHub App authentication works only with CHATOPS_GIT_PROVIDER=github; "
            "GitLab needs CHATOPS_GIT_TOKEN."
        )
    return problems
