"""/rollback's revert through GitLab's revert endpoint, against a fake GitLab over a real bare
repository; results are compared with what ``git revert`` makes on a clone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from commands import errors
from commands.githost import port as githost
from commands.githost.gitlab import GitLabHost
from tests.fakes.gitlab_api import DEVELOPER, MAINTAINER, FakeGitLab, Token
from tests.fakes.gitrepo import Workspace
from tests.revert_fixtures import DB, DEPLOYMENT, WEB, edit

VALUES = "replicas: 1\nimage: postgres:15\n"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    work = Workspace(tmp_path)
    work.commit("Initial layout", {WEB: DEPLOYMENT, DB: VALUES})
    return work


@pytest.fixture
def gitlab(ws: Workspace) -> Iterator[FakeGitLab]:
    fake = FakeGitLab(
        ws.served,
        tokens={
            "good-token": Token(MAINTAINER),
            "developer": Token(DEVELOPER),
            "reporter": Token(20),
            "read-api": Token(MAINTAINER, scopes=("read_api",)),
            "repo-only": Token(MAINTAINER, scopes=("read_repository", "write_repository")),
        },
    ).start()
    yield fake
    fake.stop()


def _host(gitlab: FakeGitLab, client: httpx.AsyncClient, key: str = "good-token") -> GitLabHost:
    return GitLabHost(gitlab.url, key, "acme/deploy", "main", client=client)


def _reverts(gitlab: FakeGitLab) -> list[dict[str, object]]:
    return [r.body for r in gitlab.calls("POST", "/revert")]


async def test_reverting_the_tip_and_an_older_commit_match_git(
    ws: Workspace, gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    older = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v2\n")})
    ws.commit("Scale db", {DB: edit(VALUES, "replicas: 1", "replicas: 3")})
    host = _host(gitlab, client)

    expected = ws.expected_revert(older)
    outcome = await host.revert(older, requested_by="alice via Slack #ops")

    tip = ws.tip()
    assert ws.tree(tip) == expected
    assert outcome.kind == "committed"
    assert outcome.sha == tip
    assert outcome.url == f"https://gitlab.test/acme/deploy/-/commit/{tip}"
    assert outcome.message == f'Revert "Bump web"\n\nThis reverts commit {older}'
    assert _reverts(gitlab) == [{"branch": "main"}]
    assert gitlab.calls("POST")[0].path == f"projects/acme/deploy/repository/commits/{older}/revert"

    tip_before = ws.tip()
    expected_tip = ws.expected_revert(tip_before)
    await host.revert(tip_before, requested_by="alice")
    assert ws.tree(ws.tip()) == expected_tip


async def test_reverting_a_merge_commit_matches_git_minus_m_1(
    ws: Workspace, gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    ws.checkout("feature", create=True)
    ws.commit("Scale the database", {DB: edit(VALUES, "replicas: 1", "replicas: 2")})
    ws.checkout("main")
    first_parent = ws.commit("Web v2", {WEB: edit(DEPLOYMENT, "line 9\n", "line 9 v2\n")})
    merged = ws.merge("feature", "Merge branch 'feature'")
    ws.commit("Web v3", {WEB: edit(DEPLOYMENT, "line 1\n", "line 1 v3\n")})
    expected = ws.expected_revert(merged)

    info = await _host(gitlab, client).commit(merged)
    await _host(gitlab, client).revert(merged, requested_by="carol")

    assert info.parents[0] == first_parent
    assert info.is_merge
    assert ws.tree(ws.tip()) == expected


async def test_preview_uses_the_dry_run_and_writes_nothing(
    ws: Workspace, gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    bad = ws.commit(
        "Bump web",
        {WEB: edit(DEPLOYMENT, "line 4\n", "line 4 v2\n"), "apps/web/extra.yaml": "x\n"},
        author="Dana Ops <dana@example.com>",
    )
    host = _host(gitlab, client)

    info = await host.preview(bad[:8])

    assert (info.sha, info.short_sha, info.author, info.subject) == (
        bad,
        bad[:7],
        "Dana Ops",
        "Bump web",
    )
    assert info.files == (WEB, "apps/web/extra.yaml")
    assert _reverts(gitlab) == [{"branch": "main", "dry_run": True}]
    assert ws.tip() == bad


async def test_conflict_names_the_paths_changed_since(
    ws: Workspace, gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    bad = ws.commit(
        "Bump web and db",
        {WEB: edit(DEPLOYMENT, "line 4\n", "line 4 v2\n"), DB: VALUES + "x: 1\n"},
    )
    ws.commit("Next line", {WEB: edit(DEPLOYMENT, "line 4\n", "line 4 v2\nline 4b\n")})
    assert ws.expected_revert(bad) is None
    before = ws.tip()
    host = _host(gitlab, client)

    with pytest.raises(errors.Conflict) as in_preview:
        await host.preview(bad)
    with pytest.raises(errors.Conflict) as caught:
        await host.revert(bad, requested_by="alice")

    assert not isinstance(caught.value, githost.NothingToRevert)
    assert (
        caught.value.user_message == f"Reverting {bad[:7]} conflicts with later changes in: {WEB}."
    )
    assert caught.value.hint == f"Nothing was written. Revert it by hand: git revert {bad[:7]}"
    assert in_preview.value.user_message == caught.value.user_message
    assert ws.tip() == before


async def test_already_reverted_is_reported_as_empty(
    ws: Workspace, gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 4\n", "line 4 v2\n")})
    host = _host(gitlab, client)
    await host.revert(bad, requested_by="alice")
    reverted = ws.tip()

    with pytest.raises(githost.NothingToRevert) as caught:
        await host.revert(bad, requested_by="alice")

    assert "would change nothing on main" in caught.value.user_message
    assert ws.tip() == reverted


async def test_protected_branch_opens_a_merge_request(
    ws: Workspace, gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 4\n", "line 4 v2\n")})
    expected = ws.expected_revert(bad)
    gitlab.protected["main"] = MAINTAINER
    host = _host(gitlab, client, key="developer")

    outcome = await host.revert(bad, requested_by="alice via Slack #ops")

    branch = f"rollback/{bad[:7]}"
    assert outcome.kind == "pull_request"
    assert outcome.branch == branch
    assert outcome.url == "https://gitlab.test/acme/deploy/-/merge_requests/1"
    assert ws.tip() == bad
    assert ws.tip(branch) == outcome.sha
    assert ws.tree(outcome.sha) == expected
    (mr,) = gitlab.merge_requests
    assert (mr["source_branch"], mr["target_branch"]) == (branch, "main")
    assert "alice via Slack #ops" in str(mr["description"])

    again = await host.revert(bad, requested_by="alice")  # branch and MR exist already
    assert again.url == outcome.url
    assert len(gitlab.merge_requests) == 1


async def test_missing_permissions_are_named(
    ws: Workspace, gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 4\n", "line 4 v2\n")})

    with pytest.raises(errors.Denied) as scope:
        await _host(gitlab, client, key="read-api").revert(bad, requested_by="alice")
    assert scope.value.user_message == "The Git token lacks the api scope on acme/deploy."

    with pytest.raises(errors.Denied) as role:
        await _host(gitlab, client, key="reporter").revert(bad, requested_by="alice")
    assert role.value.user_message == "The Git token lacks the Developer role on acme/deploy."
    assert ws.tip() == bad

    assert await _host(gitlab, client).check_access() == []
    assert await _host(gitlab, client, key="reporter").check_access() == ["Developer role"]
    assert await _host(gitlab, client, key="read-api").check_access() == ["api scope"]


async def test_scopes_are_enforced_on_reads_too(
    ws: Workspace, gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    bad = ws.commit("Bump web", {WEB: edit(DEPLOYMENT, "line 4\n", "line 4 v2\n")})
    host = _host(gitlab, client, key="repo-only")  # Git over HTTP only: no API access at all
    with pytest.raises(errors.Denied) as scope:
        await host.commit(bad)
    assert (
        scope.value.user_message == "The Git token lacks the api or read_api scope on acme/deploy."
    )
    [read] = gitlab.calls("GET")
    assert not any(r.method != "GET" for r in gitlab.requests)
    assert read.path.startswith("projects/acme/deploy/repository/commits/")
    assert await host.check_access() == ["api scope"]


async def test_unknown_commit_and_commit_off_the_branch(
    ws: Workspace, gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    ws.checkout("experiment", create=True)
    stray = ws.commit("Experiment", {"x.txt": "x\n"})
    ws.checkout("main")
    host = _host(gitlab, client)

    with pytest.raises(errors.NotFound) as unknown:
        await host.commit("deadbeefcafe")
    assert unknown.value.user_message == "Commit deadbee not found in acme/deploy."
    with pytest.raises(errors.BadInput) as off:
        await host.revert(stray, requested_by="alice")
    assert off.value.user_message == f"Commit {stray[:7]} is not on branch main of acme/deploy."
    assert _reverts(gitlab) == []


async def test_finds_the_commit_that_brought_the_synced_revision(
    ws: Workspace, gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    web_change = ws.commit("Web v2", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v2\n")})
    synced = ws.commit("Database tweak", {DB: VALUES + "x: 1\n"})
    ws.commit("Web v3 (not synced)", {WEB: edit(DEPLOYMENT, "line 2\n", "line 2 v3\n")})
    host = _host(gitlab, client)

    assert (await host.find_commit_for_path("apps/web/", synced)).sha == web_change
    assert (await host.find_commit_for_path("./apps/db", synced)).sha == synced
    with pytest.raises(errors.NotFound):
        await host.find_commit_for_path("apps/none", synced)


async def test_bad_token_server_errors_and_unreachable(
    ws: Workspace, gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    tip = ws.tip()
    with pytest.raises(errors.Unauthorized) as bad:
        await _host(gitlab, client, key="glpat-secret").commit(tip)
    assert "glpat-secret" not in str(bad.value)

    gitlab.fail("GET", f"commits/{tip}", 503)
    with pytest.raises(errors.Unavailable):
        await _host(gitlab, client).commit(tip)
    assert (await _host(gitlab, client).commit(tip)).sha == tip

    with gitlab.server.paused(), pytest.raises(errors.Unavailable) as down:
        await _host(gitlab, client).commit(tip)
    assert "GitLab at " in down.value.user_message and "is unreachable" in down.value.user_message
    assert "good-token" not in repr(_host(gitlab, client))
