"""/rollback's revert through GitHub's Git Data API, against a fake GitHub over a real bare
repository. Each revert's tree is compared with what ``git revert`` makes on a clone."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from commands import errors
from commands.githost import port as githost
from commands.githost.github.host import GitHubHost
from tests.fakes.github_api import FakeGitHub, Grant
from tests.fakes.gitrepo import Workspace
from tests.revert_fixtures import DB, DEPLOYMENT, WEB, edit

VALUES = "replicas: 1\nimage: postgres:15\nstorage: 10Gi\n"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    work = Workspace(tmp_path)
    work.commit("Initial layout", {WEB: DEPLOYMENT, DB: VALUES, "README.md": "deploy\n"})
    return work


@pytest.fixture
def github(ws: Workspace) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(
        ws.served,
        tokens={
            "good-token": Grant(),
            "read-only": Grant(contents="read", pull_requests=None),
            "no-pulls": Grant(contents="write", pull_requests=None),
        },
    ).start()
    yield fake
    fake.stop()


def _host(github: FakeGitHub, client: httpx.AsyncClient, key: str = "good-token") -> GitHubHost:
    return GitHubHost(github.url, key, "acme/deploy", "main", client=client)


def _writes(github: FakeGitHub) -> list[str]:
    return [f"{r.method} {r.path}" for r in github.requests if r.method != "GET"]


# -- the three shapes of revert, each equal to git's --------------------------------------


async def test_reverting_the_tip_restores_the_parent_tree(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    bad = ws.commit(
        "Bump web to v2",
        {WEB: edit(DEPLOYMENT, "line 3\n", "line 3 v2\n"), "apps/web/extra.yaml": "x: 1\n"},
    )
    expected = ws.expected_revert(bad)

    outcome = await _host(github, client).revert(bad, requested_by="alice via Slack #ops")

    tip = ws.tip()
    assert ws.tree(tip) == expected
    assert ws.parents(tip) == [bad]
    assert outcome.kind == "committed"
    assert outcome.sha == tip
    assert outcome.branch == "main"
    assert outcome.url == f"https://github.test/acme/deploy/commit/{tip}"
    assert outcome.reverted.sha == bad
    assert ws.message(tip) == (
        f'Revert "Bump web to v2"\n\nThis reverts commit {bad}.\n\n'
        "Requested-by: alice via Slack #ops"
    )
    assert not github.calls("POST", "/git/trees")  # the parent's tree is reused as is
    patch = github.calls("PATCH", "/git/refs/heads/main")
    assert [p.body for p in patch] == [{"sha": tip, "force": False}]


async def test_reverting_an_older_commit_merges_like_git(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    bad = ws.commit(
        "Bump web, add config, drop README",
        {
            WEB: edit(DEPLOYMENT, "line 3\n", "line 3 v2\n"),
            "apps/web/config.yaml": "debug: true\n",
            "README.md": None,
        },
    )
    later = edit(edit(DEPLOYMENT, "line 3\n", "line 3 v2\n"), "line 8\n", "line 8 tuned\n")
    ws.commit("Tune web", {WEB: later, DB: edit(VALUES, "replicas: 1", "replicas: 3")})
    expected = ws.expected_revert(bad)
    assert expected is not None

    outcome = await _host(github, client).revert(bad, requested_by="bob via Discord #deploys")

    tip = ws.tip()
    assert ws.tree(tip) == expected
    assert outcome.sha == tip
    assert ws.read(tip, WEB) == edit(DEPLOYMENT, "line 8\n", "line 8 tuned\n").encode()
    assert ws.read(tip, "README.md") == b"deploy\n"
    assert len(github.calls("POST", "/git/blobs")) == 1  # only the merged file is uploaded


@pytest.mark.parametrize("at_tip", [False, True], ids=["older", "tip"])
async def test_reverting_a_merge_commit_uses_its_first_parent(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient, at_tip: bool
) -> None:
    ws.checkout("feature", create=True)
    ws.commit("Scale the database", {DB: edit(VALUES, "replicas: 1", "replicas: 2")})
    ws.commit("Bigger disk", {DB: edit(VALUES, "10Gi", "50Gi")})
    ws.checkout("main")
    mainline = ws.commit("Readme tweak", {"README.md": "deploy things\n"})
    merged = ws.merge("feature", "Merge branch 'feature'")
    if not at_tip:
        ws.commit("Web v3", {WEB: edit(DEPLOYMENT, "line 1\n", "line 1 v3\n")})
    expected = ws.expected_revert(merged)
    assert expected is not None

    host = _host(github, client)
    info = await host.commit(merged)
    outcome = await host.revert(merged, requested_by="carol via Slack #ops")

    assert info.is_merge
    assert info.parents[0] == mainline
    tip = ws.tip()
    assert ws.tree(tip) == expected
    assert ws.read(tip, DB) == VALUES.encode()
    assert ws.message(tip).startswith(
        f"Revert \"Merge branch 'feature'\"\n\nThis reverts commit {merged}, reversing\n"
        f"changes made to {mainline}.\n"
    )
    assert outcome.kind == "committed"


async def test_reverting_a_commit_that_added_a_directory_removes_it(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    bad = ws.commit(
        "Add the cache app",
        {"apps/cache/deploy.yaml": "kind: Deployment\n", "apps/cache/conf/redis.conf": "x\n"},
    )
    ws.commit("Web v2", {WEB: edit(DEPLOYMENT, "line 1\n", "line 1 v2\n")})
    expected = ws.expected_revert(bad)

    await _host(github, client).revert(bad, requested_by="alice")

    assert ws.tree(ws.tip()) == expected
    (tree_request,) = github.calls("POST", "/git/trees")
    assert sorted(e["path"] for e in tree_request.body["tree"]) == [
        "apps/cache/conf/redis.conf",
        "apps/cache/deploy.yaml",
    ]
    assert all(e["sha"] is None and e["type"] == "blob" for e in tree_request.body["tree"])


async def test_binary_files_are_restored_or_reported_like_git(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    logo, cert = "apps/web/logo.png", "apps/web/ca.der"
    ws.commit("Add binaries", {logo: b"\x89PNG\0v1", cert: b"\0\1cert-v1"})
    bad = ws.commit("New logo and cert", {logo: b"\x89PNG\0v2", cert: b"\0\1cert-v2"})
    ws.commit("Unrelated", {"README.md": "more\n"})
    host = _host(github, client)
    expected = ws.expected_revert(bad)

    await host.revert(bad, requested_by="alice")
    assert ws.tree(ws.tip()) == expected
    assert ws.read(ws.tip(), logo) == b"\x89PNG\0v1"

    second_bad = ws.commit("Cert v4", {cert: b"\0\1cert-v4"})
    ws.commit("Cert v5", {cert: b"\0\1cert-v5"})
    assert ws.expected_revert(second_bad) is None
    with pytest.raises(errors.Conflict) as caught:
        await host.revert(second_bad, requested_by="alice")
    assert cert in caught.value.user_message


async def test_github_enterprise_base_url(ws: Workspace, client: httpx.AsyncClient) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v2\n")})
    enterprise = FakeGitHub(ws.served, prefix="/api/v3").start()
    try:
        host = GitHubHost(
            f"{enterprise.url}/api/v3/", "good-token", "acme/deploy", "main", client=client
        )
        outcome = await host.revert(bad, requested_by="alice")
    finally:
        enterprise.stop()
    assert ws.parents(ws.tip()) == [bad]
    assert outcome.sha == ws.tip()
    assert all(r.path.startswith("/api/v3/repos/acme/deploy") for r in enterprise.requests)


# -- when it cannot -----------------------------------------------------------------------


async def test_conflict_writes_nothing_and_names_the_paths(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 4\n", "line 4 v2\n")})
    ws.commit("Touch the next line", {WEB: edit(DEPLOYMENT, "line 4\n", "line 4 v2\nline 4b\n")})
    assert ws.expected_revert(bad) is None  # git agrees: it conflicts
    before = ws.tip()

    with pytest.raises(errors.Conflict) as caught:
        await _host(github, client).revert(bad, requested_by="alice")

    assert not isinstance(caught.value, githost.NothingToRevert)
    short = bad[:7]
    assert caught.value.user_message == (
        f"Reverting {short} conflicts with later changes in: {WEB}."
    )
    assert caught.value.hint is not None
    assert f"git revert {short}" in caught.value.hint
    assert ws.tip() == before
    assert _writes(github) == []


async def test_preview_shows_the_commit_and_detects_a_conflict_without_writing(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    bad = ws.commit(
        "Bump web",
        {WEB: edit(DEPLOYMENT, "line 4\n", "line 4 v2\n"), DB: VALUES + "x: 1\n"},
        author="Dana Ops <dana@example.com>",
    )
    host = _host(github, client)

    info = await host.preview(bad[:10])

    assert info.sha == bad
    assert info.short_sha == bad[:7]
    assert info.author == "Dana Ops"
    assert info.subject == "Bump web"
    assert info.files == (DB, WEB)
    assert info.authored_at.tzinfo is not None
    later = info.authored_at + timedelta(days=1, hours=2, minutes=5)
    assert githost.age(info.authored_at, later) == "1d2h ago"
    ws.commit("Touch the next line", {WEB: edit(DEPLOYMENT, "line 4\n", "line 4 v3\n")})
    with pytest.raises(errors.Conflict):
        await host.preview(bad)
    assert _writes(github) == []


async def test_already_reverted_says_so_and_writes_nothing(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 4\n", "line 4 v2\n")})
    ws.commit("Unrelated", {"README.md": "more\n"})
    host = _host(github, client)
    await host.revert(bad, requested_by="alice")
    after_first = ws.tip()
    writes = len(_writes(github))

    with pytest.raises(githost.NothingToRevert) as caught:
        await host.revert(bad, requested_by="alice")

    assert "would change nothing" in caught.value.user_message
    assert ws.tip() == after_first
    assert len(_writes(github)) == writes


async def test_an_empty_commit_at_the_tip_has_nothing_to_revert(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    empty = ws.commit("Trigger CI", {})
    with pytest.raises(githost.NothingToRevert):
        await _host(github, client).revert(empty, requested_by="alice")
    assert ws.tip() == empty
    assert _writes(github) == []


async def test_a_commit_landing_between_read_and_update_is_redone(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v2\n")})
    landed: list[str] = []

    def someone_pushes(branch: str) -> None:
        if not landed:
            landed.append(ws.commit("Concurrent change", {DB: VALUES + "extra: true\n"}))

    github.before_ref_update = someone_pushes

    outcome = await _host(github, client).revert(bad, requested_by="alice")

    tip = ws.tip()
    assert ws.parents(tip) == landed
    assert ws.tree(tip) == ws.expected_revert(bad, at=landed[0])
    assert outcome.sha == tip
    patches = github.calls("PATCH", "/git/refs/heads/main")
    assert len(patches) == 2
    assert patches[0].body["sha"] != patches[1].body["sha"]


async def test_a_branch_that_keeps_moving_gives_up_after_three_attempts(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v2\n")})
    landed: list[str] = []
    github.before_ref_update = lambda branch: landed.append(
        ws.commit(f"Busy {len(landed)}", {"busy.txt": f"{len(landed)}\n"})
    )

    with pytest.raises(errors.Conflict) as caught:
        await _host(github, client).revert(bad, requested_by="alice")

    assert "kept moving" in caught.value.user_message
    assert len(github.calls("PATCH", "/git/refs/heads/main")) == 3
    assert ws.tip() == landed[-1]  # no revert on the branch


async def test_protected_branch_opens_a_pull_request(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v2\n")})
    ws.commit("Unrelated", {"README.md": "more\n"})
    expected = ws.expected_revert(bad)
    github.protected.add("main")
    before = ws.tip()

    outcome = await _host(github, client).revert(bad, requested_by="alice via Slack #ops")

    branch = f"rollback/{bad[:7]}"
    assert outcome.kind == "pull_request"
    assert outcome.branch == branch
    assert outcome.url == "https://github.test/acme/deploy/pull/1"
    assert ws.tip() == before
    assert ws.tip(branch) == outcome.sha
    assert ws.tree(outcome.sha) == expected
    (pr,) = github.pulls
    assert pr["head"]["ref"] == branch
    assert pr["base"]["ref"] == "main"
    assert pr["title"] == 'Revert "Bump web"'
    assert "alice via Slack #ops" in pr["body"]


async def test_protected_branch_again_reuses_the_branch_and_pull_request(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v2\n")})
    github.protected.add("main")
    host = _host(github, client)
    first = await host.revert(bad, requested_by="alice")
    ws.commit("Unrelated", {"README.md": "more\n"})  # pushed by an admin meanwhile

    second = await host.revert(bad, requested_by="alice")

    assert second.url == first.url
    assert len(github.pulls) == 1
    assert ws.tip(second.branch) == second.sha
    assert ws.parents(second.sha) == [ws.tip()]


async def test_missing_contents_write_is_named(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v2\n")})
    host = _host(github, client, key="read-only")

    with pytest.raises(errors.Denied) as caught:
        await host.revert(bad, requested_by="alice")

    assert caught.value.user_message == "The Git token lacks Contents: write on acme/deploy."
    assert ws.tip() == bad
    assert await host.check_access() == ["Contents: write"]
    assert await _host(github, client).check_access() == []


async def test_missing_pull_requests_write_is_named(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v2\n")})
    github.protected.add("main")
    with pytest.raises(errors.Denied) as caught:
        await _host(github, client, key="no-pulls").revert(bad, requested_by="alice")
    assert caught.value.user_message == "The Git token lacks Pull requests: write on acme/deploy."
    assert ws.tip() == bad


# -- finding the commit -------------------------------------------------------------------


async def test_finds_the_commit_that_brought_the_synced_revision(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    web_change = ws.commit("Web v2", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v2\n")})
    synced = ws.commit("Database tweak", {DB: VALUES + "x: 1\n"})
    ws.commit("Web v3 (not synced yet)", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v3\n")})
    host = _host(github, client)

    found = await host.find_commit_for_path("./apps/web/", synced)
    assert found.sha == web_change
    assert found.files == (WEB,)
    assert (await host.find_commit_for_path("apps/db", synced)).sha == synced
    with pytest.raises(errors.NotFound):
        await host.find_commit_for_path("apps/nothing-here", synced)


async def test_unknown_commit_and_commit_off_the_branch(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    ws.checkout("experiment", create=True)
    stray = ws.commit("Experiment", {"x.txt": "x\n"})
    ws.checkout("main")
    host = _host(github, client)

    with pytest.raises(errors.NotFound) as unknown:
        await host.commit("deadbeefdeadbeef")
    assert unknown.value.user_message == "Commit deadbee not found in acme/deploy."
    with pytest.raises(errors.BadInput) as off_branch:
        await host.revert(stray, requested_by="alice")
    assert (
        off_branch.value.user_message == f"Commit {stray[:7]} is not on branch main of acme/deploy."
    )
    with pytest.raises(errors.BadInput):
        await host.find_commit_for_path("apps/web", stray)
    with pytest.raises(errors.BadInput):
        await host.commit("main")  # a branch name is not a commit
    assert _writes(github) == []


# -- transport and credentials ------------------------------------------------------------


async def test_bad_token_server_errors_and_unreachable(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    tip = ws.tip()
    with pytest.raises(errors.Unauthorized) as bad_token:
        await _host(github, client, key="ghp_secret_value").commit(tip)
    assert "ghp_secret_value" not in str(bad_token.value)

    github.fail("GET", f"/commits/{tip}", 502)
    with pytest.raises(errors.Unavailable):
        await _host(github, client).commit(tip)
    assert (await _host(github, client).commit(tip)).sha == tip  # the failure was one-off

    with github.server.paused(), pytest.raises(errors.Unavailable) as down:
        await _host(github, client).commit(tip)
    assert "GitHub at " in down.value.user_message and "is unreachable" in down.value.user_message
    assert [r.auth for r in github.calls("GET", f"/commits/{tip}")] == [
        "Bearer ghp_secret_value",
        "Bearer good-token",  # the injected 502
        "Bearer good-token",
    ]
    assert "good-token" not in repr(_host(github, client))


async def test_a_token_provider_is_asked_per_request(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    asked: list[int] = []

    async def installation_token() -> str:
        asked.append(1)
        return "good-token"

    host = GitHubHost(github.url, installation_token, "acme/deploy", "main", client=client)
    assert (await host.commit(ws.tip())).sha == ws.tip()
    assert len(asked) == len(github.requests) == 2


# -- generated histories ------------------------------------------------------------------


def _random_history(ws: Workspace, rnd: random.Random) -> list[str]:
    """Commits that edit, add and delete files with distinct lines (so every diff is
    unambiguous and git's histogram diff and ours must agree)."""
    files = {f"apps/a{i}/values.yaml": [f"base {i}.{j}\n" for j in range(8)] for i in range(3)}
    ws.commit("Initial", {path: "".join(lines) for path, lines in files.items()})
    fresh = itertools.count()
    shas = []
    for n in range(6):
        changes: dict[str, str | bytes | None] = {}
        action = rnd.random()
        if action < 0.1 and len(files) > 1:
            gone = rnd.choice(sorted(files))
            del files[gone]
            changes[gone] = None
        elif action < 0.2:
            path = f"apps/new{next(fresh)}/values.yaml"
            files[path] = [f"new {path} {j}\n" for j in range(3)]
            changes[path] = "".join(files[path])
        for path in rnd.sample(sorted(files), k=min(len(files), rnd.randint(1, 2))):
            lines = files[path]
            for _ in range(rnd.randint(1, 2)):
                pos = rnd.randrange(len(lines) + 1)
                op = rnd.choice("idr")
                if op == "i" or pos == len(lines):
                    lines.insert(pos, f"added {next(fresh)}\n")
                elif op == "d" and len(lines) > 1:
                    del lines[pos]
                else:
                    lines[pos] = f"edited {next(fresh)}\n"
            changes[path] = "".join(lines)
        shas.append(ws.commit(f"Change {n}", changes))
    return shas


@pytest.mark.parametrize("seed", range(8))  # 4 clean reverts, 4 conflicts
async def test_generated_histories_revert_exactly_like_git(
    tmp_path: Path, client: httpx.AsyncClient, seed: int
) -> None:
    rnd = random.Random(seed)
    ws = Workspace(tmp_path)
    shas = _random_history(ws, rnd)
    target = rnd.choice(shas[:-1])
    expected = ws.expected_revert(target)
    before = ws.tip()
    fake = FakeGitHub(ws.served).start()
    try:
        host = GitHubHost(fake.url, "good-token", "acme/deploy", "main", client=client)
        if expected is None:
            with pytest.raises(errors.Conflict):
                await host.revert(target, requested_by="alice")
            assert ws.tip() == before
        else:
            await host.revert(target, requested_by="alice")
            assert ws.tree(ws.tip()) == expected
    finally:
        fake.stop()


# -- rate limits --------------------------------------------------------------------------


async def test_primary_rate_limit_says_when_it_resets(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v2\n")})
    host = _host(github, client)
    await host.revert(bad, requested_by="alice")  # answers carry the rate-limit headers
    seen = github.calls("GET")[-1]
    assert seen.path.startswith("/repos/acme/deploy")
    reset = github.exhaust_rate_limit("good-token", reset_in=600)
    with pytest.raises(errors.Unavailable) as caught:
        await host.revert(ws.tip(), requested_by="alice")
    at = datetime.fromtimestamp(reset, UTC).strftime("%H:%M")
    assert caught.value.user_message == "GitHub's API rate limit is exhausted for the Git token."
    assert caught.value.hint is not None
    assert caught.value.hint.startswith(f"It resets at {at} UTC: retry in ")
    assert caught.value.hint.endswith(("10m.", "9m59s.", "9m58s."))


@pytest.mark.parametrize("status", [403, 429])
async def test_secondary_rate_limit_says_how_long_to_wait(
    ws: Workspace, github: FakeGitHub, client: httpx.AsyncClient, status: int
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v2\n")})
    github.secondary_limit_next(retry_after=90, status=status)
    with pytest.raises(errors.Unavailable) as caught:
        await _host(github, client).revert(bad, requested_by="alice")
    # the same wording as every other rate limit (commands/http_errors.py), with GitHub's wait
    assert caught.value.user_message == "GitHub's API rate limit is exhausted for the Git token."
    assert caught.value.hint == "Retry in 1m30s."
    assert ws.tip() == bad
