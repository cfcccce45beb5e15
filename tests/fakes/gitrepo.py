"""Real Git repositories for the Git-host fakes, driven by the git CLI.

A ``Workspace`` is a bare repository (what the fake GitHub or GitLab serves) plus a working
clone to author history with. ``expected_revert`` answers what real ``git revert`` makes of a
commit on a fresh clone - the reference every API revert is compared with.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

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


class Workspace:
    def __init__(self, root: Path, branch: str = "main") -> None:
        self.root = root
        self.branch = branch
        self.bare = root / "server.git"
        self.work = root / "work"
        self._clock = itertools.count(1_700_000_000, 3600)
        self._scratch = itertools.count()
        git("init", "--bare", "-b", branch, str(self.bare), cwd=root)
        git("init", "-b", branch, str(self.work), cwd=root)
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def commit(
        self,
        message: str,
        files: dict[str, str | bytes | None],
        *,
        author: str = "Alice Example <alice@example.com>",
        push: bool = True,
    ) -> str:
        """Write (or delete, with None) files in the work tree, commit, push; the new sha."""
        for rel, content in files.items():
            path = self.work / rel
            if content is None:
                git("rm", "-r", "-q", "--", rel, cwd=self.work)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
            git("add", "--", rel, cwd=self.work)
        when = f"@{next(self._clock)} +0000"
        name, _, email = author.partition(" <")
        env = {
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_DATE": when,
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email.rstrip(">"),
        }
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work, env=env)
        if push:
            self.push()
        return self.head()

    def merge(self, other: str, message: str) -> str:
        when = f"@{next(self._clock)} +0000"
        env = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
        git("merge", "-q", "--no-ff", "-m", message, other, cwd=self.work, env=env)
        self.push()
        return self.head()

    def checkout(self, branch: str, *, create: bool = False) -> None:
        git("checkout", "-q", *(["-b"] if create else []), branch, cwd=self.work)

    def push(self, branch: str | None = None) -> None:
        git("push", "-q", "-f", "origin", f"HEAD:refs/heads/{branch or self.branch}", cwd=self.work)

    def pull(self) -> None:
        git("fetch", "-q", "origin", cwd=self.work)
        git("reset", "-q", "--hard", f"origin/{self.branch}", cwd=self.work)

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)

    def tip(self, branch: str | None = None) -> str:
        return git("rev-parse", f"refs/heads/{branch or self.branch}", cwd=self.bare)

    def tree(self, rev: str) -> str:
        return git("rev-parse", f"{rev}^{{tree}}", cwd=self.bare)

    def read(self, rev: str, path: str) -> bytes:
        merged = {**os.environ, **_ENV}
        return subprocess.run(
            ["git", "cat-file", "blob", f"{rev}:{path}"],
            cwd=self.bare,
            env=merged,
            capture_output=True,
            check=True,
        ).stdout

    def message(self, rev: str) -> str:
        return git("log", "-1", "--format=%B", rev, cwd=self.bare)

    def parents(self, rev: str) -> list[str]:
        return git("log", "-1", "--format=%P", rev, cwd=self.bare).split()

    def expected_revert(self, sha: str, *, at: str | None = None) -> str | None:
        """The tree ``git revert`` (``-m 1`` for a merge) makes on a clone at ``at`` (default:
        the branch tip); None when git stops (a conflict, or nothing to commit)."""
        clone = self.root / f"reference-{next(self._scratch)}"
        git("clone", "-q", str(self.bare), str(clone), cwd=self.root)
        git("checkout", "-q", at or self.tip(), cwd=clone)
        mainline = ["-m", "1"] if len(self.parents(sha)) > 1 else []
        merged = {**os.environ, **_ENV}
        done = subprocess.run(
            ["git", *_IDENTITY, "revert", "--no-edit", *mainline, sha],
            cwd=clone,
            env=merged,
            capture_output=True,
        )
        if done.returncode != 0:
            return None
        return git("rev-parse", "HEAD^{tree}", cwd=clone)
