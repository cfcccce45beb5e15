"""The Git-host factory: picks the GitHost implementation named by ``CHATOPS_GIT_PROVIDER``.

It lives above the implementations (which import only ``commands.githost.port``), so the port
never imports what implements it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from commands import errors
from commands.githost.github.host import GitHubHost
from commands.githost.gitlab import GitLabHost
from commands.githost.port import GitHost


def connect(
    provider: str,
    api_url: str,
    token: str | Callable[[], Awaitable[str]],
    repo: str,
    branch: str,
    *,
    client: httpx.AsyncClient | None = None,
) -> GitHost:
    """The host named by ``CHATOPS_GIT_PROVIDER`` ("github" or "gitlab").

    ``token`` is a token, or (GitHub only) an async callable that returns a current one, such
    as ``commands.githost.github.app_auth.GitHubAppAuth``."""
    kind = provider.strip().lower()
    if kind == "github":
        return GitHubHost(api_url, token, repo, branch, client=client)
    if kind == "gitlab":
        if not isinstance(token, str):
            raise errors.BadInput(
                "GitHub App authentication works only with GitHub.",
                hint="Set CHATOPS_GIT_TOKEN for GitLab.",
            )
        return GitLabHost(api_url, token, repo, branch, client=client)
    raise errors.BadInput(
        f"Unknown Git provider '{provider}'.", hint="Set CHATOPS_GIT_PROVIDER to github or gitlab."
    )
