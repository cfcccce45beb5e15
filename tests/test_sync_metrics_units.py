"""OperationMetrics on hand-made stream events: the edges the fake controller never writes."""

from __future__ import annotations

from typing import Any

from bot.alerts.sync_metrics import OperationMetrics
from bot.metrics import Registry
from commands.argocd.app import Application


def app(name: str, phase: str = "", started: str = "", finished: Any = None) -> Application:
    state: dict[str, Any] = {}
    if phase:
        state = {"phase": phase, "startedAt": started}
        if finished is not None:
            state["finishedAt"] = finished
    return Application(
        {
            "metadata": {"name": name},
            "spec": {"project": "shop"},
            "status": {"operationState": state} if state else {},
        }
    )


def labels(name: str, phase: str, instance: str = "default") -> dict[str, str]:
    return {"app": name, "project": "shop", "argocd_instance": instance, "phase": phase}


T0, T1 = "2024-05-01T10:00:00Z", "2024-05-01T10:02:05Z"


def test_unreadable_or_backwards_timestamps_count_the_operation_but_no_duration():
    reg = Registry()
    m = OperationMetrics(reg)
    for name in ("a", "b", "c"):
        m.saw("ADDED", app(name))  # never synced: a baseline
    m.saw("MODIFIED", app("a", "Failed", T0, "yesterday"))
    m.saw("MODIFIED", app("b", "Succeeded", T1, T0))  # finished before it started
    m.saw("MODIFIED", app("c", "Succeeded", T0, T1))
    assert m.operations.value(**labels("a", "Failed")) == 1
    assert m.operations.value(**labels("b", "Succeeded")) == 1
    assert m.duration.count(**labels("a", "Failed")) == 0
    assert m.duration.count(**labels("b", "Succeeded")) == 0
    assert m.duration.count(**labels("c", "Succeeded")) == 1
    text = reg.render()
    bucket = 'chatops_argocd_sync_duration_seconds_bucket{app="c",argocd_instance="default"'
    assert bucket + ',le="120.0",phase="Succeeded",project="shop"} 0.0' in text  # took 125 s
    assert bucket + ',le="300.0",phase="Succeeded",project="shop"} 1.0' in text


def test_running_and_terminal_without_finished_at_are_not_yet_over():
    m = OperationMetrics(Registry())
    m.saw("ADDED", app("a", "Succeeded", T0, T0))  # baseline
    m.saw("MODIFIED", app("a", "Running", T1))
    m.saw("MODIFIED", app("a", "Failed", T1))  # no finishedAt: not over as far as we know
    assert m.operations.value(**labels("a", "Failed")) == 0
    m.saw("MODIFIED", app("a", "Failed", T1, T1))
    m.saw("MODIFIED", app("a", "Failed", T1, T1))  # the same operation again
    assert m.operations.value(**labels("a", "Failed")) == 1


def test_a_deleted_and_recreated_app_starts_from_a_baseline():
    m = OperationMetrics(Registry())
    m.saw("ADDED", app("a"))
    m.saw("DELETED", app("a"))
    m.saw("ADDED", app("a", "Succeeded", T0, T1))  # re-created with a finished operation
    assert m.operations.value(**labels("a", "Succeeded")) == 0


def test_two_argo_cd_instances_share_the_series_told_apart_by_their_label():
    reg = Registry()
    prod, staging = OperationMetrics(reg, instance="prod"), OperationMetrics(reg, instance="stg")
    for m in (prod, staging):
        m.saw("ADDED", app("a"))
        m.saw("MODIFIED", app("a", "Succeeded", T0, T1))
    assert prod.operations is staging.operations
    assert prod.operations.value(**labels("a", "Succeeded", "prod")) == 1
    assert prod.operations.value(**labels("a", "Succeeded", "stg")) == 1
