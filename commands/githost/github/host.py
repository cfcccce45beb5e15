"""GitHub (and GitHub Enterprise) as the Git host of /rollback, through the Git Data API.

GitHub has no revert endpoint and the bot keeps no clone, so a revert is built from objects:
read the branch head, compute the reverted tree (the parent's tree for the tip; a 3-way merge
in memory with ``commands.githost.merge`` for an older commit), write the changed blobs, the tree and
the commit, then move the branch with ``force: false`` - a compare-and-swap: if someone pushed
in between, GitHub refuses ("Update is not a fast forward") and the revert is redone on the new
head, a bounded number of times. A protected branch refuses the update too; then the commit
goes to ``rollback/<short-sha>`` with a pull request, and the reply carries its link.

This module is the ``GitHost`` port and that retry/fallback policy; the layers under it are
``commands.githost.github.revert`` (which objects a revert writes) and ``commands.githost.github.api`` (the REST
calls, their caches, and the mapping of every HTTP status to a ``commands.errors`` error). The
token is sent per request and never appears in a message or a log line.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import httpx

from commands import errors
from commands.githost import port as githost
from commands.githost.github import revert as github_revert
from commands.githost.github.api import GitHubAPI, Rejected, TokenSource
from commands.githost.port import CommitInfo, RevertOutcome

__all__ = ["GitHubHost", "TokenSource"]

log = logging.getLogger(__name__)

_PROTECTION_WORDS = ("protected", "rule violation", "pull request", "status check")


class GitHubHost:
    def __init__(
        self,
        api_url: str,
        token: TokenSource,
        repo: str,
        branch: str,
        *,
        client: httpx.AsyncClient | None = None,
        max_attempts: int = 3,
    ) -> None:
        self.api = GitHubAPI(api_url, token, repo, client=client)
        self.api_url = self.api.api_url
        self.repo = self.api.repo
        self.branch = branch
        self.max_attempts = max(1, max_attempts)

    def __repr__(self) -> str:
        return f"GitHubHost({self.api_url!r}, repo={self.repo!r}, branch={self.branch!r})"

    async def aclose(self) -> None:
        await self.api.aclose()

    # -- the GitHost port ---------------------------------------------------------------

    async def find_commit_for_path(self, path: str, revision: str) -> CommitInfo:
        rev = githost.check_sha(revision)
        await self._require_on_branch(rev)
        params: dict[str, str | int] = {"sha": rev, "per_page": 1}
        clean = githost.normalize_path(path)
        if clean:
            params["path"] = clean
        items = await self.api.call(
            "GET", "/commits", params=params, not_found=self.api.no_commit(rev)
        )
        if not items:
            raise errors.NotFound(
                f"No commit on {self.branch} up to {githost.short(rev)} touches {clean or '/'}."
            )
        return await self.api.commit_info(str(items[0]["sha"]))

    async def commit(self, sha: str) -> CommitInfo:
        info = await self.api.commit_info(githost.check_sha(sha))
        await self._require_on_branch(info.sha)
        return info

    async def preview(self, sha: str) -> CommitInfo:
        info = await self.commit(sha)
        # reads only; raises Conflict / NothingToRevert early
        await github_revert.plan_revert(self.api, info, self.branch)
        return info

    async def revert(self, sha: str, *, requested_by: str) -> RevertOutcome:
        target = await self.commit(sha)
        message = githost.revert_message(target, requested_by)
        for attempt in range(1, self.max_attempts + 1):
            plan = await github_revert.plan_revert(self.api, target, self.branch)
            new_sha, new_url = await github_revert.write(self.api, plan, message)
            try:
                await self.api.update_ref(self.branch, new_sha, force=False)
            except Rejected as refused:
                if await self._branch_moved(refused, plan.head):
                    log.info("branch %s moved during revert (attempt %d)", self.branch, attempt)
                    continue
                if _is_protection(refused.api_message):
                    return await self._open_pull_request(new_sha, target, message, requested_by)
                raise errors.Conflict(
                    f"GitHub refused to update {self.branch}: {refused.api_message}"
                ) from refused
            return RevertOutcome(
                kind="committed",
                sha=new_sha,
                url=new_url,
                branch=self.branch,
                reverted=target,
                message=message,
            )
        raise errors.Conflict(
            f"{self.branch} kept moving while reverting {target.short_sha}; gave up after "
            f"{self.max_attempts} attempts.",
            hint="Nothing was written to the branch. Try /rollback again in a moment.",
        )

    async def check_access(self) -> list[str]:
        try:
            info = await self.api.call("GET", "", not_found="")
        except errors.NotFound:
            return [f"Metadata: read (the token cannot see {self.repo})"]
        missing = []
        granted = getattr(self.api.token, "permissions", None)
        if isinstance(granted, dict) and granted:
            # a GitHub App installation token: GitHub omits "push" for it, but says what the
            # installation was granted when the token was issued
            if granted.get("contents") != "write":
                missing.append("Contents: write")
            if granted.get("pull_requests") != "write":
                missing.append("Pull requests: write")
        elif not (info.get("permissions") or {}).get("push", False):
            missing.append("Contents: write")
        return missing

    # -- reading -------------------------------------------------------------------------

    async def _require_on_branch(self, sha: str) -> None:
        branch = quote(self.branch, safe="/")
        data = await self.api.call(
            "GET", f"/compare/{sha}...{branch}", not_found=self.api.no_commit(sha)
        )
        if data.get("status") not in ("ahead", "identical"):
            raise githost.not_on_branch(githost.short(sha), self.branch, self.repo)

    # -- when GitHub refuses to move the branch ------------------------------------------

    async def _branch_moved(self, refused: Rejected, read_head: str) -> bool:
        if "fast forward" in refused.api_message.lower():
            return True
        return await self.api.head(self.branch) != read_head

    async def _open_pull_request(
        self, new_sha: str, target: CommitInfo, message: str, requested_by: str
    ) -> RevertOutcome:
        branch = githost.rollback_branch(target)
        try:
            await self.api.create_ref(branch, new_sha)
        except Rejected:  # "Reference already exists": an earlier attempt; it is ours
            await self.api.update_ref(branch, new_sha, force=True)
        title, body = githost.pull_request_text(target, self.branch, requested_by)
        try:
            pr = await self.api.call(
                "POST",
                "/pulls",
                json={"title": title, "head": branch, "base": self.branch, "body": body},
                need="Pull requests: write",
            )
        except Rejected as refused:
            owner = self.repo.split("/", 1)[0]
            found = await self.api.call(
                "GET",
                "/pulls",
                params={"head": f"{owner}:{branch}", "base": self.branch, "state": "open"},
            )
            if not found:
                raise errors.Conflict(
                    f"GitHub would not open a pull request for {branch}: {refused.api_message}"
                ) from refused
            pr = found[0]
        return RevertOutcome(
            kind="pull_request",
            sha=new_sha,
            url=str(pr["html_url"]),
            branch=branch,
            reverted=target,
            message=message,
        )


def _is_protection(api_message: str) -> bool:
    text = api_message.lower()
    return any(word in text for word in _PROTECTION_WORDS)
