"""The `chatops` CLI as a user runs it: a subprocess against the fake Argo CD and Kubernetes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app, sha
from tests.fakes.kube_api import FakeKube

BIN = str(Path(sys.executable).parent / "chatops")
NONROOT = {"runAsUser": 1001, "runAsNonRoot": True}


def env_for(argo: FakeArgoCD, kube: FakeKube | None, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATOPS_", "KUBE"))}
    env.update(
        CHATOPS_ARGOCD_URL=argo.url,
        CHATOPS_ARGOCD_TOKEN=argo.token,
        CHATOPS_STATE_DB=str(tmp_path / "state.db"),
        CHATOPS_SYNC_TIMEOUT="20",
        HOME=str(tmp_path),  # no ~/.kube/config of the machine's
    )
    if kube is not None:
        cfg = tmp_path / "kubeconfig"
        cfg.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: fake, cluster: {{server: '{kube.url}'}}}}]\n"
            "users: [{name: u, user: {token: kube-token}}]\n"
            "contexts: [{name: c, context: {cluster: fake, user: u}}]\n"
            "current-context: c\n"
        )
        env["KUBECONFIG"] = str(cfg)
    return env


async def chatops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # run in a thread: the fakes serve from their own threads, the test loop stays free
    return await asyncio.to_thread(
        subprocess.run, [BIN, *args], capture_output=True, text=True, env=env, timeout=60
    )


async def test_sync_json_success(argo: FakeArgoCD, kube_fake: FakeKube, tmp_path: Path):
    argo.add_app(make_app("payments", sync="OutOfSync"))
    argo.set_git_head("payments", sha("payments-2"))
    kube_fake.add_statefulset(
        "prod",
        "payments-db",
        app="payments",
        replicas=1,
        containers=[{"name": "db", "image": "pg", "securityContext": NONROOT}],
    )
    p = await chatops("sync", "payments", "--json", env=env_for(argo, kube_fake, tmp_path))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["ok"] is True and out["status"] == "changed"
    assert [s["name"] for s in out["steps"]] == ["refresh", "presync", "sync", "wait", "postsync"]
    assert out["facts"]["revision"].endswith(sha("payments-2")[:7])
    # the steps went to stderr as they happened (a CI log shows them); stdout is only the JSON
    done = [line.strip() for line in p.stderr.splitlines() if line.strip().startswith("✓")]
    assert [line.split(":")[0] for line in done] == [
        "✓ refresh", "✓ presync", "✓ sync", "✓ wait", "✓ postsync"
    ]  # fmt: skip


async def test_sync_failure_exit_1_with_readable_text(argo: FakeArgoCD, tmp_path: Path):
    argo.add_app(make_app("payments"))
    argo.script("payments", "fail", message="one or more objects failed to apply")
    p = await chatops("sync", "payments", "--no-hooks", env=env_for(argo, None, tmp_path))
    assert p.returncode == 1
    assert "✗ sync payments: Sync of payments failed" in p.stdout
    assert "next: chatops sync payments; chatops rollback payments" in p.stdout
    assert "✓ refresh" in p.stderr  # progress lines go to stderr
    assert "Traceback" not in p.stderr


async def test_unknown_app_suggestion(argo: FakeArgoCD, tmp_path: Path):
    argo.add_app(make_app("payments"))
    p = await chatops("status", "paymnets", env=env_for(argo, None, tmp_path))
    assert p.returncode == 1
    assert "✗ No application 'paymnets'." in p.stderr
    assert "Did you mean 'payments'?" in p.stderr


async def test_hook_jobs_presync_then_postsync(
    kube_fake: FakeKube, argo: FakeArgoCD, tmp_path: Path
):
    kube_fake.add_statefulset(
        "prod",
        "payments-db",
        app="payments",
        replicas=2,
        containers=[{"name": "db", "image": "pg", "securityContext": NONROOT}],
    )
    env = env_for(argo, kube_fake, tmp_path)
    env.pop("CHATOPS_ARGOCD_URL")  # a hook Job with --namespace needs no Argo CD access
    env.pop("CHATOPS_ARGOCD_TOKEN")
    pre = await chatops("hook", "presync", "--app", "payments", "--namespace", "prod", env=env)
    assert pre.returncode == 0, pre.stdout + pre.stderr
    assert kube_fake.get("apps", "statefulsets", "prod", "payments-db")["spec"]["replicas"] == 0
    post = await chatops("hook", "postsync", "--app", "payments", "--namespace", "prod", env=env)
    assert post.returncode == 0, post.stdout + post.stderr
    sts = kube_fake.get("apps", "statefulsets", "prod", "payments-db")
    assert sts["spec"]["replicas"] == 2


async def test_ci_sync_changed_apps(argo: FakeArgoCD, tmp_path: Path):
    repo = tmp_path / "deploy"
    repo.mkdir()

    def git(*a: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *a],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    (repo / "apps/web").mkdir(parents=True)
    (repo / "apps/db").mkdir(parents=True)
    (repo / "apps/web/values.yaml").write_text("a: 1\n")
    (repo / "apps/db/values.yaml").write_text("a: 1\n")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    base = git("rev-parse", "HEAD")
    (repo / "apps/web/values.yaml").write_text("a: 2\n")
    git("commit", "-qam", "web")
    argo.add_app(make_app("web", path="apps/web"))
    argo.add_app(make_app("db", path="apps/db"))
    env = env_for(argo, None, tmp_path)
    p = await chatops(
        "ci", "sync", "--changed-since", base, "--repo-dir", str(repo), "--json", env=env
    )
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)  # stdout is the JSON result alone
    assert out["summary"] == "Synced 1 apps: web."
    synced = [r.path for r in argo.requests if r.method == "POST"]
    assert synced == ["/api/v1/applications/web/sync"]
    steps = p.stderr.splitlines()  # the progress, each step named by its app
    assert "  ✓ changed apps: web (1 files changed)" in steps
    assert [s.split(":")[1] for s in steps if s.startswith("  ✓ web: ")] == [
        " refresh", " sync", " wait"
    ]  # fmt: skip
    assert "  - web: postsync: no Kubernetes access configured" in steps  # skipped, and said

    # a force push that dropped the commit which changed db: the push's `before` is that
    # dropped tip, and db's files differ between it and the new HEAD, so db syncs too
    (repo / "apps/db/values.yaml").write_text("a: 3\n")
    git("commit", "-qam", "db, about to be dropped")
    dropped_tip = git("rev-parse", "HEAD")
    git("reset", "-q", "--hard", "HEAD~1")
    (repo / "apps/web/values.yaml").write_text("a: 4\n")
    git("commit", "-qam", "web again, force-pushed")
    argo.clear_requests()
    p = await chatops(
        "ci", "sync", "--changed-since", dropped_tip, "--repo-dir", str(repo), "--json", env=env
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["summary"] == "Synced 2 apps: db, web."
    synced = sorted(r.path for r in argo.requests if r.method == "POST")
    assert synced == ["/api/v1/applications/db/sync", "/api/v1/applications/web/sync"]

    bad = await chatops("ci", "sync", "--changed-since", "nope", "--repo-dir", str(repo), env=env)
    assert bad.returncode == 2 and "Cannot diff nope with HEAD" in bad.stderr


async def test_selfheal_timer_and_audit(argo: FakeArgoCD, tmp_path: Path):
    argo.add_app(make_app("payments"))
    env = env_for(argo, None, tmp_path)
    p = await chatops("selfheal", "off", "payments", "--for", "30m", env=env)
    assert p.returncode == 0, p.stderr
    assert "Self-heal is now off for payments." in p.stdout
    from bot.state.store import Store

    st = Store(tmp_path / "state.db")
    try:
        assert [t["key"] for t in st.timers("selfheal-on")] == ["payments"]
    finally:
        st.close()


async def test_doctor_reports_each_check(argo: FakeArgoCD, tmp_path: Path):
    env = env_for(argo, None, tmp_path)
    p = await chatops("doctor", env=env)
    assert "argocd" in p.stdout and "reachable, token accepted" in p.stdout
    assert "webhook" in p.stdout and "CHATOPS_WEBHOOK_TOKEN not set" in p.stdout
    assert p.returncode == 1  # the webhook token is missing
    env["CHATOPS_ARGOCD_TOKEN"] = "wrong"
    env["CHATOPS_WEBHOOK_TOKEN"] = "w"
    p = await chatops("doctor", env=env)
    assert p.returncode == 1
    assert "rejected the bot's token" in p.stdout
    assert "wrong" not in p.stdout.replace("what is wrong", "")
