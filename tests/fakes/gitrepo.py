"""Real Git repositories for the Git-host fakes, driven by the git CLI.

A ``Workspace`` is a repository with a work tree to author history in; the fake GitHub or
GitLab serves its ``.git`` directory (``served``), so a commit here is on the "server" at once,
with no push (pushes cost several processes each). ``expected_revert`` answers what real
``git revert`` makes of a commit in a separate, detached work tree - the reference every API
revert is compared with. ``resolve`` and ``log_page`` are how both fakes read the served
repository: a ref as the hosts take it in a URL, and one page of a commit listing.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import pygit2

_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}
_IDENTITY = ("-c", "user.name=Test", "-c", "user.email=test@example.com")


def git(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> str:
    merged = {**os.environ, **_ENV, **(env or {})}
    done = subprocess.run(
        ["git", *_IDENTITY, *args], cwd=cwd, env=merged, capture_output=True, text=True
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def resolve(repo: pygit2.Repository, ref: str) -> pygit2.Commit | None:
    """A branch name first, then anything ``git rev-parse`` takes (a full or short sha), as
    a commit; None when ``ref`` names no commit."""
    if f"refs/heads/{ref}" in repo.references:
        return repo.references[f"refs/heads/{ref}"].peel(pygit2.Commit)
    try:
        obj = repo.revparse_single(ref)
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return obj if isinstance(obj, pygit2.Commit) else None


def log_page(
    bare: Path, start: pygit2.Commit, path: str | None, page: int, per_page: int
) -> list[str]:
    """Page ``page`` (from 1) of the ids ``git log`` lists from ``start``, only commits that
    touch ``path`` when one is given."""
    args = ["git", "log", "--format=%H", str(start.id)]
    if path:
        args += ["--", path]
    shas = subprocess.run(args, cwd=bare, capture_output=True, text=True, check=True).stdout.split()
    return shas[(page - 1) * per_page : page * per_page]


class Workspace:
    def __init__(self, root: Path, branch: str = "main") -> None:
        self.root = root
        self.branch = branch
        self.work = root / "work"
        self.served = self.work / ".git"
        self._clock = itertools.count(1_700_000_000, 3600)
        self._scratch = itertools.count()
        git("init", "-q", "-b", branch, str(self.work), cwd=root)

    def commit(
        self,
        message: str,
        files: dict[str, str | bytes | None],
        *,
        author: str = "Alice Example <alice@example.com>",
    ) -> str:
        """Write (or delete, with None) files, commit on the checked-out branch; the new sha.

        The fake may have moved the branch (a revert): the work tree catches up first."""
        if self.has_commits():
            git("reset", "-q", "--hard", cwd=self.work)
        for rel, content in files.items():
            path = self.work / rel
            if content is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    path.write_text(content)
        if files:
            git("add", "-A", "--", *files, cwd=self.work)
        when = f"@{next(self._clock)} +0000"
        name, _, email = author.partition(" <")
        env = {
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_DATE": when,
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email.rstrip(">"),
        }
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work, env=env)
        return self.head()

    def merge(self, other: str, message: str) -> str:
        when = f"@{next(self._clock)} +0000"
        env = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
        git("merge", "-q", "--no-ff", "-m", message, other, cwd=self.work, env=env)
        return self.head()

    def checkout(self, branch: str, *, create: bool = False) -> None:
        git("checkout", "-q", *(["-b"] if create else []), branch, cwd=self.work)

    def has_commits(self) -> bool:
        return bool(git("rev-parse", "--verify", "-q", "HEAD", cwd=self.work, check=False))

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)

    def tip(self, branch: str | None = None) -> str:
        return git("rev-parse", f"refs/heads/{branch or self.branch}", cwd=self.work)

    def tree(self, rev: str) -> str:
        return git("rev-parse", f"{rev}^{{tree}}", cwd=self.work)

    def read(self, rev: str, path: str) -> bytes:
        merged = {**os.environ, **_ENV}
        return subprocess.run(
            ["git", "cat-file", "blob", f"{rev}:{path}"],
            cwd=self.work,
            env=merged,
            capture_output=True,
            check=True,
        ).stdout

    def message(self, rev: str) -> str:
        return git("log", "-1", "--format=%B", rev, cwd=self.work)

    def parents(self, rev: str) -> list[str]:
        return git("log", "-1", "--format=%P", rev, cwd=self.work).split()

    def expected_revert(self, sha: str, *, at: str | None = None) -> str | None:
        """The tree ``git revert`` (``-m 1`` for a merge) makes at ``at`` (default: the branch
        tip) in a detached work tree; None when git stops (a conflict, or nothing to commit).
        No branch moves: the commit it makes is left unreferenced."""
        scratch = self.root / f"reference-{next(self._scratch)}"
        git("worktree", "add", "-q", "--detach", str(scratch), at or self.tip(), cwd=self.work)
        mainline = ["-m", "1"] if len(self.parents(sha)) > 1 else []
        merged = {**os.environ, **_ENV}
        done = subprocess.run(
            ["git", *_IDENTITY, "revert", "--no-edit", *mainline, sha],
            cwd=scratch,
            env=merged,
            capture_output=True,
        )
        if done.returncode != 0:
            return None
        return git("rev-parse", "HEAD^{tree}", cwd=scratch)
