"""/rollback end to end: revert through the fake GitHub (a real bare repository), then Argo CD
(the fake) deploys it by auto-sync or by our sync, then the post-sync verification."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from commands import errors
from commands.context import Caller, Services
from commands.githost.github.host import GitHubHost
from commands.results import Status
from commands.rollback import rollback, rollback_chat, rollback_cli
from commands.sync import SyncOptions
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.github_api import FakeGitHub
from tests.fakes.gitrepo import Workspace

VALUES = "apps/payments/values.yaml"
FAST = SyncOptions(timeout=10, hooks=False)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path)
    w.commit("Initial layout", {VALUES: "replicas: 2\nimage: pay:1.0\n", "README.md": "x\n"})
    return w


@pytest.fixture
def github(ws: Workspace) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(ws.served).start()
    yield fake
    fake.stop()


@pytest.fixture
def bad_commit(ws: Workspace) -> str:
    sha = ws.commit(
        "Bump payments to 1.1", {VALUES: "replicas: 2\nimage: pay:1.1\n"}, author="Bob <b@x.io>"
    )
    ws.commit("Docs only", {"README.md": "y\n"})  # later commit not touching the app
    return sha


def with_git(svc: Services, github: FakeGitHub) -> Services:
    svc.git = GitHubHost(github.url, "good-token", "acme/deploy", "main")
    return svc


async def test_rollback_with_autosync(
    argo: FakeArgoCD, github: FakeGitHub, ws: Workspace, bad_commit: str, svc: Services
):
    argo.add_app(make_app("payments", revision=ws.tip()))
    with_git(svc, github)
    parent_tree = ws.tree(f"{bad_commit}^")
    argo.track_git("payments", ws.tip)  # refreshes read the fake GitHub's repository
    ctl = argo.auto_sync_when_head_moves("payments", ws.tip)

    result = await rollback(svc, "payments", opts=FAST, caller=Caller("alice", "slack"))
    ctl.join(10)

    assert result.status is Status.CHANGED, result
    new_head = ws.tip()
    assert result.summary == (
        f"Rolled back payments: reverted {bad_commit[:7]}, now synced to {new_head[:7]} and healthy."
    )
    # Git: the values file is back, the later docs commit is kept; git's own message + trailer
    assert ws.read(new_head, VALUES) == b"replicas: 2\nimage: pay:1.0\n"
    assert ws.read(new_head, "README.md") == b"y\n"
    assert ws.tree(new_head) == ws.expected_revert(bad_commit, at=f"{new_head}^")
    assert parent_tree != ws.tree(new_head)  # the docs change survived
    message = ws.message(new_head)
    assert message.startswith('Revert "Bump payments to 1.1"\n\nThis reverts commit ')
    assert "Requested-by: alice via slack" in message
    # Argo CD: auto-sync took it, we did not post a sync of our own
    assert not [r for r in argo.requests if r.method == "POST" and r.path.endswith("/sync")]
    assert argo.app("payments")["status"]["sync"]["revision"] == new_head


async def test_rollback_without_autosync_syncs_itself(
    argo: FakeArgoCD, github: FakeGitHub, ws: Workspace, bad_commit: str, svc: Services
):
    argo.add_app(make_app("payments", revision=ws.tip(), automated=False))
    with_git(svc, github)
    argo.track_git("payments", ws.tip)  # no auto-sync: the rollback syncs itself
    result = await rollback(svc, "payments", opts=FAST)
    assert result.status is Status.CHANGED, result
    syncs = [r for r in argo.requests if r.method == "POST" and r.path.endswith("/sync")]
    assert len(syncs) == 1
    assert argo.app("payments")["status"]["sync"]["revision"] == ws.tip()


async def test_chat_preview_pins_the_full_sha(
    argo: FakeArgoCD, github: FakeGitHub, ws: Workspace, bad_commit: str, svc: Services
):
    argo.add_app(make_app("payments", revision=ws.tip()))
    with_git(svc, github)
    head = ws.tip()
    preview = await rollback_chat(svc, "payments")
    assert preview.status is Status.NOOP
    facts = dict((f.name, f.value) for f in preview.facts)
    assert facts["commit"] == bad_commit[:7]
    assert facts["subject"] == "Bump payments to 1.1"
    assert facts["author"] == "Bob"
    assert facts["files"] == VALUES
    (button,) = preview.actions
    assert button.command == f"rollback payments {bad_commit}"
    assert button.confirm and bad_commit[:7] in button.confirm
    assert ws.tip() == head  # nothing written by a preview


async def test_cli_declined_writes_nothing(
    argo: FakeArgoCD, github: FakeGitHub, ws: Workspace, bad_commit: str, svc: Services
):
    argo.add_app(make_app("payments", revision=ws.tip()))
    with_git(svc, github)
    head = ws.tip()
    asked: list[str] = []

    def no(question: str) -> bool:
        asked.append(question)
        return False

    result = await rollback_cli(
        svc,
        "payments",
        commit=None,
        sync_after=True,
        assume_yes=False,
        interactive=True,
        ask=no,
        caller=Caller(),
    )
    assert result.status is Status.NOOP and "cancelled" in result.summary
    assert "Bump payments to 1.1" in asked[0] and "Bob" in asked[0]
    assert ws.tip() == head
    with pytest.raises(errors.BadInput, match="no terminal"):
        await rollback_cli(
            svc,
            "payments",
            commit=None,
            sync_after=True,
            assume_yes=False,
            interactive=False,
            ask=no,
            caller=Caller(),
        )


async def test_conflict_writes_nothing(
    argo: FakeArgoCD, github: FakeGitHub, ws: Workspace, bad_commit: str, svc: Services
):
    ws.commit("Bump payments to 1.2", {VALUES: "replicas: 2\nimage: pay:1.2\n"})
    argo.add_app(make_app("payments", revision=ws.tip()))
    with_git(svc, github)
    head = ws.tip()
    result = await rollback(svc, "payments", commit=bad_commit, opts=FAST)
    assert result.status is Status.FAILED
    assert "conflicts" in result.summary and VALUES in result.summary
    assert ("hint", f"Nothing was written. Revert it by hand: git revert {bad_commit[:7]}") in [
        (f.name, f.value) for f in result.facts
    ]
    assert ws.tip() == head


async def test_not_configured(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments"))
    result = await rollback_chat(svc, "payments")
    assert result.status is Status.FAILED
    assert result.summary == "Rollback is not configured: no Git host."
