"""A fake GitLab REST API (v4) over a real repository (pygit2), on 127.0.0.1.

It serves what the /rollback client uses, with GitLab's shapes and documented errors: commits
(one, list by ``ref_name``/``path``, diff), ``merge_base``, ``compare``, the revert endpoint
with ``dry_run`` (computed by libgit2 in memory, against the first parent for a merge commit;
400 ``{message, error_code: "conflict" | "empty"}``), branches, merge requests, and
``personal_access_tokens/self``. Projects are addressed by URL-encoded path.

Tokens carry a role (access level) and scopes; a protected branch needs its push level
(403 "You are not allowed to push into this branch"). Scopes are checked on every API call, as
GitLab does (docs "Personal access token scopes": ``read_api`` grants read access to the API,
``api`` read and write; ``read_repository`` alone is for Git over HTTP, not the API): a read
without ``read_api`` or ``api`` and a write without ``api`` get 403 ``insufficient_scope`` with
the scopes that would do in ``scope`` ("api read_api" for a read, "api" for a write). Every request is recorded; ``fail`` injects statuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pygit2
from aiohttp import web

from tests.fakes.common import InjectedFailures, Served
from tests.fakes.gitrepo import log_page, resolve
from tests.fakes.server import ThreadedServer

WEB = "https://gitlab.test"
DEVELOPER, MAINTAINER = 30, 40


@dataclass
class Token:
    access_level: int = MAINTAINER
    scopes: tuple[str, ...] = ("api",)


@dataclass
class Recorded:
    method: str
    path: str  # decoded, relative to /api/v4
    query: list[tuple[str, str]]
    body: Any
    auth: str


@dataclass
class FakeGitLab(Served):
    bare: Path
    project: str = "acme/deploy"
    tokens: dict[str, Token] = field(default_factory=lambda: {"good-token": Token()})
    protected: dict[str, int] = field(default_factory=dict)  # branch -> push access level
    requests: list[Recorded] = field(default_factory=list)
    merge_requests: list[dict[str, Any]] = field(default_factory=list)
    _failures: InjectedFailures = field(default_factory=InjectedFailures)

    def __post_init__(self) -> None:
        self.repo = pygit2.Repository(str(self.bare))
        app = web.Application()
        app.router.add_route("*", "/api/v4/{tail:.*}", self._dispatch)
        self.server = ThreadedServer(app)
        p = r"projects/(?P<id>[^/]+)"
        self._routes: list[tuple[str, re.Pattern[str], Any]] = [
            ("GET", re.compile(r"personal_access_tokens/self"), self._token_self),
            ("GET", re.compile(p), self._get_project),
            ("GET", re.compile(p + r"/repository/commits"), self._list_commits),
            ("GET", re.compile(p + r"/repository/commits/(?P<sha>[^/]+)"), self._get_commit),
            ("GET", re.compile(p + r"/repository/commits/(?P<sha>[^/]+)/diff"), self._diff),
            ("POST", re.compile(p + r"/repository/commits/(?P<sha>[^/]+)/revert"), self._revert),
            ("GET", re.compile(p + r"/repository/merge_base"), self._merge_base),
            ("GET", re.compile(p + r"/repository/compare"), self._compare),
            ("POST", re.compile(p + r"/repository/branches"), self._create_branch),
            ("GET", re.compile(p + r"/repository/branches/(?P<branch>[^/]+)"), self._get_branch),
            ("POST", re.compile(p + r"/merge_requests"), self._create_mr),
            ("GET", re.compile(p + r"/merge_requests"), self._list_mrs),
        ]

    # -- test controls -------------------------------------------------------------------

    def fail(self, method: str, fragment: str, status: int, times: int = 1) -> None:
        self._failures.add(method, fragment, status, times)

    def calls(self, method: str, fragment: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and fragment in r.path]

    # -- dispatch ------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.Response:
        raw = request.raw_path.split("?", 1)[0].removeprefix("/api/v4/")
        segments = [unquote(s) for s in raw.split("/")]
        body: Any = None
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
            else:
                body = dict(await request.post())
        auth = request.headers.get("Authorization", "") or request.headers.get("PRIVATE-TOKEN", "")
        self.requests.append(
            Recorded(request.method, "/".join(segments), list(request.query.items()), body, auth)
        )
        injected = self._failures.take(request.method, "/".join(segments))
        if injected is not None:
            return _error(injected, f"{injected} Server Error")
        token = self.tokens.get(auth.removeprefix("Bearer ").strip())
        if token is None:
            return _error(401, "401 Unauthorized")
        # Match on raw segments so an encoded "/" stays inside its segment.
        joined = "/".join(s.replace("/", "\0") for s in segments)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(joined)
            if method == request.method and match:
                args = {k: v.replace("\0", "/") for k, v in match.groupdict().items()}
                if "id" in args and (args["id"] != self.project or token.access_level == 0):
                    return _error(404, "404 Project Not Found")
                enough = ("api",) if request.method != "GET" else ("api", "read_api")
                if not set(enough) & set(token.scopes):
                    return web.json_response(
                        {
                            "error": "insufficient_scope",
                            "error_description": "The request requires higher privileges "
                            "than provided by the access token.",
                            "scope": " ".join(enough),
                        },
                        status=403,
                    )
                response: web.Response = await handler(request, token, body or {}, **args)
                return response
        return _error(404, "404 Not Found")

    # -- handlers ------------------------------------------------------------------------

    async def _token_self(self, request: web.Request, token: Token, body: Any) -> web.Response:
        return web.json_response(
            {
                "id": 1,
                "name": "chatops",
                "revoked": False,
                "active": True,
                "scopes": list(token.scopes),
            }
        )

    async def _get_project(
        self, request: web.Request, token: Token, body: Any, id: str
    ) -> web.Response:
        return web.json_response(
            {
                "id": 7,
                "path_with_namespace": self.project,
                "default_branch": "main",
                "web_url": f"{WEB}/{self.project}",
                "permissions": {
                    "project_access": {"access_level": token.access_level, "notification_level": 3},
                    "group_access": None,
                },
            }
        )

    async def _get_commit(
        self, request: web.Request, token: Token, body: Any, id: str, sha: str
    ) -> web.Response:
        commit = self._resolve(sha)
        if commit is None:
            return _error(404, "404 Commit Not Found")
        return web.json_response(self._commit_json(commit))

    async def _diff(
        self, request: web.Request, token: Token, body: Any, id: str, sha: str
    ) -> web.Response:
        commit = self._resolve(sha)
        if commit is None:
            return _error(404, "404 Commit Not Found")
        if commit.parents:
            diff = self.repo.diff(commit.parents[0].tree, commit.tree)
        else:
            diff = commit.tree.diff_to_tree(swap=True)
        return web.json_response(
            [
                {
                    "old_path": d.old_file.path,
                    "new_path": d.new_file.path,
                    "a_mode": f"{d.old_file.mode:o}",
                    "b_mode": f"{d.new_file.mode:o}",
                    "new_file": d.status_char() == "A",
                    "renamed_file": d.status_char() == "R",
                    "deleted_file": d.status_char() == "D",
                    "diff": "",
                }
                for d in diff.deltas
            ]
        )

    async def _list_commits(
        self, request: web.Request, token: Token, body: Any, id: str
    ) -> web.Response:
        start = self._resolve(request.query.get("ref_name", "main"))
        if start is None:
            return web.json_response([])
        per_page = int(request.query.get("per_page", "20"))
        page = int(request.query.get("page", "1"))
        chosen = log_page(self.bare, start, request.query.get("path"), page, per_page)
        return web.json_response([self._commit_json(self.repo[s]) for s in chosen])

    async def _merge_base(
        self, request: web.Request, token: Token, body: Any, id: str
    ) -> web.Response:
        refs = request.query.getall("refs[]", [])
        commits = [self._resolve(r) for r in refs]
        for ref, commit in zip(refs, commits, strict=True):
            if commit is None:
                return _error(400, f"Could not find ref: {ref}")
        if len(commits) < 2:
            return _error(400, "Provide at least 2 refs")
        base = self.repo.merge_base(commits[0].id, commits[1].id)  # type: ignore[union-attr]
        if base is None:
            return _error(404, "404 Merge Base Not Found")
        return web.json_response(self._commit_json(self.repo[base]))

    async def _compare(
        self, request: web.Request, token: Token, body: Any, id: str
    ) -> web.Response:
        old, new = self._resolve(request.query["from"]), self._resolve(request.query["to"])
        if old is None or new is None:
            return _error(404, "404 Ref Not Found")
        diff = self.repo.diff(old.tree, new.tree)
        return web.json_response(
            {
                "commit": self._commit_json(new),
                "commits": [],
                "diffs": [
                    {"old_path": d.old_file.path, "new_path": d.new_file.path} for d in diff.deltas
                ],
                "compare_timeout": False,
                "compare_same_ref": old.id == new.id,
            }
        )

    async def _revert(
        self, request: web.Request, token: Token, body: dict[str, Any], id: str, sha: str
    ) -> web.Response:
        branch = str(body.get("branch", ""))
        if not branch:
            return _error(400, "branch is missing")
        if not self._can_push(token, branch):
            return _error(403, "403 Forbidden - You are not allowed to push into this branch")
        commit = self._resolve(sha)
        if commit is None:
            return _error(404, "404 Commit Not Found")
        ref = f"refs/heads/{branch}"
        if ref not in self.repo.references:
            return _error(404, "404 Branch Not Found")
        head = self.repo.references[ref].peel(pygit2.Commit)
        mainline = 1 if len(commit.parents) > 1 else 0
        index = self.repo.revert_commit(commit, head, mainline)
        if index.conflicts is not None:
            return _change_error("conflict")
        tree = index.write_tree(self.repo)
        if tree == head.tree_id:
            return _change_error("empty")
        if str(body.get("dry_run", "")).lower() == "true":
            return web.json_response({"dry_run": "success"})
        who = pygit2.Signature("chatops-bot", "bot@example.com", 1_800_000_000, 0)
        title = commit.message.split("\n", 1)[0]
        message = f'Revert "{title}"\n\nThis reverts commit {commit.id}'
        oid = self.repo.create_commit(ref, who, who, message, tree, [head.id])
        return web.json_response(self._commit_json(self.repo[oid]), status=201)

    async def _create_branch(
        self, request: web.Request, token: Token, body: dict[str, Any], id: str
    ) -> web.Response:
        name = str(body.get("branch") or request.query.get("branch", ""))
        ref = str(body.get("ref") or request.query.get("ref", ""))
        if token.access_level < DEVELOPER:
            return _error(403, "403 Forbidden")
        if f"refs/heads/{name}" in self.repo.references:
            return _error(400, "Branch already exists")
        start = self._resolve(ref)
        if start is None:
            return _error(400, "Invalid reference name: " + ref)
        self.repo.references.create(f"refs/heads/{name}", start.id)
        return web.json_response(self._branch_json(name, token), status=201)

    async def _get_branch(
        self, request: web.Request, token: Token, body: Any, id: str, branch: str
    ) -> web.Response:
        if f"refs/heads/{branch}" not in self.repo.references:
            return _error(404, "404 Branch Not Found")
        return web.json_response(self._branch_json(branch, token))

    async def _create_mr(
        self, request: web.Request, token: Token, body: dict[str, Any], id: str
    ) -> web.Response:
        if token.access_level < DEVELOPER:
            return _error(403, "403 Forbidden")
        source = str(body.get("source_branch", ""))
        for mr in self.merge_requests:
            if mr["source_branch"] == source and mr["state"] == "opened":
                return web.json_response(
                    {
                        "message": [
                            "Another open merge request already exists for this source "
                            f"branch: !{mr['iid']}"
                        ]
                    },
                    status=409,
                )
        iid = len(self.merge_requests) + 1
        mr = {
            "id": 100 + iid,
            "iid": iid,
            "state": "opened",
            "title": body.get("title"),
            "description": body.get("description"),
            "source_branch": source,
            "target_branch": body.get("target_branch"),
            "web_url": f"{WEB}/{self.project}/-/merge_requests/{iid}",
        }
        self.merge_requests.append(mr)
        return web.json_response(mr, status=201)

    async def _list_mrs(
        self, request: web.Request, token: Token, body: Any, id: str
    ) -> web.Response:
        q = request.query
        found = [
            mr
            for mr in self.merge_requests
            if mr["source_branch"] == q.get("source_branch", mr["source_branch"])
            and mr["state"] == q.get("state", mr["state"])
        ]
        return web.json_response(found)

    # -- helpers -------------------------------------------------------------------------

    def _can_push(self, token: Token, branch: str) -> bool:
        needed = self.protected.get(branch, DEVELOPER)
        return token.access_level >= max(needed, DEVELOPER) and needed > 0

    def _resolve(self, ref: str) -> pygit2.Commit | None:
        return resolve(self.repo, ref)

    def _branch_json(self, name: str, token: Token) -> dict[str, Any]:
        commit = self.repo.references[f"refs/heads/{name}"].peel(pygit2.Commit)
        return {
            "name": name,
            "commit": self._commit_json(commit),
            "protected": name in self.protected,
            "can_push": self._can_push(token, name),
            "web_url": f"{WEB}/{self.project}/-/tree/{name}",
        }

    def _commit_json(self, commit: Any) -> dict[str, Any]:
        sha = str(commit.id)
        return {
            "id": sha,
            "short_id": sha[:8],
            "title": commit.message.split("\n", 1)[0],
            "message": commit.message,
            "author_name": commit.author.name,
            "author_email": commit.author.email,
            "authored_date": _when(commit.author),
            "committer_name": commit.committer.name,
            "committer_email": commit.committer.email,
            "committed_date": _when(commit.committer),
            "created_at": _when(commit.committer),
            "parent_ids": [str(p) for p in commit.parent_ids],
            "web_url": f"{WEB}/{self.project}/-/commit/{sha}",
        }


def _when(sig: pygit2.Signature) -> str:
    return datetime.fromtimestamp(sig.time, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _change_error(code: str) -> web.Response:
    return web.json_response(
        {
            "message": "Commit revert failed: Can't perform this action automatically. It may "
            "have already been done, or a more recent commit may have updated some of this "
            "content. Please perform this action locally.",
            "error_code": code,
        },
        status=400,
    )
