"""GitHub's REST API for one repository: requests, status mapping, and the Git Data objects.

This is the plumbing under ``commands.githost.github.host``: how to call GitHub (token per request, API
version header, GitHub Enterprise's different base URL), what each HTTP status means for a
person (``check``), and the Git Data API's objects - commits, refs, trees, blobs - read with
per-host caches, because a revert of an older commit walks the same trees and blobs again when
the branch moves and the revert is redone. It knows nothing about reverting: which objects to
write, and when to give up or open a pull request, is decided by ``commands.githost.github.revert`` and
``commands.githost.github.host``.

Every HTTP status is mapped to a ``commands.errors`` error in ``check`` (the shared table of
``commands.http_errors`` plus GitHub's own answers); the token is sent per
request and never appears in a message, a log line or this object's ``repr``.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx

from commands import errors, http_errors
from commands.githost import merge
from commands.githost import port as githost
from commands.githost.port import CommitInfo

TokenSource = str | Callable[[], Awaitable[str]]
_PERMISSION_NAMES = {"contents": "Contents", "pull_requests": "Pull requests"}
GITHUB = http_errors.Service(
    "GitHub",
    who="the Git token",
    credential="the Git token",
    credential_hint="Check CHATOPS_GIT_TOKEN: it may be expired or revoked.",
    address_hint="Check CHATOPS_GIT_API_URL and the network, then retry.",
    permission_hint="Grant it to the fine-grained token or the GitHub App, then retry.",
    unavailable_hint="GitHub may be having trouble; retry in a moment.",
)


class Rejected(errors.Conflict):
    """GitHub answered 409/422: callers decide what it means (race, protection, exists)."""

    def __init__(self, status: int, api_message: str) -> None:
        super().__init__(f"GitHub refused the change: {api_message}")
        self.status = status
        self.api_message = api_message


class GitHubAPI:
    """One repository on one GitHub (or GitHub Enterprise) server, as its REST API."""

    def __init__(
        self, api_url: str, token: TokenSource, repo: str, *, client: httpx.AsyncClient | None
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.repo = repo.strip("/")
        self.token = token
        self._client = client or httpx.AsyncClient(timeout=20.0)
        self._owns_client = client is None
        self._trees: dict[str, dict[str, merge.Entry]] = {}
        self._blobs: dict[str, bytes] = {}
        self._commit_trees: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"GitHubAPI({self.api_url!r}, repo={self.repo!r})"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- reading -------------------------------------------------------------------------

    async def commit_info(self, sha: str) -> CommitInfo:
        data = await self.call("GET", f"/commits/{sha}", not_found=self.no_commit(sha))
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
            url=str(data.get("html_url") or self.web(f"commit/{full}")),
        )

    async def head(self, branch: str) -> str:
        data = await self.call(
            "GET",
            f"/git/ref/heads/{quote(branch, safe='/')}",
            not_found=f"Branch {branch} not found in {self.repo}.",
        )
        return str(data["object"]["sha"])

    async def tree_of(self, commit_sha: str) -> str:
        if commit_sha not in self._commit_trees:
            data = await self.call(
                "GET", f"/git/commits/{commit_sha}", not_found=self.no_commit(commit_sha)
            )
            self._commit_trees[commit_sha] = str(data["tree"]["sha"])
        return self._commit_trees[commit_sha]

    async def tree(self, sha: str | None) -> dict[str, merge.Entry]:
        if sha is None:
            return {}
        if sha not in self._trees:
            data = await self.call("GET", f"/git/trees/{sha}", not_found=f"Tree {sha} not found.")
            self._trees[sha] = {
                str(e["path"]): merge.Entry(str(e["mode"]), str(e["sha"])) for e in data["tree"]
            }
        return self._trees[sha]

    async def blob(self, sha: str) -> bytes:
        if sha not in self._blobs:
            data = await self.call("GET", f"/git/blobs/{sha}", not_found=f"Blob {sha} not found.")
            self._blobs[sha] = base64.b64decode(data.get("content", ""))
        return self._blobs[sha]

    # -- writing -------------------------------------------------------------------------

    async def create_blob(self, data: bytes) -> str:
        blob = await self.call(
            "POST",
            "/git/blobs",
            json={"content": base64.b64encode(data).decode(), "encoding": "base64"},
            need="Contents: write",
        )
        return str(blob["sha"])

    async def create_tree(self, base_tree: str, entries: list[dict[str, Any]]) -> str:
        created = await self.call(
            "POST",
            "/git/trees",
            json={"base_tree": base_tree, "tree": entries},
            need="Contents: write",
        )
        return str(created["sha"])

    async def create_commit(self, message: str, tree: str, parent: str) -> tuple[str, str]:
        """The new commit's sha and web link."""
        commit = await self.call(
            "POST",
            "/git/commits",
            json={"message": message, "tree": tree, "parents": [parent]},
            need="Contents: write",
        )
        sha = str(commit["sha"])
        return sha, str(commit.get("html_url") or self.web(f"commit/{sha}"))

    async def update_ref(self, branch: str, sha: str, *, force: bool) -> None:
        """Move ``branch``; with ``force=False`` GitHub refuses (``Rejected``) unless it is a
        fast forward, which makes this a compare-and-swap against the head read before."""
        await self.call(
            "PATCH",
            f"/git/refs/heads/{quote(branch, safe='/')}",
            json={"sha": sha, "force": force},
            need="Contents: write",
        )

    async def create_ref(self, branch: str, sha: str) -> None:
        await self.call(
            "POST",
            "/git/refs",
            json={"ref": f"refs/heads/{branch}", "sha": sha},
            need="Contents: write",
        )

    # -- HTTP ----------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        json: dict[str, Any] | None = None,
        need: str = "Contents: read",
        not_found: str | None = None,
    ) -> Any:
        """``path`` under ``/repos/<repo>``; ``need`` names the permission a 403 means is
        missing, ``not_found`` what a 404 says (default: the repository)."""
        token = self.token if isinstance(self.token, str) else await self.token()
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
            raise http_errors.unreachable(GITHUB, self.api_url, exc) from exc
        return self.check(response, need=need, not_found=not_found, token=token)

    def check(
        self, response: httpx.Response, *, need: str, not_found: str | None, token: str = ""
    ) -> Any:
        """The JSON of a success; else the error it means (``commands.http_errors``, with what
        only GitHub says: the permission a 403 lacks, 409/422 as ``Rejected``)."""
        if response.status_code < 300:
            return response.json() if response.content else {}

        def specific(answer: http_errors.Answer) -> errors.CommandError | None:
            status = answer.status
            if status == 403:
                permission = _accepted_permission(answer.headers) or need
                if "by integration" in answer.low:  # an App installation token
                    return errors.Denied(
                        f"The GitHub App lacks {permission} on {self.repo}.",
                        hint="Add the permission in the App's settings, then have the "
                        "installation accept the new permissions.",
                    )
                return errors.Denied(
                    f"The Git token lacks {permission} on {self.repo}.",
                    hint="Grant it to the fine-grained token or the GitHub App, then retry.",
                )
            if status == 404 or (status == 422 and "no commit found" in answer.low):
                return errors.NotFound(
                    not_found
                    or f"Repository {self.repo} not found, or the Git token cannot see it."
                )
            if status in (409, 422):
                return Rejected(status, answer.message or str(status))
            return None

        raise http_errors.error_for(
            http_errors.read(response, secrets=(token,)), GITHUB, what=self.repo, specific=specific
        )

    def no_commit(self, sha: str) -> str:
        return f"Commit {githost.short(sha)} not found in {self.repo}."

    def web(self, suffix: str) -> str:
        """A page of the repository on the web UI (the API host for github.com differs)."""
        root = self.api_url
        if root.endswith("/api/v3"):
            root = root[: -len("/api/v3")]
        elif root.startswith("https://api.github.com"):
            root = "https://github.com"
        return f"{root}/{self.repo}/{suffix}"


def _accepted_permission(headers: httpx.Headers) -> str | None:
    """``X-Accepted-GitHub-Permissions: contents=write`` -> "Contents: write"."""
    header = headers.get("x-accepted-github-permissions", "")
    first = header.split(";")[0].strip()
    if not first:
        return None
    names = []
    for pair in first.split(","):
        key, _, level = pair.strip().partition("=")
        names.append(f"{_PERMISSION_NAMES.get(key, key.replace('_', ' ').capitalize())}: {level}")
    return ", ".join(names)
