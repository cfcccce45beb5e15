"""GitLab as the Git host of /rollback, through its revert endpoint.

GitLab reverts server-side (``POST /projects/:id/repository/commits/:sha/revert``), atomically
on the branch's current head, and against the first parent for a merge commit; its
``dry_run`` answers, without writing, whether the revert would conflict or be empty - that is
the confirmation preview. GitLab writes the commit message itself (``Revert "<title>"`` and
``This reverts commit <sha>``; the endpoint takes no message), so who asked appears in the chat
audit and, on the merge-request path, in its description.

When the token may not push to the branch (a protected branch), the revert goes to
``rollback/<short-sha>`` and a merge request is opened. GitLab's 400 bodies carry an
``error_code`` ("conflict", "empty") but no paths; the paths of a conflict are estimated as the
commit's files that changed on the branch since.

Every HTTP status is mapped to a ``commands.errors`` error in ``_check`` (the shared table of
``commands.http_errors`` plus GitLab's own answers); the token is sent per
request and never appears in a message or a log line.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from commands import errors, http_errors
from commands.githost import port as githost
from commands.githost.port import CommitInfo, RevertOutcome

_DEVELOPER = 30
GITLAB = http_errors.Service(
    "GitLab",
    who="the Git token",
    credential="the Git token",
    credential_hint="Check CHATOPS_GIT_TOKEN: it may be expired or revoked.",
    address_hint="Check CHATOPS_GIT_API_URL and the network, then retry.",
    permission_hint="Give the bot's user that role in the project, then retry.",
    unavailable_hint="GitLab may be having trouble; retry in a moment.",
)


class _Rejected(errors.Conflict):
    """GitLab answered 400/409: callers decide (conflict, empty, already exists)."""

    def __init__(self, status: int, api_message: str, error_code: str | None) -> None:
        super().__init__(f"GitLab refused the change: {api_message}")
        self.status = status
        self.api_message = api_message
        self.error_code = error_code


class _PushRefused(errors.Denied):
    """403 "You are not allowed to push into this branch": protected, or no write at all."""


class GitLabHost:
    def __init__(
        self,
        api_url: str,
        token: str,
        project: str,
        branch: str,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.project = project.strip("/")
        self.branch = branch
        self._token = token
        self._client = client or httpx.AsyncClient(timeout=20.0)
        self._owns_client = client is None
        self._base = f"{self.api_url}/api/v4/projects/{quote(self.project, safe='')}"

    def __repr__(self) -> str:
        return f"GitLabHost({self.api_url!r}, project={self.project!r}, branch={self.branch!r})"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- the GitHost port ---------------------------------------------------------------

    async def find_commit_for_path(self, path: str, revision: str) -> CommitInfo:
        synced = await self.commit(revision)
        params: dict[str, str | int] = {"ref_name": synced.sha, "per_page": 1}
        clean = githost.normalize_path(path)
        if clean:
            params["path"] = clean
        items = await self._call("GET", "/repository/commits", params=params)
        if not items:
            raise errors.NotFound(
                f"No commit on {self.branch} up to {synced.short_sha} touches {clean or '/'}."
            )
        if items[0]["id"] == synced.sha:
            return synced
        return await self._commit_info(str(items[0]["id"]))

    async def commit(self, sha: str) -> CommitInfo:
        info = await self._commit_info(githost.check_sha(sha))
        base = await self._call(
            "GET",
            "/repository/merge_base",
            params=[("refs[]", info.sha), ("refs[]", self.branch)],
            not_found=f"Branch {self.branch} not found in {self.project}.",
        )
        if base.get("id") != info.sha:
            raise githost.not_on_branch(info.short_sha, self.branch, self.project)
        return info

    async def preview(self, sha: str) -> CommitInfo:
        info = await self.commit(sha)
        try:
            await self._revert(info, self.branch, dry_run=True)
        except _PushRefused:
            pass  # the revert will go through a merge request; the dry run cannot tell more
        return info

    async def revert(self, sha: str, *, requested_by: str) -> RevertOutcome:
        info = await self.commit(sha)
        try:
            data = await self._revert(info, self.branch)
        except _PushRefused:
            return await self._merge_request(info, requested_by)
        return self._outcome("committed", data, self.branch, info)

    async def check_access(self) -> list[str]:
        missing: list[str] = []
        try:
            project = await self._call("GET", "")
        except errors.NotFound:
            return [f"Reporter role (the token cannot see {self.project})"]
        except errors.Denied:  # insufficient_scope: not even read_api
            return ["api scope"]
        permissions = project.get("permissions") or {}
        levels = [
            (permissions.get(kind) or {}).get("access_level", 0)
            for kind in ("project_access", "group_access")
        ]
        if max(levels, default=0) < _DEVELOPER:
            missing.append("Developer role")
        try:
            token = await self._call("GET", "", absolute="/personal_access_tokens/self")
        except errors.CommandError:
            return missing  # not a personal/project/group access token: scopes unknown
        if "api" not in (token.get("scopes") or []):
            missing.append("api scope")
        return missing

    # -- internals -----------------------------------------------------------------------

    async def _commit_info(self, sha: str) -> CommitInfo:
        not_found = f"Commit {githost.short(sha)} not found in {self.project}."
        data = await self._call("GET", f"/repository/commits/{sha}", not_found=not_found)
        full = str(data["id"])
        diffs = await self._call(
            "GET", f"/repository/commits/{full}/diff", params={"per_page": 100}
        )
        files = sorted({str(d.get("new_path") or d.get("old_path")) for d in diffs})
        return CommitInfo(
            sha=full,
            short_sha=githost.short(full),
            author=str(data.get("author_name") or "unknown"),
            subject=str(data.get("title") or githost.subject_of(data.get("message", ""))),
            message=str(data.get("message", "")),
            authored_at=githost.parse_time(str(data.get("authored_date") or data["created_at"])),
            parents=tuple(str(p) for p in data.get("parent_ids") or []),
            files=tuple(files),
            url=str(data.get("web_url") or self._web(f"-/commit/{full}")),
        )

    async def _revert(self, info: CommitInfo, branch: str, *, dry_run: bool = False) -> Any:
        body: dict[str, Any] = {"branch": branch}
        if dry_run:
            body["dry_run"] = True
        try:
            return await self._call(
                "POST",
                f"/repository/commits/{info.sha}/revert",
                json=body,
                not_found=f"Commit {info.short_sha} or branch {branch} not found.",
            )
        except _Rejected as refused:
            if refused.error_code == "empty":
                raise githost.nothing_to_revert(info.short_sha, branch) from refused
            raise githost.conflict(info.short_sha, await self._conflict_paths(info)) from refused

    async def _conflict_paths(self, info: CommitInfo) -> list[str]:
        """The commit's files that changed on the branch since: where the revert must clash."""
        try:
            compare = await self._call(
                "GET", "/repository/compare", params={"from": info.sha, "to": self.branch}
            )
        except errors.CommandError:
            return list(info.files)
        changed = {str(d.get("new_path")) for d in compare.get("diffs") or []} | {
            str(d.get("old_path")) for d in compare.get("diffs") or []
        }
        return [f for f in info.files if f in changed] or list(info.files)

    async def _merge_request(self, info: CommitInfo, requested_by: str) -> RevertOutcome:
        branch = githost.rollback_branch(info)
        try:
            await self._call(
                "POST",
                "/repository/branches",
                json={"branch": branch, "ref": self.branch},
                need="the Developer role",
            )
        except _Rejected:
            pass  # "Branch already exists": an earlier attempt
        try:
            data = await self._revert(info, branch)
        except _PushRefused as refused:
            raise errors.Denied(
                f"The Git token may push neither to {self.branch} nor to {branch} on "
                f"{self.project}.",
                hint="Allow the bot's user to push rollback/* branches, or to the branch.",
            ) from refused
        except githost.NothingToRevert:  # the earlier attempt already reverted it there
            found = await self._call("GET", f"/repository/branches/{quote(branch, safe='')}")
            data = found["commit"]
        title, description = githost.pull_request_text(info, self.branch, requested_by)
        request = {
            "source_branch": branch,
            "target_branch": self.branch,
            "title": title,
            "description": description,
            "remove_source_branch": True,
        }
        try:
            mr = await self._call(
                "POST", "/merge_requests", json=request, need="the Developer role"
            )
        except _Rejected as refused:
            existing = await self._call(
                "GET",
                "/merge_requests",
                params={"source_branch": branch, "target_branch": self.branch, "state": "opened"},
            )
            if not existing:
                raise errors.Conflict(
                    f"GitLab would not open a merge request for {branch}: {refused.api_message}"
                ) from refused
            mr = existing[0]
        outcome = self._outcome("pull_request", data, branch, info)
        return RevertOutcome(
            kind=outcome.kind,
            sha=outcome.sha,
            url=str(mr["web_url"]),
            branch=branch,
            reverted=info,
            message=outcome.message,
        )

    def _outcome(
        self, kind: Any, data: dict[str, Any], branch: str, info: CommitInfo
    ) -> RevertOutcome:
        sha = str(data["id"])
        return RevertOutcome(
            kind=kind,
            sha=sha,
            url=str(data.get("web_url") or self._web(f"-/commit/{sha}")),
            branch=branch,
            reverted=info,
            message=str(data.get("message", "")),
        )

    # -- HTTP ----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: dict[str, Any] | None = None,
        need: str = "the Developer role",
        not_found: str | None = None,
        absolute: str | None = None,
    ) -> Any:
        url = f"{self.api_url}/api/v4{absolute}" if absolute else f"{self._base}{path}"
        try:
            response = await self._client.request(
                method,
                url,
                params=params,
                json=json,
                headers={"Authorization": f"Bearer {self._token}"},
            )
        except httpx.HTTPError as exc:
            raise http_errors.unreachable(GITLAB, self.api_url, exc) from exc
        return self._check(response, need=need, not_found=not_found)

    def _check(self, response: httpx.Response, *, need: str, not_found: str | None) -> Any:
        """The JSON of a success; else the error it means (``commands.http_errors``, with what
        only GitLab says: missing scopes, protected branches, 400 ``error_code``s)."""
        if response.status_code < 300:
            return response.json() if response.content else {}

        def specific(answer: http_errors.Answer) -> errors.CommandError | None:
            status, body = answer.status, answer.body
            if status == 403:
                if body.get("error") == "insufficient_scope":
                    scopes = str(body.get("scope") or "api").split() or ["api"]
                    which = " or ".join(scopes)
                    return errors.Denied(
                        f"The Git token lacks the {which} scope on {self.project}.",
                        hint="Create a token with that scope, then retry.",
                    )
                if "not allowed to push" in answer.low:
                    return _PushRefused(
                        f"The Git token may not push to {self.branch} on {self.project}."
                    )
                return errors.Denied(
                    f"The Git token lacks {need} on {self.project}.",
                    hint="Give the bot's user that role in the project, then retry.",
                )
            if status == 404:
                return errors.NotFound(
                    not_found
                    or f"Project {self.project} not found, or the Git token cannot see it."
                )
            if status in (400, 409, 422):
                code = body.get("error_code")
                return _Rejected(status, answer.message or str(status), str(code) if code else None)
            return None

        raise http_errors.error_for(
            http_errors.read(response, secrets=(self._token,)),
            GITLAB,
            what=self.project,
            specific=specific,
        )

    def _web(self, suffix: str) -> str:
        return f"{self.api_url}/{self.project}/{suffix}"
