"""The workflows and the container image, checked without GitHub or Docker: the workflows
against GitHub's workflow schema, the CI workflow's choice of the commit to diff against run for
real in Git repositories (normal, first and force pushes, a new branch), and the Dockerfile
parsed and held to its properties.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CI_WORKFLOW = ROOT / "deploy" / "ci" / "github-workflow.yaml"
RELEASE = ROOT / ".github" / "workflows" / "release.yaml"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
ZERO = "0" * 40


def workflow(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return dict(data)


def check_jsonschema(schema: str, *files: Path) -> None:
    """check-jsonschema with a schema it ships (no network)."""
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema]
    out = subprocess.run([*cmd, *map(str, files)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_workflows_validate_against_githubs_schema() -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yaml"))
    assert {w.name for w in workflows} >= {"release.yaml", "ci.yaml"}
    check_jsonschema("vendor.github-workflows", *workflows, CI_WORKFLOW)
    check_jsonschema("vendor.dependabot", ROOT / ".github" / "dependabot.yml")


def test_the_ci_workflow_is_bounded_least_privileged_and_explicit() -> None:
    wf = workflow(CI_WORKFLOW)
    assert wf["concurrency"] == {
        "group": "argocd-sync-${{ github.ref }}",
        "cancel-in-progress": False,  # a sync is never cut off halfway
    }
    assert wf["permissions"] == {"contents": "read"}
    [job] = wf["jobs"].values()
    assert 0 < job["timeout-minutes"] <= 60
    assert job["env"]["CHATOPS_RETRY_LIMIT"] == "3"
    assert job["env"]["CHATOPS_SYNC_TIMEOUT"] == "300"
    steps = job["steps"]
    checkout = next(s for s in steps if str(s.get("uses", "")).startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    install = next(s for s in steps if "pip install" in s.get("run", ""))
    assert f'"argocd-chatops=={VERSION}"' in install["run"]
    run = next(s for s in steps if "chatops ci sync" in s.get("run", ""))
    # progress is on stderr, in the log; the JSON result goes to a file kept as an artefact
    assert run["run"] == 'chatops ci sync --changed-since "$BASE" --json > sync-result.json'
    assert "${{" not in run["run"]  # values reach the shell through env, never spliced in
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == "sync-result.json"
    assert upload["if"].startswith("always()")
    kube = next(s for s in steps if "KUBECONFIG" in s.get("run", ""))
    assert "::warning" in kube["run"] and "skipped" in kube["run"]


def test_the_release_workflow_builds_the_image_and_publishes_the_package() -> None:
    wf = workflow(RELEASE)
    assert wf["on"] == {"push": {"tags": ["v*.*.*"]}}
    assert wf["permissions"] == {"contents": "read"}
    jobs = wf["jobs"]
    assert jobs["image"]["permissions"] == {"contents": "read", "packages": "write"}
    assert jobs["pypi"]["permissions"] == {"contents": "read", "id-token": "write"}
    build = next(s for s in jobs["image"]["steps"] if "build-push-action" in s.get("uses", ""))
    assert build["with"]["push"] is True and build["with"]["context"] == "."
    assert any("pypi-publish" in s.get("uses", "") for s in jobs["pypi"]["steps"])
    assert all(j.get("timeout-minutes") for j in jobs.values())
    assert jobs["image"]["needs"] == jobs["pypi"]["needs"] == "check"


# -- the commit to compare with -----------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com")
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def commit(repo: Path, name: str) -> str:
    (repo / name).write_text(name)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", name)
    return git(repo, "rev-parse", "HEAD")


def base_step() -> str:
    [job] = workflow(CI_WORKFLOW)["jobs"].values()
    return str(next(s for s in job["steps"] if s.get("id") == "base")["run"])


def choose(clone: Path, before: str, *, ref: str = "main", forced: str = "false") -> tuple[str, str]:  # fmt: skip
    """Run the workflow's step as GitHub would; return (rev output, log)."""
    output = clone.parent / "github_output"
    output.write_text("")
    env = dict(os.environ, BEFORE=before, FORCED=forced, REF_NAME=ref, DEFAULT_BRANCH="main")
    env["GITHUB_OUTPUT"] = str(output)
    out = subprocess.run(
        ["bash", "-c", base_step()], cwd=clone, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    [line] = output.read_text().splitlines()
    rev = line.removeprefix("rev=")
    if rev:  # what `chatops ci sync --changed-since REV` runs must work with it
        git(clone, "diff", "--name-only", f"{rev}...HEAD")
    return rev, out.stdout + out.stderr


@pytest.fixture
def repos(tmp_path: Path) -> tuple[Path, Path]:
    """(work, origin): a working repository and the bare "GitHub" it pushes to. GitHub serves
    commits by id even when no branch points at them (the old tip after a force push)."""
    work, origin = tmp_path / "work", tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(origin, "config", "uploadpack.allowAnySHA1InWant", "true")
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "remote", "add", "origin", str(origin))
    return work, origin


def clone(origin: Path, where: Path, ref: str = "main") -> Path:
    # --no-local: through Git's transport like actions/checkout, not a copy of every object
    git(origin.parent, "clone", "-q", "--no-local", "--branch", ref, str(origin), str(where))
    return where


def test_a_normal_push_compares_with_the_commit_before_it(repos: tuple[Path, Path]) -> None:
    work, origin = repos
    first = commit(work, "a")
    git(work, "push", "-q", "origin", "main")
    commit(work, "b")
    commit(work, "c")
    git(work, "push", "-q", "origin", "main")
    rev, log = choose(clone(origin, work.parent / "ci"), first)
    assert rev == first and "the branch before this push" in log


def test_the_first_push_of_a_branch_compares_with_the_pushed_commits_parent(
    repos: tuple[Path, Path],
) -> None:
    work, origin = repos
    first = commit(work, "a")
    commit(work, "b")
    git(work, "push", "-q", "origin", "main")
    rev, log = choose(clone(origin, work.parent / "ci"), ZERO)
    assert rev == first and "parent of the pushed commit" in log


def test_the_very_first_commit_syncs_nothing_and_says_so(repos: tuple[Path, Path]) -> None:
    work, origin = repos
    commit(work, "a")
    git(work, "push", "-q", "origin", "main")
    rev, log = choose(clone(origin, work.parent / "ci"), ZERO)
    assert rev == "" and "nothing to sync" in log


def test_a_force_push_fetches_the_old_tip_by_id(repos: tuple[Path, Path]) -> None:
    work, origin = repos
    commit(work, "a")
    git(work, "push", "-q", "origin", "main")
    old_tip = commit(work, "b")
    git(work, "push", "-q", "origin", "main")
    git(work, "reset", "-q", "--hard", "HEAD^")
    commit(work, "c")
    git(work, "push", "-q", "--force", "origin", "main")
    ci = clone(origin, work.parent / "ci")
    assert subprocess.run(["git", "cat-file", "-e", old_tip], cwd=ci).returncode != 0
    rev, log = choose(ci, old_tip, forced="true")
    assert rev == old_tip and "force push" in log


def test_an_unknown_before_falls_back_to_the_parent_with_a_warning(
    repos: tuple[Path, Path],
) -> None:
    work, origin = repos
    first = commit(work, "a")
    commit(work, "b")
    git(work, "push", "-q", "origin", "main")
    rev, log = choose(clone(origin, work.parent / "ci"), "1" * 40, forced="true")
    assert rev == first and "::warning::" in log


def test_a_new_branch_compares_with_where_it_left_main(repos: tuple[Path, Path]) -> None:
    work, origin = repos
    commit(work, "a")
    fork = commit(work, "b")
    git(work, "push", "-q", "origin", "main")
    git(work, "checkout", "-q", "-b", "feature")
    commit(work, "c")
    commit(work, "d")
    git(work, "push", "-q", "origin", "feature")
    rev, log = choose(clone(origin, work.parent / "ci", "feature"), ZERO, ref="feature")
    assert rev == fork and "left main" in log


# -- the container image ------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(ins: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for item in ins:
        if item[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(item)
    return result


def test_the_dockerfile_is_multi_stage_pinned_and_runs_as_10001_with_a_data_volume() -> None:
    ins = instructions((ROOT / "Dockerfile").read_text())
    # the base image is an ARG pinned by digest, used by every stage
    arg = next(rest for word, rest in ins if word == "ARG" and rest.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:[\w.-]+@sha256:[0-9a-f]{64}", arg), arg
    build, runtime = stages(ins)
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build")
    assert runtime[0] == ("FROM", "${PYTHON_IMAGE}")
    # dependencies are installed from pyproject.toml alone, before any code is copied
    copies = [i for i, (w, _) in enumerate(build) if w == "COPY"]
    dep_install = next(i for i, (w, r) in enumerate(build) if w == "RUN" and "-r requirements.txt" in r)  # fmt: skip
    assert build[copies[0]] == ("COPY", "pyproject.toml ./")
    assert copies[0] < dep_install < copies[1]
    assert all(("COPY", f"{p} ./{p}") in build[dep_install:] for p in ("bot", "commands", "notifiers"))  # fmt: skip
    assert any(w == "RUN" and "--no-deps ." in r for w, r in build[dep_install:])
    # the runtime: /data made and owned by 10001, a VOLUME, the user 10001, OCI labels
    setup = " ".join(r for w, r in runtime if w == "RUN")
    assert "mkdir /data" in setup and "chown 10001:10001 /data" in setup
    assert ("VOLUME", '["/data"]') in runtime
    assert ("USER", "10001:10001") in runtime
    labels = " ".join(r for w, r in runtime if w == "LABEL")
    for key in ("title", "description", "source", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert ("COPY", "--from=build /venv /venv") in runtime
    assert ("ENTRYPOINT", '["chatops"]') in runtime and ("CMD", '["serve"]') in runtime
    # the port matches deploy/wiring: where the Service sends and CHATOPS_LISTEN binds
    wiring = yaml.safe_load((ROOT / "deploy/wiring/wiring.yaml").read_text())["data"]
    assert ("EXPOSE", str(wiring["containerPort"])) in runtime
    env = " ".join(r for w, r in runtime if w == "ENV")
    assert f"CHATOPS_LISTEN=0.0.0.0:{wiring['containerPort']}" in env
    assert "CHATOPS_STATE_DB=/data/chatops.db" in env
    # the version label's default is the package version
    assert ("ARG", f"VERSION={VERSION}") in runtime


def test_the_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out first ...
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        src
        for word, rest in instructions((ROOT / "Dockerfile").read_text())
        if word == "COPY" and not rest.startswith("--from")
        for src in rest.split()[:-1]
    }
    assert copied == allowed == {"pyproject.toml", "README.md", "bot", "commands", "notifiers"}
    assert "**/__pycache__" in lines
