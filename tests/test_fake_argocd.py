"""Tests of the fake argocd-server itself: its wire rules, its controller scripts, its watch
stream, and that what it serves holds to Argo CD's own contract files (the CRD and swagger).

If the fake drifts from the real server, every test built on it lies; these tests pin it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.argocd_api import FakeArgoCD, running_fake_argocd
from tests.fakes.argocd_contract import application_errors, request_errors, sync_request_errors
from tests.fakes.argocd_fixtures import (
    REFRESH_ANNOTATION,
    load_example,
    load_examples,
    make_app,
    sha,
    tree_node,
)
from tests.fakes.argocd_patch import merge_patch, parse_selector

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def argo() -> Iterator[FakeArgoCD]:
    with running_fake_argocd() as fake:
        fake.add_app(make_app("web", labels={"team": "payments", "tier": "front"}))
        fake.add_app(make_app("db", resources=[("StatefulSet", "db"), ("Service", "db")]))
        fake.add_app(make_app("ops", project="platform", labels={"team": "platform"}))
        yield fake


@pytest.fixture
def http(argo: FakeArgoCD) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=argo.url, headers=AUTH, timeout=5) as client:
        yield client


def phase(app: dict[str, Any]) -> str | None:
    return (app["status"].get("operationState") or {}).get("phase")


def done(app: dict[str, Any]) -> bool:
    return "operation" not in app and phase(app) in ("Succeeded", "Failed", "Error")


def settled(app: dict[str, Any]) -> bool:
    return done(app) and app["status"]["health"]["status"] != "Progressing"


def sync(http: httpx.Client, name: str, body: Any = None) -> httpx.Response:
    return http.post(f"/api/v1/applications/{name}/sync", json=body if body is not None else {})


def assert_error(resp: httpx.Response, status: int, code: int, message: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json() == {"error": message, "code": code, "message": message}


# -- wire rules ------------------------------------------------------------------------------

NON_GET = [
    ("POST", "/api/v1/applications/web/sync", b"{}"),
    ("PATCH", "/api/v1/applications/web", b'{"patchType":"merge","patch":"{}"}'),
    ("DELETE", "/api/v1/applications/web/operation", b""),
    ("POST", "/api/v1/applications/web/rollback", b'{"id":0}'),
]


@pytest.mark.parametrize(("method", "path", "body"), NON_GET)
@pytest.mark.parametrize(
    "content_type",
    [None, "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded"],
)
def test_non_get_without_exact_json_content_type_is_415(
    argo: FakeArgoCD, method: str, path: str, body: bytes, content_type: str | None
) -> None:
    headers = dict(AUTH) | ({"Content-Type": content_type} if content_type else {})
    with httpx.Client(base_url=argo.url) as client:
        resp = client.request(method, path, content=body, headers=headers)
    assert resp.status_code == 415
    assert resp.text == "Invalid content type\n"
    assert "operation" not in argo.app("web")


def test_content_type_is_checked_before_auth_and_case_insensitively(argo: FakeArgoCD) -> None:
    with httpx.Client(base_url=argo.url) as client:
        resp = client.post("/api/v1/applications/web/sync", content=b"{}")
        assert resp.status_code == 415  # no token either: 415 wins
        resp = client.post(
            "/api/v1/applications/web/sync",
            content=b"{}",
            headers=AUTH | {"Content-Type": "Application/JSON"},
        )
    assert resp.status_code == 200


def test_get_needs_no_content_type(http: httpx.Client) -> None:
    assert http.get("/api/v1/applications/web").status_code == 200


def test_auth_missing_or_wrong_token_is_401(argo: FakeArgoCD) -> None:
    with httpx.Client(base_url=argo.url) as client:
        assert_error(client.get("/api/v1/applications/web"), 401, 16, "no session information")
        wrong = client.get("/api/v1/applications/web", headers={"Authorization": "Bearer nope"})
        assert_error(wrong, 401, 16, "invalid session: token signature is invalid")
        basic = client.get("/api/v1/applications/web", headers={"Authorization": "Basic x"})
        assert basic.status_code == 401
        cookie = client.get("/api/v1/applications/web", headers={"Cookie": f"argocd.token={TOKEN}"})
        assert cookie.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/applications/nope", None),
        ("GET", "/api/v1/applications/nope/resource-tree", None),
        ("POST", "/api/v1/applications/nope/sync", {}),
        ("PATCH", "/api/v1/applications/nope", {"patchType": "merge", "patch": "{}"}),
        ("DELETE", "/api/v1/applications/nope/operation", None),
    ],
)
def test_missing_app_is_403_unless_project_given(
    http: httpx.Client, method: str, path: str, body: Any
) -> None:
    def call(project: str | None) -> httpx.Response:
        params = {"project": project} if project and method in ("GET", "DELETE") else {}
        payload = dict(body or {}) | ({"project": project} if project and body is not None else {})
        content = json.dumps(payload).encode() if body is not None else b""
        return http.request(method, path, params=params, content=content, headers=JSON)

    assert_error(call(None), 403, 7, "permission denied")
    assert_error(call("default"), 404, 5, 'applications.argoproj.io "nope" not found')


def test_app_in_another_project_is_404_with_project(http: httpx.Client) -> None:
    resp = http.get("/api/v1/applications/ops", params={"project": "default"})
    assert_error(resp, 404, 5, 'applications.argoproj.io "ops" not found')
    assert http.get("/api/v1/applications/ops", params={"project": "platform"}).status_code == 200


def test_patch_must_be_a_json_string(argo: FakeArgoCD, http: httpx.Client) -> None:
    before = argo.app("web")
    body = {"patchType": "merge", "patch": {"spec": {"project": "x"}}}
    resp = http.patch("/api/v1/applications/web", json=body)
    assert resp.status_code == 400
    assert resp.json()["code"] == 3
    assert "of type string" in resp.json()["message"]
    assert argo.app("web") == before


def test_merge_patch_changes_spec_and_metadata_only(argo: FakeArgoCD, http: httpx.Client) -> None:
    patch = {
        "spec": {"syncPolicy": {"automated": {"selfHeal": False}}},
        "metadata": {"labels": {"tier": None, "paused": "yes"}},
        "status": {"health": {"status": "Degraded"}},
    }
    before = argo.app("web")
    resp = http.patch(
        "/api/v1/applications/web", json={"patchType": "merge", "patch": json.dumps(patch)}
    )
    assert resp.status_code == 200, resp.text
    app = argo.app("web")
    assert resp.json() == app
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": False}
    assert app["metadata"]["labels"] == {"team": "payments", "paused": "yes"}
    assert app["status"]["health"]["status"] == "Healthy"  # status is not patchable
    assert app["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert int(app["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])


def test_merge_patch_adding_automated_turns_auto_sync_on(argo: FakeArgoCD) -> None:
    argo.add_app(make_app("manual", automated=False))
    with httpx.Client(base_url=argo.url, headers=AUTH) as http:
        patch = json.dumps({"spec": {"syncPolicy": {"automated": {"selfHeal": False}}}})
        http.patch("/api/v1/applications/manual", json={"patchType": "merge", "patch": patch})
        resp = http.post("/api/v1/applications/manual/rollback", json={"id": 0})
    assert resp.status_code == 400
    assert resp.json()["message"] == "rollback cannot be initiated when auto-sync is enabled"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"patchType": "strategic", "patch": "{}"}, "Patch type 'strategic' is not supported"),
        ({"patchType": "merge", "patch": "{not json"}, "error decoding patch"),
        ({"patchType": "merge", "patch": '{"spec":{"project":5}}'}, "error validating"),
        ({"patchType": "merge", "patch": "{}", "extra": 1}, 'unknown field "extra"'),
    ],
)
def test_bad_patches_are_400(http: httpx.Client, body: Any, message: str) -> None:
    resp = http.patch("/api/v1/applications/web", json=body)
    assert resp.status_code == 400
    assert message in resp.json()["message"]


def test_json_patch(argo: FakeArgoCD, http: httpx.Client) -> None:
    ops = [{"op": "replace", "path": "/spec/source/targetRevision", "value": "v2"}]
    resp = http.patch(
        "/api/v1/applications/web", json={"patchType": "json", "patch": json.dumps(ops)}
    )
    assert resp.status_code == 200, resp.text
    assert argo.app("web")["spec"]["source"]["targetRevision"] == "v2"


def test_sync_while_an_operation_runs_is_400(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.script("web", "hang")
    assert sync(http, "web").status_code == 200
    assert_error(sync(http, "web"), 400, 9, "another operation is already in progress")


def test_sync_blocked_by_sync_window_is_403(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.set_sync_window_blocked("web", True)
    assert_error(sync(http, "web"), 403, 7, "cannot sync: blocked by sync window")
    assert "operation" not in argo.app("web")
    argo.set_sync_window_blocked("web", False)
    assert sync(http, "web").status_code == 200


LEAD_SYNC_BODY = {
    "name": "web",
    "prune": True,
    "dryRun": False,
    "strategy": {"hook": {"force": False}},
    "retryStrategy": {
        "limit": 3,
        "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"},
    },
    "infos": [{"name": "requested-by", "value": "alice"}],
}


@pytest.mark.parametrize(
    "body",
    [
        LEAD_SYNC_BODY,
        {"retryStrategy": {"limit": "3", "backoff": {"factor": "2"}}},  # int64 as strings
        {"revision": None, "prune": None},  # nulls: Go's zero values
        {
            "syncOptions": {"items": ["Prune=false"]},
            "resources": [{"kind": "Service", "name": "x"}],
        },
        {"strategy": {"apply": {"force": True}}},
    ],
)
def test_sync_accepts_the_wire_forms_go_accepts(http: httpx.Client, body: Any) -> None:
    assert sync_request_errors(body) == []
    assert sync(http, "web", body).status_code == 200


def test_sync_accepts_an_empty_body(http: httpx.Client) -> None:
    resp = http.post("/api/v1/applications/web/sync", content=b"", headers=JSON)
    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prune": "yes"}, "cannot unmarshal string into Go struct field"),
        ({"syncOptions": ["Prune=false"]}, "cannot unmarshal array"),
        ({"retryStrategy": {"limit": "three"}}, "retryStrategy.limit"),
        ({"retry": {"limit": 3}}, 'unknown field "retry"'),
        ({"strategy": {"hook": {"syncStrategyApply": {"force": True}}}}, "syncStrategyApply"),
        ([], "cannot unmarshal array into Go value"),
        ("{", "invalid character"),
    ],
)
def test_sync_body_is_checked_against_the_swagger(
    argo: FakeArgoCD, http: httpx.Client, body: Any, message: str
) -> None:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    resp = http.post("/api/v1/applications/web/sync", content=content, headers=JSON)
    assert resp.status_code == 400
    assert resp.json()["code"] == 3
    assert message in resp.json()["message"]
    assert "operation" not in argo.app("web")


def test_swagger_nested_hook_form_is_only_tolerated_when_lenient() -> None:
    nested = {"strategy": {"hook": {"syncStrategyApply": {"force": True}}}}
    assert sync_request_errors(nested, strict=False) == []
    assert sync_request_errors(nested) == ['json: unknown field "syncStrategyApply"']


def test_sync_sets_the_operation_as_argocd_server_does(
    argo: FakeArgoCD, http: httpx.Client
) -> None:
    argo.script("web", "hang")
    resp = sync(http, "web", LEAD_SYNC_BODY | {"syncOptions": {"items": ["Replace=true"]}})
    op = resp.json()["operation"]
    assert op == argo.app("web")["operation"]
    assert op["initiatedBy"] == {"username": "admin"}  # the token's account, not the requester
    assert op["info"] == [{"name": "requested-by", "value": "alice"}]
    assert op["retry"]["limit"] == 3
    sync_op = op["sync"]
    assert sync_op["prune"] is True
    assert sync_op["syncOptions"] == ["Replace=true"]  # replaces the spec's, no merge
    assert sync_op["syncStrategy"] == {"hook": {"force": False}}
    assert sync_op["revision"] == argo.app("web")["status"]["sync"]["revision"]
    assert len(sync_op["revision"]) == 40


def test_terminate_without_operation_is_400(http: httpx.Client) -> None:
    resp = http.request("DELETE", "/api/v1/applications/web/operation", headers=JSON)
    assert_error(resp, 400, 3, "Unable to terminate operation. No operation is in progress")


def test_requests_are_recorded(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.clear_requests()
    http.get("/api/v1/applications", params=[("projects", "a"), ("projects", "b")])
    sync(http, "web", {"prune": True})
    first, second = argo.requests
    assert (first.method, first.path) == ("GET", "/api/v1/applications")
    assert first.query == {"projects": "a"}
    assert first.query_all == {"projects": ["a", "b"]}
    assert first.json is None
    assert second.method == "POST"
    assert second.json == {"prune": True}
    assert second.headers["content-type"] == "application/json"
    assert second.headers["Authorization"] == f"Bearer {TOKEN}"


def test_fail_next_injects_errors(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.fail_next(2, 503, "connection refused to repo server", method="GET", path="/web")
    for _ in range(2):
        assert_error(
            http.get("/api/v1/applications/web"), 503, 14, "connection refused to repo server"
        )
    assert http.get("/api/v1/applications/web").status_code == 200
    argo.fail_next(1, 502, "<html>Bad Gateway</html>", raw=True)
    resp = sync(http, "web")
    assert (resp.status_code, resp.text) == (502, "<html>Bad Gateway</html>")
    assert "operation" not in argo.app("web")  # the request never reached the server
    argo.fail_next(1, 429, "too many requests")
    assert http.get("/api/v1/applications").json()["code"] == 8


def test_pause_makes_it_unreachable_and_resume_keeps_state(
    argo: FakeArgoCD, http: httpx.Client
) -> None:
    argo.pause()
    with pytest.raises(httpx.ConnectError):
        http.get("/api/v1/applications/web")
    argo.resume()
    assert http.get("/api/v1/applications/web").json()["metadata"]["name"] == "web"


# -- list, get, refresh, tree ----------------------------------------------------------------


def test_list_filters_and_sorts(http: httpx.Client, argo: FakeArgoCD) -> None:
    def names(**params: Any) -> list[str]:
        resp = http.get("/api/v1/applications", params=params)
        assert resp.status_code == 200
        body = resp.json()
        assert body["metadata"]["resourceVersion"] == str(argo.state.resource_version)
        return [a["metadata"]["name"] for a in body["items"]]

    assert names() == ["db", "ops", "web"]
    assert names(selector="team=payments") == ["web"]
    assert names(selector="team") == ["ops", "web"]
    assert names(selector="team!=payments") == ["db", "ops"]
    assert names(selector="team in (payments,platform),tier=front") == ["web"]
    assert names(projects="platform") == ["ops"]
    assert names(name="db") == ["db"]
    assert names(selector="team=nobody") == []


def test_bad_selector_is_an_error(http: httpx.Client) -> None:
    resp = http.get("/api/v1/applications", params={"selector": "a b c"})
    assert resp.status_code == 500
    assert "error parsing the selector" in resp.json()["message"]


def test_get_with_refresh_blocks_until_reconciled(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.set_reconcile_delay(0.3)
    new_head = sha("web-2")
    argo.set_git_head("web", new_head)
    before = argo.app("web")
    assert before["status"]["sync"]["status"] == "Synced"  # nothing seen before a refresh
    started = time.monotonic()
    resp = http.get("/api/v1/applications/web", params={"refresh": "normal"})
    assert time.monotonic() - started >= 0.3
    app = resp.json()
    assert REFRESH_ANNOTATION not in app["metadata"].get("annotations", {})
    assert int(app["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert app["status"]["sync"] == app["status"]["sync"] | {
        "status": "OutOfSync",
        "revision": new_head,
    }
    # the refresh went through the annotation, as argocd-server does it
    annotated = [a for _, a in argo.states("web") if a["metadata"].get("annotations")]
    assert annotated[0]["metadata"]["annotations"] == {REFRESH_ANNOTATION: "normal"}


def test_refresh_past_the_deadline_is_refresh_deadline_exceeded(
    argo: FakeArgoCD, http: httpx.Client
) -> None:
    argo.set_reconcile_delay(2.0)
    # the caller's Grpc-Timeout becomes the call's deadline (grpc-gateway)
    resp = http.get(
        "/api/v1/applications/web", params={"refresh": "normal"}, headers={"Grpc-Timeout": "200m"}
    )
    assert resp.status_code == 500
    assert resp.json() == {
        "error": "application refresh deadline exceeded",
        "code": 2,
        "message": "application refresh deadline exceeded",
    }
    argo.set_refresh_deadline(0.2)  # or the proxy in front of argocd-server stops waiting
    resp = http.get("/api/v1/applications/web", params={"refresh": "hard"})
    assert resp.json()["message"] == "application refresh deadline exceeded"


def test_refresh_by_annotation_patch_is_reconciled(argo: FakeArgoCD, http: httpx.Client) -> None:
    patch = json.dumps({"metadata": {"annotations": {REFRESH_ANNOTATION: "hard"}}})
    http.patch("/api/v1/applications/web", json={"patchType": "merge", "patch": patch})
    app = argo.wait_app("web", lambda a: not a["metadata"].get("annotations"))
    assert app["status"]["reconciledAt"]


def test_resource_tree_shape_and_override(argo: FakeArgoCD, http: httpx.Client) -> None:
    tree = http.get("/api/v1/applications/db/resource-tree").json()
    assert request_errors("v1alpha1ApplicationTree", tree, strict=False) == []
    kinds = {(n["kind"], n["name"]) for n in tree["nodes"]}
    assert {("StatefulSet", "db"), ("Pod", "db-0"), ("Service", "db")} <= kinds
    pod = next(n for n in tree["nodes"] if n["kind"] == "Pod")
    assert pod["parentRefs"][0]["kind"] == "StatefulSet"
    assert "group" not in pod  # core group omitted, as Go's omitempty does
    custom = [tree_node("Deployment", "web", "prod", health="Degraded", message="boom")]
    argo.set_resource_tree("web", custom)
    nodes = http.get("/api/v1/applications/web/resource-tree").json()["nodes"]
    assert nodes == custom


# -- scripted syncs ----------------------------------------------------------------------------


def phases_seen(argo: FakeArgoCD, name: str) -> list[str | None]:
    out: list[str | None] = []
    for _, app in argo.states(name):
        p = phase(app)
        if not out or out[-1] != p:
            out.append(p)
    return out


def test_succeed(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.add_app(make_app("api", sync="OutOfSync", history=False))
    head = argo.app("api")["status"]["sync"]["revision"]
    resp = sync(http, "api", {"prune": True})
    assert resp.json()["operation"]["sync"]["prune"] is True
    app = argo.wait_app("api", settled)
    assert phases_seen(argo, "api") == [None, "Running", "Succeeded"]
    state = app["status"]["operationState"]
    assert state["message"] == "successfully synced (all tasks run)"
    assert state["syncResult"]["revision"] == head
    assert {r["status"] for r in state["syncResult"]["resources"]} == {"Synced"}
    assert state["finishedAt"] >= state["startedAt"]
    assert app["status"]["sync"]["status"] == "Synced"
    assert app["status"]["health"]["status"] == "Healthy"
    assert app["status"]["history"][-1]["revision"] == head
    assert app["status"]["history"][-1]["initiatedBy"] == {"username": "admin"}
    health = [a["status"]["health"]["status"] for _, a in argo.states("api")]
    assert "Progressing" in health
    assert health.index("Progressing") < len(health) - 1 - health[::-1].index("Healthy")
    # .operation is cleared exactly when the phase completes
    for _, snapshot in argo.states("api"):
        if phase(snapshot) == "Succeeded":
            assert "operation" not in snapshot


def test_fail(argo: FakeArgoCD, http: httpx.Client) -> None:
    history_before = len(argo.app("db")["status"]["history"])
    argo.script("db", "fail")
    sync(http, "db")
    app = argo.wait_app("db", done)
    state = app["status"]["operationState"]
    assert state["phase"] == "Failed"
    assert state["message"].startswith("one or more objects failed to apply, reason: StatefulSet")
    failed = [r for r in state["syncResult"]["resources"] if r["status"] == "SyncFailed"]
    assert [(r["kind"], r["name"]) for r in failed] == [("StatefulSet", "db")]
    assert "Forbidden: updates to statefulset spec" in failed[0]["message"]
    assert len(app["status"]["history"]) == history_before
    assert "conditions" not in app["status"]  # a manual sync adds no SyncError


def test_retry_then_fail(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.script("db", "retry_then_fail", message="boom")
    sync(http, "db", {"retryStrategy": {"limit": 2, "backoff": {"duration": "5s"}}})
    app = argo.wait_app("db", done)
    retrying = [
        a["status"]["operationState"]
        for _, a in argo.states("db")
        if "Retrying attempt" in (a["status"].get("operationState") or {}).get("message", "")
    ]
    assert [s["retryCount"] for s in retrying] == [1, 2]
    first = retrying[0]
    assert first["phase"] == "Running"
    assert "finishedAt" in first
    assert first["message"].startswith(
        "one or more objects failed to apply, reason: boom. Retrying attempt #1 at "
    )
    assert first["message"].endswith(("AM.", "PM."))
    state = app["status"]["operationState"]
    assert state["phase"] == "Failed"
    assert (
        state["message"] == "one or more objects failed to apply, reason: boom (retried 2 times)."
    )


def test_error(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.script("web", "error")
    sync(http, "web")
    app = argo.wait_app("web", done)
    assert phase(app) == "Error"
    assert "ComparisonError" in app["status"]["operationState"]["message"]


def test_degrade(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.script("web", "degrade")
    sync(http, "web")
    app = argo.wait_app("web", lambda a: a["status"]["health"]["status"] == "Degraded")
    assert phase(app) == "Succeeded"
    assert "operation" not in app
    nodes = http.get("/api/v1/applications/web/resource-tree").json()["nodes"]
    degraded = [
        n for n in nodes if n["health"]["status"] == "Degraded" and n["kind"] == "Deployment"
    ]
    assert degraded[0]["health"]["message"] == 'Deployment "web" exceeded its progress deadline'
    resource = next(r for r in app["status"]["resources"] if r["kind"] == "Deployment")
    assert resource["health"]["status"] == "Degraded"


def test_hang_until_terminated(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.script("web", "hang")
    sync(http, "web")
    sync(http, "db")  # a whole other sync finishes meanwhile ...
    argo.wait_app("db", settled)
    assert phase(argo.app("web")) == "Running"  # ... while this one still runs
    assert "operation" in argo.app("web")
    resp = http.request("DELETE", "/api/v1/applications/web/operation", headers=JSON)
    assert (resp.status_code, resp.json()) == (200, {})
    app = argo.wait_app("web", done)
    assert app["status"]["operationState"]["phase"] == "Failed"
    assert app["status"]["operationState"]["message"] == "Operation terminated"
    assert "Terminating" in phases_seen(argo, "web")


def test_hooks_and_partial_sync(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.set_hooks("db", "PreSync", "PostSync")
    sync(http, "db")
    app = argo.wait_app("db", settled)
    hooks = {
        r["hookType"]: r
        for r in app["status"]["operationState"]["syncResult"]["resources"]
        if "hookType" in r
    }
    assert set(hooks) == {"PreSync", "PostSync"}
    assert hooks["PreSync"]["hookPhase"] == "Succeeded"
    messages = [
        (a["status"].get("operationState") or {}).get("message") for _, a in argo.states("db")
    ]
    assert "waiting for completion of hook batch/Job/db-presync" in messages
    # a partial sync runs no hooks
    sync(http, "db", {"resources": [{"group": "apps", "kind": "StatefulSet", "name": "db"}]})
    app = argo.wait_app("db", lambda a: settled(a) and len(a["status"]["history"]) == 3)
    results = app["status"]["operationState"]["syncResult"]["resources"]
    assert [(r["kind"], r.get("hookType")) for r in results] == [("StatefulSet", None)]


def test_hook_fail(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.script("db", "hook_fail")
    sync(http, "db")
    app = argo.wait_app("db", done)
    (hook,) = app["status"]["operationState"]["syncResult"]["resources"]
    assert (hook["hookType"], hook["hookPhase"]) == ("PreSync", "Failed")
    assert app["status"]["operationState"]["phase"] == "Failed"


def test_failed_auto_sync_adds_sync_error_and_success_clears_it(argo: FakeArgoCD) -> None:
    argo.script("web", "fail", "succeed")
    assert argo.start_auto_sync("web")
    app = argo.wait_app("web", done)
    (cond,) = app["status"]["conditions"]
    assert cond["type"] == "SyncError"
    assert cond["message"].startswith(
        f"Failed last sync attempt to [{app['status']['sync']['revision']}]: "
    )
    assert argo.start_auto_sync("web")
    app = argo.wait_app("web", lambda a: settled(a) and phase(a) == "Succeeded")
    assert "conditions" not in app["status"]


def test_new_commit_refresh_sync_and_rollback(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.add_app(make_app("pay", automated=False))
    old = argo.app("pay")["status"]["sync"]["revision"]
    argo.set_git_head("pay", sha("pay-2"))
    http.get("/api/v1/applications/pay", params={"refresh": "hard"})
    sync(http, "pay")
    app = argo.wait_app("pay", settled)
    assert [h["revision"] for h in app["status"]["history"]] == [old, sha("pay-2")]
    resp = http.post("/api/v1/applications/pay/rollback", json={"id": 0})
    assert resp.status_code == 200, resp.text
    assert resp.json()["operation"]["sync"]["revision"] == old
    app = argo.wait_app("pay", lambda a: settled(a) and len(a["status"]["history"]) == 3)
    assert app["status"]["sync"]["revision"] == old
    missing = http.post("/api/v1/applications/pay/rollback", json={"id": 42})
    assert_error(missing, 400, 3, "application pay does not have deployment with id 42")


def test_set_health_with_resources(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.set_health("db", "Degraded", resources={"StatefulSet/db": ("Degraded", "0/1 ready")})
    app = http.get("/api/v1/applications/db").json()
    assert app["status"]["health"]["status"] == "Degraded"
    sts = next(r for r in app["status"]["resources"] if r["kind"] == "StatefulSet")
    assert sts["health"] == {"status": "Degraded", "message": "0/1 ready"}
    argo.set_health("db", "Healthy")
    sts = next(r for r in argo.app("db")["status"]["resources"] if r["kind"] == "StatefulSet")
    assert sts["health"] == {"status": "Healthy"}


def test_script_rejects_unknown_phases(argo: FakeArgoCD) -> None:
    with pytest.raises(ValueError, match="unknown script phase"):
        argo.script("web", "explode")


# -- watch stream --------------------------------------------------------------------------------


async def _read_events(
    url: str, params: dict[str, str], want: int, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=url, headers=AUTH | (headers or {}), timeout=5) as client,
        client.stream("GET", "/api/v1/stream/applications", params=params) as resp,
    ):
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                line = line[len("data: ") :]
            if line.strip() and not line.startswith(":"):
                events.append(json.loads(line)["result"])
            if len(events) >= want:
                break
    return events


async def test_stream_added_then_modified_during_a_sync(argo: FakeArgoCD) -> None:
    argo.script("web", "fail")
    events: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=argo.url, headers=AUTH, timeout=5) as client,
        client.stream(
            "GET", "/api/v1/stream/applications", params={"selector": "team=payments"}
        ) as resp,
    ):
        lines = resp.aiter_lines()
        events.append(json.loads(await anext(lines))["result"])
        await client.post("/api/v1/applications/db/sync", json={})  # filtered out
        await client.post("/api/v1/applications/web/sync", json={})
        while len(events) < 2 or not done(events[-1]["application"]):
            events.append(json.loads(await anext(lines))["result"])
    assert events[0]["type"] == "ADDED"
    assert [e["type"] for e in events[1:]] == ["MODIFIED"] * 3
    assert {e["application"]["metadata"]["name"] for e in events} == {"web"}
    versions = [int(e["application"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)
    assert "operation" in events[1]["application"]
    assert phase(events[2]["application"]) == "Running"
    assert phase(events[3]["application"]) == "Failed"


async def test_a_failed_stream_ends_with_grpc_gateways_error_frame(argo: FakeArgoCD) -> None:
    for accept, prefix in (("application/json", ""), ("text/event-stream", "data: ")):
        async with (
            httpx.AsyncClient(base_url=argo.url, headers=AUTH, timeout=5) as client,
            client.stream(
                "GET", "/api/v1/stream/applications", params={"name": "web"},
                headers={"Accept": accept},
            ) as resp,
        ):  # fmt: skip
            lines = (line async for line in resp.aiter_lines() if line.strip())
            assert (
                json.loads((await anext(lines)).removeprefix(prefix))["result"]["type"] == "ADDED"
            )
            argo.break_streams(14, "transport is closing")
            frame = json.loads((await anext(lines)).removeprefix(prefix))
            rest = [line async for line in lines]
        assert resp.status_code == 200  # mid-stream: the status was already sent
        assert frame == {
            "error": {
                "grpc_code": 14,
                "http_code": 503,
                "message": "transport is closing",
                "http_status": "Service Unavailable",
                "details": [],
            }
        }
        assert rest == []  # and the stream ends


async def test_stream_by_name_and_sse(argo: FakeArgoCD) -> None:
    argo.sse_keepalive = 0.05
    events = await _read_events(
        argo.url, {"name": "db"}, want=1, headers={"Accept": "text/event-stream"}
    )
    assert [(e["type"], e["application"]["metadata"]["name"]) for e in events] == [("ADDED", "db")]


async def test_stream_sees_deletion_and_closes_cleanly_when_server_stops() -> None:
    fake = FakeArgoCD().start()
    fake.add_app(make_app("web"))
    lines: list[str] = []
    async with (
        httpx.AsyncClient(base_url=fake.url, headers=AUTH, timeout=5) as client,
        client.stream("GET", "/api/v1/stream/applications") as resp,
    ):
        assert resp.headers["content-type"] == "application/json"
        iterator = resp.aiter_lines()
        lines.append(await anext(iterator))
        fake.remove_app("web")
        lines.append(await anext(iterator))
        await asyncio.to_thread(fake.stop)
        rest = [line async for line in iterator]  # ends without an error
    assert [json.loads(x)["result"]["type"] for x in lines] == ["ADDED", "DELETED"]
    assert rest == []


# -- contract --------------------------------------------------------------------------------


def test_every_state_the_fake_produces_is_a_valid_application(
    argo: FakeArgoCD, http: httpx.Client
) -> None:
    argo.set_hooks("db", "PreSync", "PostSync")
    for script in ("succeed", "fail", "retry_then_fail", "error", "degrade", "hook_fail", "hang"):
        argo.script("db", script)
        sync(http, "db", LEAD_SYNC_BODY | {"retryStrategy": {"limit": 1}})
        if script == "hang":
            argo.wait_app(
                "db", lambda a: phase(a) == "Running" and "message" in a["status"]["operationState"]
            )
            http.request("DELETE", "/api/v1/applications/db/operation", headers=JSON)
        argo.wait_app("db", settled)
    argo.script("web", "fail")
    argo.start_auto_sync("web")
    argo.wait_app("web", done)
    argo.set_health("web", "Degraded", "boom", resources={"Deployment/web": ("Degraded", "x")})
    http.get("/api/v1/applications/web", params={"refresh": "normal"})
    states = argo.states()
    seen = {phase(a) for _, a in states} | {a["status"]["health"]["status"] for _, a in states}
    assert {"Running", "Terminating", "Succeeded", "Failed", "Error"} <= seen
    assert {"Healthy", "Progressing", "Degraded"} <= seen
    for event, app in states:
        assert application_errors(app) == [], (event, app["metadata"]["resourceVersion"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"automated": False, "sync": "OutOfSync", "health": "Degraded", "retry_limit": 3},
        {"resources": [("StatefulSet", "db"), ("ConfigMap", "cfg")], "history": False},
        {"health": "Missing", "sync": "Unknown", "annotations": {"a": "b"}},
    ],
)
def test_make_app_builds_crd_valid_applications(kwargs: dict[str, Any]) -> None:
    assert application_errors(make_app("x", **kwargs)) == []


def test_upstream_examples_load_and_complete_ones_validate() -> None:
    examples = load_examples()
    assert len(examples) == 5
    assert application_errors(load_example(1)) == []
    assert application_errors(load_example("02-outofsync")) == []
    # upstream's trimmed fixtures: the validator must notice what is missing
    assert any("'operation' is a required" in e for e in application_errors(load_example(3)))


def test_contract_validator_rejects_what_a_cluster_would_not_return() -> None:
    app = make_app("x")
    app["status"]["operationState"]["phase"] = "Done"
    app["status"]["sync"]["revisoin"] = "typo"
    app["metadata"]["resourceVersion"] = 5
    app["status"]["history"][0]["deployedAt"] = "yesterday"
    errors = " | ".join(application_errors(app))
    assert "'Done' is not one of" in errors
    assert "'revisoin' was unexpected" in errors
    assert "resourceVersion: must be a string" in errors
    assert "'yesterday' is not a 'date-time'" in errors


def test_served_examples_keep_their_shape(argo: FakeArgoCD, http: httpx.Client) -> None:
    argo.add_app(load_example(1))
    # the upstream example lives in namespace argo-cd, not Argo CD's own: it must be named
    params = {"appNamespace": load_example(1)["metadata"]["namespace"]}
    served = http.get("/api/v1/applications/velero-test", params=params).json()
    assert served["status"] == load_example(1)["status"]
    assert http.get("/api/v1/applications/velero-test").status_code == 403  # not in argocd/


# -- helpers of the fake ------------------------------------------------------------------------


def test_merge_patch_is_rfc_7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    assert merge_patch(target, {"a": "z", "c": {"f": None}}) == {"a": "z", "c": {"d": "e"}}
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert merge_patch({"a": "b"}, ["c"]) == ["c"]
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


def test_label_selector() -> None:
    labels = {"env": "prod", "team": "a"}
    assert parse_selector("")(labels)
    assert parse_selector("env=prod,team==a")(labels)
    assert not parse_selector("env=prod,team=b")(labels)
    assert parse_selector("tier!=front")(labels)
    assert parse_selector("!tier,env")(labels)
    assert parse_selector("env in (dev, prod)")(labels)
    assert not parse_selector("env notin (prod)")(labels)
    with pytest.raises(ValueError):
        parse_selector("env prod")
