"""A fake GitHub REST API over a real repository (pygit2), on 127.0.0.1.

It serves the endpoints the /rollback client uses with GitHub's shapes, statuses and error
bodies (``{"message", "documentation_url", "status"}``): repository, refs, REST commits and
their list, compare, the Git Data API (commits, trees, blobs; create them), ref updates with
GitHub's fast-forward rule and branch protection, branch creation and pull requests. Objects
really land in the repository, so a test can check the result with the git CLI.

Tokens carry fine-grained permissions; a write without ``contents: write`` answers 403 with
``X-Accepted-GitHub-Permissions`` as GitHub does, and the message names the kind of token:
"Resource not accessible by integration" for an App installation token (``ghs_``), "... by
personal access token" otherwise. Rate limits as GitHub's "Rate limits for the REST API" and
"Troubleshooting the REST API" describe them: every answer carries ``x-ratelimit-limit /
-remaining / -used / -reset`` (UTC epoch seconds) / ``-resource``; past the primary limit (5,000
an hour per token) a request is 403 with ``x-ratelimit-remaining: 0`` and "API rate limit
exceeded ..."; ``secondary_limit_next`` answers 403 or 429 with ``retry-after`` and "You have
exceeded a secondary rate limit". ``before_ref_update`` runs just before a
branch update is judged (to move the branch under the client: a race); ``fail`` injects
statuses. Every request is recorded.

GitHub Apps: ``apps`` maps an app id to its public key and installations. ``POST
/app/installations/{id}/access_tokens`` verifies the app's JWT as GitHub does (RS256 with the
app's key, ``iss`` the app id, ``iat`` in the past, ``exp`` in the future and at most 10 minutes
after ``iat``) and issues a ``ghs_`` token valid for one hour of ``clock`` time, registered with
the installation's grant; once expired, it answers 401 like any bad credential.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pygit2
from aiohttp import web

from tests.fakes.common import InjectedFailures, Served
from tests.fakes.gitrepo import log_page, resolve
from tests.fakes.server import ThreadedServer

DOCS = "https://docs.github.com/rest"
WEB = "https://github.test"


@dataclass
class Grant:
    contents: str | None = "write"  # None | "read" | "write"
    pull_requests: str | None = "write"


@dataclass
class App:
    """A GitHub App: the public half of its private key, and its installations' grants."""

    public_key_pem: bytes
    installations: dict[str, Grant] = field(default_factory=dict)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    auth: str


@dataclass
class FakeGitHub(Served):
    bare: Path
    owner: str = "acme"
    name: str = "deploy"
    prefix: str = ""  # "/api/v3" serves it as GitHub Enterprise does
    tokens: dict[str, Grant] = field(default_factory=lambda: {"good-token": Grant()})
    protected: set[str] = field(default_factory=set)
    before_ref_update: Callable[[str], None] | None = None
    requests: list[Recorded] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    apps: dict[str, App] = field(default_factory=dict)
    clock: Callable[[], float] = time.time  # judges JWTs and token expiry
    token_expiry: dict[str, float] = field(default_factory=dict)  # issued token -> expires at
    rate_limit: int = 5000  # primary limit: requests per hour per token
    _failures: InjectedFailures = field(default_factory=InjectedFailures)
    _used: dict[str, tuple[int, float]] = field(default_factory=dict)  # token -> (used, reset)
    _secondary: list[tuple[int, int]] = field(default_factory=list)  # (status, retry-after)

    def __post_init__(self) -> None:
        self.repo = pygit2.Repository(str(self.bare))
        self.server = ThreadedServer(self._app())

    # -- test controls -------------------------------------------------------------------

    def fail(self, method: str, fragment: str, status: int, times: int = 1) -> None:
        self._failures.add(method, fragment, status, times)

    def calls(self, method: str, fragment: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and fragment in r.path]

    def exhaust_rate_limit(
        self,
        token: str = "good-token",  # noqa: S107 - a fake credential
        reset_in: float = 600,
    ) -> float:
        """The token has used its hour's requests; returns when the window resets (epoch s)."""
        reset = float(int(self.clock() + reset_in))
        self._used[token] = (self.rate_limit, reset)
        return reset

    def secondary_limit_next(
        self, times: int = 1, retry_after: int = 60, status: int = 403
    ) -> None:
        """The next requests trip a secondary rate limit (too many at once): 403 or 429."""
        self._secondary += [(status, retry_after)] * times

    def _rate_headers(self, token: str) -> tuple[dict[str, str], bool]:
        """The x-ratelimit-* headers after counting this request, and whether it is over."""
        now = self.clock()
        used, reset = self._used.get(token, (0, 0.0))
        if now >= reset:
            used, reset = 0, float(int(now + 3600))
        over = used >= self.rate_limit
        used = min(used + 1, self.rate_limit)
        self._used[token] = (used, reset)
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(self.rate_limit - used),
            "x-ratelimit-used": str(used),
            "x-ratelimit-reset": str(int(reset)),
            "x-ratelimit-resource": "core",
        }, over

    # -- routing -------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        base = self.prefix + "/repos/{owner}/{repo}"
        app.router.add_get(base, self._get_repo)
        app.router.add_get(base + "/git/ref/{ref:.+}", self._get_ref)
        app.router.add_get(base + "/git/refs/{ref:.+}", self._get_ref)
        app.router.add_patch(base + "/git/refs/{ref:.+}", self._update_ref)
        app.router.add_post(base + "/git/refs", self._create_ref)
        app.router.add_get(base + "/commits", self._list_commits)
        app.router.add_get(base + "/commits/{ref}", self._get_commit)
        app.router.add_get(base + "/compare/{basehead:.+}", self._compare)
        app.router.add_get(base + "/git/commits/{sha}", self._get_git_commit)
        app.router.add_post(base + "/git/commits", self._create_commit)
        app.router.add_get(base + "/git/trees/{sha}", self._get_tree)
        app.router.add_post(base + "/git/trees", self._create_tree)
        app.router.add_get(base + "/git/blobs/{sha}", self._get_blob)
        app.router.add_post(base + "/git/blobs", self._create_blob)
        app.router.add_post(base + "/pulls", self._create_pull)
        app.router.add_get(base + "/pulls", self._list_pulls)
        app.router.add_post(
            self.prefix + "/app/installations/{installation}/access_tokens",
            self._create_installation_token,
        )
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        auth = request.headers.get("Authorization", "")
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), body, auth)
        )
        injected = self._failures.take(request.method, request.path)
        if injected is not None:
            return _error(injected, "Server Error")
        if request.path.startswith(self.prefix + "/app/"):
            app_response: web.StreamResponse = await handler(request)  # judges its own JWT
            return app_response
        token = auth.removeprefix("Bearer ").removeprefix("token ").strip()
        grant = self.tokens.get(token)
        expires = self.token_expiry.get(token)
        if grant is None or (expires is not None and self.clock() >= expires):
            return _error(401, "Bad credentials")
        rate, over = self._rate_headers(token)
        if self._secondary:
            status, wait = self._secondary.pop(0)
            limited = _error(
                status,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you "
                "try again. If you reach out to GitHub Support for help, please include the "
                "request ID.",
                doc="/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            )
            limited.headers.update(rate | {"retry-after": str(wait)})
            return limited
        if over:
            who = "installation ID 1" if token.startswith("ghs_") else "user ID 1"
            limited = _error(
                403,
                f"API rate limit exceeded for {who}. If you reach out to GitHub Support for "
                "help, please include the request ID.",
                doc="/using-the-rest-api/rate-limits-for-the-rest-api",
            )
            limited.headers.update(rate)
            return limited
        response = await self._authorized(request, handler, token, grant)
        response.headers.update(rate)
        return response

    async def _authorized(
        self, request: web.Request, handler: Any, token: str, grant: Grant
    ) -> web.StreamResponse:
        info = request.match_info
        if info.get("owner") != self.owner or info.get("repo") != self.name:
            return _error(404, "Not Found")
        if grant.contents is None:
            return _error(404, "Not Found")
        if request.method != "GET":
            need = "pull_requests" if request.path.endswith("/pulls") else "contents"
            if getattr(grant, need) != "write":
                kind = "integration" if token.startswith("ghs_") else "personal access token"
                response = _error(403, f"Resource not accessible by {kind}")
                response.headers["X-Accepted-GitHub-Permissions"] = f"{need}=write"
                return response
        response: web.StreamResponse = await handler(request)
        return response

    # -- GitHub Apps ---------------------------------------------------------------------

    async def _create_installation_token(self, request: web.Request) -> web.Response:
        now = self.clock()
        encoded = _token(request)
        try:
            unverified = jwt.decode(encoded, options={"verify_signature": False})
            app = self.apps.get(str(unverified.get("iss")))
            if app is None:
                raise jwt.InvalidTokenError("unknown issuer")
            claims = jwt.decode(
                encoded,
                app.public_key_pem,
                algorithms=["RS256"],
                options={
                    "require": ["iat", "exp", "iss"],
                    "verify_exp": False,  # judged below against the fake's clock
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidTokenError:
            return _error(401, "A JSON web token could not be decoded")
        iat, exp = claims["iat"], claims["exp"]
        if not isinstance(iat, int) or iat > now:
            return _error(
                401,
                "'Issued at' claim ('iat') must be an Integer representing the time that the "
                "assertion was issued",
            )
        if not isinstance(exp, int) or exp <= now:
            return _error(
                401,
                "'Expiration time' claim ('exp') must be a numeric value representing the "
                "future time at which the assertion expires",
            )
        if exp - iat > 600:
            return _error(401, "'Expiration time' claim ('exp') is too far in the future")
        grant = app.installations.get(request.match_info["installation"])
        if grant is None:
            return _error(404, "Not Found")
        token = "ghs_" + secrets.token_hex(18)
        expires = now + 3600
        self.tokens[token] = grant
        self.token_expiry[token] = expires
        permissions = {"metadata": "read"}
        permissions.update({k: v for k, v in vars(grant).items() if v is not None})
        return web.json_response(
            {
                "token": token,
                "expires_at": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "permissions": permissions,
                "repository_selection": "selected",
            },
            status=201,
        )

    # -- repository and refs -------------------------------------------------------------

    async def _get_repo(self, request: web.Request) -> web.Response:
        grant = self.tokens[_token(request)]
        push = grant.contents == "write"
        return web.json_response(
            {
                "id": 1,
                "name": self.name,
                "full_name": f"{self.owner}/{self.name}",
                "private": True,
                "html_url": f"{WEB}/{self.owner}/{self.name}",
                "default_branch": "main",
                "permissions": {"admin": False, "maintain": False, "push": push, "pull": True},
            }
        )

    async def _get_ref(self, request: web.Request) -> web.Response:
        ref = "refs/" + request.match_info["ref"]
        if ref not in self.repo.references:
            return _error(404, "Not Found")
        return web.json_response(self._ref_json(ref))

    async def _update_ref(self, request: web.Request) -> web.Response:
        ref = "refs/" + request.match_info["ref"]
        body = await request.json()
        if ref not in self.repo.references:
            return _error(422, "Reference does not exist")
        new = self._commit_obj(str(body.get("sha", "")))
        if new is None:
            return _error(422, "Object does not exist")
        branch = ref.removeprefix("refs/heads/")
        if self.before_ref_update is not None:
            self.before_ref_update(branch)
        if branch in self.protected:
            return _error(422, f"Protected branch update failed for {ref}.")
        current = self.repo.references[ref].target
        is_ff = new.id == current or self.repo.descendant_of(new.id, current)
        if not body.get("force", False) and not is_ff:
            return _error(422, "Update is not a fast forward")
        self.repo.references[ref].set_target(new.id)
        return web.json_response(self._ref_json(ref))

    async def _create_ref(self, request: web.Request) -> web.Response:
        body = await request.json()
        ref = str(body.get("ref", ""))
        if not ref.startswith("refs/") or ref.count("/") < 2:
            return _error(422, "Reference name must start with 'refs/' and have two slashes")
        if ref in self.repo.references:
            return _error(422, "Reference already exists")
        target = self._commit_obj(str(body.get("sha", "")))
        if target is None:
            return _error(422, "Object does not exist")
        self.repo.references.create(ref, target.id)
        return web.json_response(self._ref_json(ref), status=201)

    def _ref_json(self, ref: str) -> dict[str, Any]:
        sha = str(self.repo.references[ref].target)
        return {
            "ref": ref,
            "node_id": "REF_x",
            "url": self._api(f"git/{ref}"),
            "object": {"type": "commit", "sha": sha, "url": self._api(f"git/commits/{sha}")},
        }

    # -- commits -------------------------------------------------------------------------

    async def _get_commit(self, request: web.Request) -> web.Response:
        commit = self._resolve(request.match_info["ref"])
        if commit is None:
            return web.json_response(
                {
                    "message": f"No commit found for SHA: {request.match_info['ref']}",
                    "documentation_url": f"{DOCS}/commits/commits#get-a-commit",
                    "status": "422",
                },
                status=422,
            )
        data = self._rest_commit(commit)
        parent_tree = commit.parents[0].tree if commit.parents else None
        diff = (
            self.repo.diff(parent_tree, commit.tree)
            if parent_tree is not None
            else commit.tree.diff_to_tree(swap=True)
        )
        statuses = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "T": "changed"}
        data["files"] = [
            {
                "filename": d.new_file.path,
                "status": statuses.get(d.status_char(), "modified"),
                "sha": str(d.new_file.id),
            }
            for d in diff.deltas
        ]
        return web.json_response(data)

    async def _list_commits(self, request: web.Request) -> web.Response:
        start = self._resolve(request.query.get("sha", "main"))
        if start is None:
            return _error(404, "Not Found")
        per_page = int(request.query.get("per_page", "30"))
        page = int(request.query.get("page", "1"))
        chosen = log_page(self.bare, start, request.query.get("path"), page, per_page)
        return web.json_response([self._rest_commit(self.repo[s]) for s in chosen])

    async def _compare(self, request: web.Request) -> web.Response:
        base_ref, _, head_ref = request.match_info["basehead"].partition("...")
        base, head = self._resolve(base_ref), self._resolve(head_ref)
        if base is None or head is None:
            return _error(404, "Not Found")
        ahead, behind = self.repo.ahead_behind(head.id, base.id)
        status = (
            "identical"
            if base.id == head.id
            else "ahead"
            if behind == 0
            else "behind"
            if ahead == 0
            else "diverged"
        )
        merge_base = self.repo.merge_base(base.id, head.id)
        return web.json_response(
            {
                "status": status,
                "ahead_by": ahead,
                "behind_by": behind,
                "total_commits": ahead,
                "base_commit": self._rest_commit(base),
                "merge_base_commit": self._rest_commit(self.repo[merge_base])
                if merge_base
                else None,
            }
        )

    async def _get_git_commit(self, request: web.Request) -> web.Response:
        commit = self._commit_obj(request.match_info["sha"])
        if commit is None:
            return _error(404, "Not Found")
        return web.json_response(self._git_commit(commit))

    async def _create_commit(self, request: web.Request) -> web.Response:
        body = await request.json()
        tree = self._object(str(body.get("tree", "")), pygit2.Tree)
        parents = [self._commit_obj(str(p)) for p in body.get("parents", [])]
        if tree is None or any(p is None for p in parents) or not body.get("message"):
            return _error(422, "Invalid request.")
        who = pygit2.Signature("chatops-bot", "bot@example.com", 1_800_000_000, 0)
        oid = self.repo.create_commit(
            None, who, who, str(body["message"]), tree.id, [p.id for p in parents if p]
        )
        return web.json_response(self._git_commit(self.repo[oid]), status=201)

    # -- trees and blobs -----------------------------------------------------------------

    async def _get_tree(self, request: web.Request) -> web.Response:
        tree = self._object(request.match_info["sha"], pygit2.Tree)
        if tree is None:
            return _error(404, "Not Found")
        entries = []
        for entry in tree:
            mode = f"{entry.filemode:06o}"
            kind = {"040000": "tree", "160000": "commit"}.get(mode, "blob")
            item = {"path": entry.name, "mode": mode, "type": kind, "sha": str(entry.id)}
            if kind == "blob":
                item["size"] = self.repo[entry.id].size
            entries.append(item)
        return web.json_response({"sha": str(tree.id), "tree": entries, "truncated": False})

    async def _create_tree(self, request: web.Request) -> web.Response:
        body = await request.json()
        base = None
        if body.get("base_tree"):
            base = self._object(str(body["base_tree"]), pygit2.Tree)
            if base is None:
                return _error(422, "Invalid tree info")
        edits: list[tuple[list[str], int, pygit2.Oid | None]] = []
        for item in body.get("tree", []):
            if item.get("content") is not None:
                oid: pygit2.Oid | None = self.repo.create_blob(str(item["content"]).encode())
            elif item.get("sha") is None:
                oid = None
            else:
                expected = pygit2.Tree if item.get("type") == "tree" else pygit2.Blob
                found = self._object(str(item["sha"]), expected)
                if found is None:
                    return _error(422, f"tree.sha {item['sha']} is not a valid {item['type']}")
                oid = found.id
            edits.append((str(item["path"]).split("/"), int(str(item["mode"]), 8), oid))
        oid_out = self._edit_tree(base, edits)
        tree = self.repo[oid_out]
        return web.json_response(
            {"sha": str(tree.id), "url": self._api(f"git/trees/{tree.id}"), "truncated": False},
            status=201,
        )

    def _edit_tree(
        self, base: pygit2.Tree | None, edits: list[tuple[list[str], int, pygit2.Oid | None]]
    ) -> pygit2.Oid:
        builder = self.repo.TreeBuilder(base) if base is not None else self.repo.TreeBuilder()
        nested: dict[str, list[tuple[list[str], int, pygit2.Oid | None]]] = {}
        for parts, mode, oid in edits:
            if len(parts) > 1:
                nested.setdefault(parts[0], []).append((parts[1:], mode, oid))
            elif oid is None:
                if builder.get(parts[0]) is not None:
                    builder.remove(parts[0])
            else:
                builder.insert(parts[0], oid, mode)
        for name, sub_edits in nested.items():
            existing = builder.get(name)
            sub = self.repo[existing.id] if existing is not None else None
            sub_tree = sub if isinstance(sub, pygit2.Tree) else None
            sub_oid = self._edit_tree(sub_tree, sub_edits)
            if len(self.repo[sub_oid]) == 0:
                if existing is not None:
                    builder.remove(name)
            else:
                builder.insert(name, sub_oid, pygit2.enums.FileMode.TREE)
        return builder.write()

    async def _get_blob(self, request: web.Request) -> web.Response:
        blob = self._object(request.match_info["sha"], pygit2.Blob)
        if blob is None:
            return _error(404, "Not Found")
        encoded = base64.encodebytes(blob.data).decode()  # GitHub wraps lines at 60 chars
        return web.json_response(
            {"sha": str(blob.id), "size": blob.size, "content": encoded, "encoding": "base64"}
        )

    async def _create_blob(self, request: web.Request) -> web.Response:
        body = await request.json()
        content = str(body.get("content", ""))
        data = base64.b64decode(content) if body.get("encoding") == "base64" else content.encode()
        oid = self.repo.create_blob(data)
        return web.json_response(
            {"sha": str(oid), "url": self._api(f"git/blobs/{oid}")}, status=201
        )

    # -- pull requests -------------------------------------------------------------------

    async def _create_pull(self, request: web.Request) -> web.Response:
        body = await request.json()
        head, base = str(body.get("head", "")), str(body.get("base", ""))
        head_branch = head.split(":", 1)[-1]
        if f"refs/heads/{head_branch}" not in self.repo.references:
            return _validation_failed(f"head {head} is not a branch")
        for pr in self.pulls:
            if pr["head"]["ref"] == head_branch and pr["state"] == "open":
                return _validation_failed(
                    f"A pull request already exists for {self.owner}:{head_branch}."
                )
        number = len(self.pulls) + 1
        pr = {
            "number": number,
            "state": "open",
            "title": body.get("title"),
            "body": body.get("body"),
            "html_url": f"{WEB}/{self.owner}/{self.name}/pull/{number}",
            "head": {
                "ref": head_branch,
                "sha": str(self.repo.references[f"refs/heads/{head_branch}"].target),
            },
            "base": {"ref": base},
        }
        self.pulls.append(pr)
        return web.json_response(pr, status=201)

    async def _list_pulls(self, request: web.Request) -> web.Response:
        head = request.query.get("head", "").split(":", 1)[-1]
        state = request.query.get("state", "open")
        found = [
            p for p in self.pulls if (not head or p["head"]["ref"] == head) and p["state"] == state
        ]
        return web.json_response(found)

    # -- helpers -------------------------------------------------------------------------

    def _api(self, suffix: str) -> str:
        return f"{self.url}{self.prefix}/repos/{self.owner}/{self.name}/{suffix}"

    def _object(self, sha: str, kind: type) -> Any:
        try:
            obj = self.repo.get(sha) if len(sha) == 40 else None
        except ValueError:
            return None
        return obj if isinstance(obj, kind) else None

    def _commit_obj(self, sha: str) -> pygit2.Commit | None:
        found: pygit2.Commit | None = self._object(sha, pygit2.Commit)
        return found

    def _resolve(self, ref: str) -> pygit2.Commit | None:
        return resolve(self.repo, ref)

    def _rest_commit(self, commit: pygit2.Commit) -> dict[str, Any]:
        git = self._git_commit(commit)
        sha = str(commit.id)
        return {
            "sha": sha,
            "node_id": "C_x",
            "url": self._api(f"commits/{sha}"),
            "html_url": f"{WEB}/{self.owner}/{self.name}/commit/{sha}",
            "commit": {
                "author": git["author"],
                "committer": git["committer"],
                "message": git["message"],
                "tree": git["tree"],
            },
            "author": None,
            "committer": None,
            "parents": git["parents"],
        }

    def _git_commit(self, commit: pygit2.Commit) -> dict[str, Any]:
        sha = str(commit.id)
        return {
            "sha": sha,
            "url": self._api(f"git/commits/{sha}"),
            "html_url": f"{WEB}/{self.owner}/{self.name}/commit/{sha}",
            "author": _signature(commit.author),
            "committer": _signature(commit.committer),
            "message": commit.message,
            "tree": {"sha": str(commit.tree_id), "url": self._api(f"git/trees/{commit.tree_id}")},
            "parents": [
                {"sha": str(p), "url": self._api(f"git/commits/{p}")} for p in commit.parent_ids
            ],
        }


def _signature(sig: pygit2.Signature) -> dict[str, str]:
    when = datetime.fromtimestamp(sig.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"name": sig.name, "email": sig.email, "date": when}


def _token(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    return auth.removeprefix("Bearer ").removeprefix("token ").strip()


def _error(status: int, message: str, doc: str = "") -> web.Response:
    return web.json_response(
        {"message": message, "documentation_url": DOCS + doc, "status": str(status)},
        status=status,
    )


def _validation_failed(message: str) -> web.Response:
    return web.json_response(
        {
            "message": "Validation Failed",
            "errors": [{"resource": "PullRequest", "code": "custom", "message": message}],
            "documentation_url": f"{DOCS}/pulls/pulls#create-a-pull-request",
            "status": "422",
        },
        status=422,
    )
