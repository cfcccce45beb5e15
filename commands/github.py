"""GitHub (and GitHub Enterprise) as the Git host of /rollback, through the Git Data API.

GitHub has no revert endpoint and the bot keeps no clone, so a revert is built from objects:
read the branch head, compute the reverted tree (the parent's tree for the tip; a 3-way merge
in memory with ``commands.merge`` for an older commit), write the changed blobs, the tree and
the commit, then move the branch with ``force: false`` - a compare-and-swap: if someone pushed
in between, GitHub refuses ("Update is not a fast forward") and the revert is redone on the new
head, a bounded number of times. A protected branch refuses the update too; then the commit
goes to ``rollback/<short-sha>`` with a pull request, and the reply carries its link.

Every HTTP status is mapped to a ``commands.errors`` error in ``_check``; the token is sent per
request and never appears in a message or a log line.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from commands import errors, githost, merge
from commands.githost import CommitInfo, RevertOutcome

log = logging.getLogger(__name__)

TokenSource = str | Callable[[], Awaitable[str]]
_PERMISSION_NAMES = {"contents": "Contents", "pull_requests": "Pull requests"}
_PROTECTION_WORDS = ("protected", "rule violation", "pull request", "status check")


class _Rejected(errors.Conflict):
    """GitHub answered 409/422: callers decide what it means (race, protection, exists)."""

    def __init__(self, status: int, api_message: str) -> None:
        super().__init__(f"GitHub refused the change: {api_message}")
        self.status = status
        self.api_message = api_message


@dataclass
class _Plan:
    """What a revert writes on top of ``head``: either a whole existing tree (``tree``) or
    changes to ``head_tree`` (``changes`` plus merged file contents still to upload)."""

    head: str
    head_tree: str
    tree: str | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[tuple[str, str, bytes]] = field(default_factory=list)  # path, mode, data


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
        self.api_url = api_url.rstrip("/")
        self.repo = repo.strip("/")
        self.branch = branch
        self.max_attempts = max(1, max_attempts)
        self._token = token
        self._client = client or httpx.AsyncClient(timeout=20.0)
        self._owns_client = client is None
        self._trees: dict[str, dict[str, merge.Entry]] = {}
        self._blobs: dict[str, bytes] = {}
        self._commit_trees: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"GitHubHost({self.api_url!r}, repo={self.repo!r}, branch={self.branch!r})"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- the GitHost port ---------------------------------------------------------------

    async def find_commit_for_path(self, path: str, revision: str) -> CommitInfo:
        rev = githost.check_sha(revision)
        await self._require_on_branch(rev)
        params: dict[str, str | int] = {"sha": rev, "per_page": 1}
        clean = githost.normalize_path(path)
        if clean:
            params["path"] = clean
        items = await self._call("GET", "/commits", params=params, not_found=self._no_commit(rev))
        if not items:
            raise errors.NotFound(
                f"No commit on {self.branch} up to {githost.short(rev)} touches {clean or '/'}."
            )
        return await self._commit_info(str(items[0]["sha"]))

    async def commit(self, sha: str) -> CommitInfo:
        info = await self._commit_info(githost.check_sha(sha))
        await self._require_on_branch(info.sha)
        return info

    async def preview(self, sha: str) -> CommitInfo:
        info = await self.commit(sha)
        await self._plan(info)  # reads only; raises Conflict / NothingToRevert early
        return info

    async def revert(self, sha: str, *, requested_by: str) -> RevertOutcome:
        target = await self.commit(sha)
        message = githost.revert_message(target, requested_by)
        for attempt in range(1, self.max_attempts + 1):
            plan = await self._plan(target)
            new_sha, new_url = await self._write_commit(plan, message)
            try:
                await self._call(
                    "PATCH",
                    f"/git/refs/heads/{quote(self.branch, safe='/')}",
                    json={"sha": new_sha, "force": False},
                    need="Contents: write",
                )
            except _Rejected as refused:
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
            info = await self._call("GET", "", not_found="")
        except errors.NotFound:
            return [f"Metadata: read (the token cannot see {self.repo})"]
        missing = []
        granted = getattr(self._token, "permissions", None)
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

    async def _commit_info(self, sha: str) -> CommitInfo:
        data = await self._call("GET", f"/commits/{sha}", not_found=self._no_commit(sha))
        commit = data["commit"]
        author = commit.get("author") or {}
        login = (data.get("author") or {}).get("login")
        full = str(data["sha"])
        self._commit_trees[full] = str(commit["tree"]["sha"])
        return CommitInfo(
            sha=full,
            short_sha=githost.short(full),
            author=str(author.get("name") or login or "unknown"),
            subject=githost.subject_of(commit.get("message", "")),
            message=str(commit.get("message", "")),
            authored_at=githost.parse_time(str(author.get("date") or commit["committer"]["date"])),
            parents=tuple(str(p["sha"]) for p in data.get("parents", [])),
            files=tuple(str(f["filename"]) for f in data.get("files") or []),
            url=str(data.get("html_url") or self._web(f"commit/{full}")),
        )

    async def _require_on_branch(self, sha: str) -> None:
        branch = quote(self.branch, safe="/")
        data = await self._call("GET", f"/compare/{sha}...{branch}", not_found=self._no_commit(sha))
        if data.get("status") not in ("ahead", "identical"):
            raise githost.not_on_branch(githost.short(sha), self.branch, self.repo)

    async def _head(self) -> str:
        data = await self._call(
            "GET",
            f"/git/ref/heads/{quote(self.branch, safe='/')}",
            not_found=f"Branch {self.branch} not found in {self.repo}.",
        )
        return str(data["object"]["sha"])

    async def _tree_of(self, commit_sha: str) -> str:
        if commit_sha not in self._commit_trees:
            data = await self._call(
                "GET", f"/git/commits/{commit_sha}", not_found=self._no_commit(commit_sha)
            )
            self._commit_trees[commit_sha] = str(data["tree"]["sha"])
        return self._commit_trees[commit_sha]

    async def _tree(self, sha: str | None) -> dict[str, merge.Entry]:
        if sha is None:
            return {}
        if sha not in self._trees:
            data = await self._call("GET", f"/git/trees/{sha}", not_found=f"Tree {sha} not found.")
            self._trees[sha] = {
                str(e["path"]): merge.Entry(str(e["mode"]), str(e["sha"])) for e in data["tree"]
            }
        return self._trees[sha]

    async def _blob(self, sha: str) -> bytes:
        if sha not in self._blobs:
            data = await self._call("GET", f"/git/blobs/{sha}", not_found=f"Blob {sha} not found.")
            self._blobs[sha] = base64.b64decode(data.get("content", ""))
        return self._blobs[sha]

    # -- computing the revert ------------------------------------------------------------

    async def _plan(self, target: CommitInfo) -> _Plan:
        """The reverted tree on top of the current head, computed from reads only."""
        if not target.parents:
            raise errors.BadInput(
                f"Commit {target.short_sha} is the first commit of {self.repo}; reverting it "
                "would empty the repository."
            )
        head = await self._head()
        plan = _Plan(head=head, head_tree=await self._tree_of(head))
        parent_tree = await self._tree_of(target.parents[0])  # a merge: its first parent
        if head == target.sha:
            plan.tree = parent_tree
            if parent_tree == plan.head_tree:
                raise githost.nothing_to_revert(target.short_sha, self.branch)
            return plan
        conflicts: list[str] = []
        await self._merge_dir(
            "", await self._tree_of(target.sha), plan.head_tree, parent_tree, plan, conflicts
        )
        if conflicts:
            raise githost.conflict(target.short_sha, conflicts)
        if not plan.changes and not plan.uploads:
            raise githost.nothing_to_revert(target.short_sha, self.branch)
        return plan

    async def _merge_dir(
        self,
        prefix: str,
        base_sha: str | None,
        ours_sha: str | None,
        theirs_sha: str | None,
        plan: _Plan,
        conflicts: list[str],
    ) -> None:
        base = await self._tree(base_sha)
        ours = await self._tree(ours_sha)
        theirs = await self._tree(theirs_sha)
        for name in sorted(set(base) | set(ours) | set(theirs)):
            path = prefix + name
            b, o, t = base.get(name), ours.get(name), theirs.get(name)
            decision = merge.decide(b, o, t)
            if isinstance(decision, merge.Keep):
                continue
            if isinstance(decision, merge.Take) and decision.entry is None and o and o.is_tree:
                await self._delete_dir(path + "/", o.sha, plan)
            elif isinstance(decision, merge.Take):
                plan.changes.append(_tree_change(path, decision.entry, o))
            elif isinstance(decision, merge.Descend):
                await self._merge_dir(path + "/", _sha(b), _sha(o), _sha(t), plan, conflicts)
            elif isinstance(decision, merge.MergeText):
                assert b is not None and o is not None and t is not None
                ours_data = await self._blob(o.sha)
                result = merge.merge_text(
                    await self._blob(b.sha), ours_data, await self._blob(t.sha)
                )
                if not result.clean:
                    conflicts.append(path)
                elif result.data != ours_data or decision.mode != o.mode:
                    plan.uploads.append((path, decision.mode, result.data))
            else:
                conflicts.append(path)

    async def _delete_dir(self, prefix: str, sha: str, plan: _Plan) -> None:
        """Remove a directory file by file: a deleted path must be a blob for GitHub, which
        drops directories once they are empty."""
        for name, entry in (await self._tree(sha)).items():
            if entry.is_tree:
                await self._delete_dir(f"{prefix}{name}/", entry.sha, plan)
            else:
                plan.changes.append(_tree_change(prefix + name, None, entry))

    # -- writing -------------------------------------------------------------------------

    async def _write_commit(self, plan: _Plan, message: str) -> tuple[str, str]:
        """Upload merged files, the tree and the commit; the commit's sha and web link."""
        tree = plan.tree
        if tree is None:
            changes = list(plan.changes)
            for path, mode, data in plan.uploads:
                blob = await self._call(
                    "POST",
                    "/git/blobs",
                    json={"content": base64.b64encode(data).decode(), "encoding": "base64"},
                    need="Contents: write",
                )
                changes.append({"path": path, "mode": mode, "type": "blob", "sha": blob["sha"]})
            created = await self._call(
                "POST",
                "/git/trees",
                json={"base_tree": plan.head_tree, "tree": changes},
                need="Contents: write",
            )
            tree = str(created["sha"])
        commit = await self._call(
            "POST",
            "/git/commits",
            json={"message": message, "tree": tree, "parents": [plan.head]},
            need="Contents: write",
        )
        sha = str(commit["sha"])
        return sha, str(commit.get("html_url") or self._web(f"commit/{sha}"))

    async def _branch_moved(self, refused: _Rejected, read_head: str) -> bool:
        if "fast forward" in refused.api_message.lower():
            return True
        return await self._head() != read_head

    async def _open_pull_request(
        self, new_sha: str, target: CommitInfo, message: str, requested_by: str
    ) -> RevertOutcome:
        branch = githost.rollback_branch(target)
        try:
            await self._call(
                "POST",
                "/git/refs",
                json={"ref": f"refs/heads/{branch}", "sha": new_sha},
                need="Contents: write",
            )
        except _Rejected:  # "Reference already exists": an earlier attempt; it is ours
            await self._call(
                "PATCH",
                f"/git/refs/heads/{quote(branch, safe='/')}",
                json={"sha": new_sha, "force": True},
                need="Contents: write",
            )
        title, body = githost.pull_request_text(target, self.branch, requested_by)
        try:
            pr = await self._call(
                "POST",
                "/pulls",
                json={"title": title, "head": branch, "base": self.branch, "body": body},
                need="Pull requests: write",
            )
        except _Rejected as refused:
            owner = self.repo.split("/", 1)[0]
            found = await self._call(
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

    # -- HTTP ----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        json: dict[str, Any] | None = None,
        need: str = "Contents: read",
        not_found: str | None = None,
    ) -> Any:
        token = self._token if isinstance(self._token, str) else await self._token()
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        url = f"{self.api_url}/repos/{self.repo}{path}"
        try:
            response = await self._client.request(
                method, url, params=params, json=json, headers=headers
            )
        except httpx.HTTPError as exc:
            raise githost.unreachable("GitHub", self.api_url, exc) from exc
        return self._check(response, need=need, not_found=not_found)

    def _check(self, response: httpx.Response, *, need: str, not_found: str | None) -> Any:
        status = response.status_code
        if status < 300:
            return response.json() if response.content else {}
        api_message = _message(response)
        if status == 401:
            raise errors.Unauthorized(
                "GitHub rejected the Git token (401 Bad credentials).",
                hint="Check CHATOPS_GIT_TOKEN: it may be expired or revoked.",
            )
        if status == 403 or status == 429:
            if (
                status == 429
                or response.headers.get("x-ratelimit-remaining") == "0"
                or ("rate limit" in api_message.lower())
            ):
                raise errors.Unavailable(
                    "GitHub's API rate limit is exhausted for the Git token.",
                    hint="Retry in a few minutes.",
                )
            permission = _accepted_permission(response) or need
            raise errors.Denied(
                f"The Git token lacks {permission} on {self.repo}.",
                hint="Grant it to the fine-grained token or the GitHub App, then retry.",
            )
        if status == 404 or (status == 422 and "no commit found" in api_message.lower()):
            raise errors.NotFound(
                not_found or f"Repository {self.repo} not found, or the Git token cannot see it."
            )
        if status in (409, 422):
            raise _Rejected(status, api_message)
        raise errors.Unavailable(f"GitHub answered {status} ({api_message[:120]}).")

    def _no_commit(self, sha: str) -> str:
        return f"Commit {githost.short(sha)} not found in {self.repo}."

    def _web(self, suffix: str) -> str:
        root = self.api_url
        if root.endswith("/api/v3"):
            root = root[: -len("/api/v3")]
        elif root.startswith("https://api.github.com"):
            root = "https://github.com"
        return f"{root}/{self.repo}/{suffix}"


def _tree_change(path: str, entry: merge.Entry | None, ours: merge.Entry | None) -> dict[str, Any]:
    if entry is None:  # remove the file: GitHub wants the mode and type of what goes away
        assert ours is not None and not ours.is_tree
        kind = "commit" if ours.mode == "160000" else "blob"
        return {"path": path, "mode": ours.mode, "type": kind, "sha": None}
    kind = "tree" if entry.is_tree else "commit" if entry.mode == "160000" else "blob"
    return {"path": path, "mode": entry.mode, "type": kind, "sha": entry.sha}


def _sha(entry: merge.Entry | None) -> str | None:
    return entry.sha if entry is not None else None


def _is_protection(api_message: str) -> bool:
    text = api_message.lower()
    return any(word in text for word in _PROTECTION_WORDS)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or str(response.status_code)
    if isinstance(body, dict):
        text = str(body.get("message") or "")
        for item in body.get("errors") or []:
            if isinstance(item, dict) and item.get("message"):
                text += f" {item['message']}"
        return text.strip() or str(response.status_code)
    return str(response.status_code)


def _accepted_permission(response: httpx.Response) -> str | None:
    """``X-Accepted-GitHub-Permissions: contents=write`` -> "Contents: write"."""
    header = response.headers.get("x-accepted-github-permissions", "")
    first = header.split(";")[0].strip()
    if not first:
        return None
    names = []
    for pair in first.split(","):
        key, _, level = pair.strip().partition("=")
        names.append(f"{_PERMISSION_NAMES.get(key, key.replace('_', ' ').capitalize())}: {level}")
    return ", ".join(names)
