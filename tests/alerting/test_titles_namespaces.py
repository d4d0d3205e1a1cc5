"""Titles naming workloads two namespaces share (namespace/name) or whose names hold a comma."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from alerting.notifiers.base import build_notification
from alerting.notifiers.blocks import incident_message
from alerting.notifiers.webhook import webhook_payload
from alerting.subscriptions import IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, WorkloadKind, WorkloadRef
from tests.alerting.title_engines import _a01_down
from tests.migrated_store import migrated_sqlite


def _node_down_under(jobs: list[str], tmp_path: Path) -> IncidentEngine:
    """An engine whose node a01 goes down under one single-rank training job of each name."""
    workloads = [
        WorkloadInfo(
            WorkloadRef(WorkloadKind.TRAINING_JOB, "research", name, "k"), (frozenset({("k", "a01", i)}),)
        )
        for i, name in enumerate(jobs)
    ]
    return _a01_down(tmp_path, StaticInventory([NodeInfo("a01", "k", "r1", 8)], workloads))


def test_a_workload_name_with_a_comma_is_one_workload_in_the_title_and_the_impact(tmp_path: Path) -> None:
    # Slurm job names may hold ", ": five jobs are five, listed in full, not six parts of which two
    # "workloads" are counted as more.
    engine = _node_down_under(["a", "b", "etl, nightly", "c", "d"], tmp_path)
    ((row, _),) = engine.store.list_rows()
    assert row.title == (
        "node a01 is down: 1 node, 8 GPUs, training job a stopped, training job b stopped, training job c"
        " stopped, training job d stopped, training job etl, nightly stopped"
    )
    impact = engine.store.get(row.id).impact
    assert "training job etl, nightly stopped" in impact.parts
    assert len(impact.parts) == 7  # the node, its GPUs and five jobs


def _llama_in_two_namespaces(tmp_path: Path) -> tuple[IncidentEngine, list[IncidentChange]]:
    """prod/llama runs on a01 and a03, staging/llama on a02 and a03, mistral (one namespace) on a01 and
    a03, each node in a rack of its own; the engine tells ``changes`` every incident change."""
    a = {n: NodeInfo(n, "k", f"r{n}", 8) for n in ("a01", "a02", "a03")}

    def service(namespace: str, name: str, *nodes: str) -> WorkloadInfo:
        ref = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, namespace, name, "k")
        return WorkloadInfo(ref, tuple(frozenset({("k", n, i)}) for i, n in enumerate(nodes)))

    services = [
        service("prod", "llama", "a01", "a03"),
        service("staging", "llama", "a02", "a03"),
        service("prod", "mistral", "a01", "a03"),
    ]
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    engine = IncidentEngine(
        make_engine(path),
        FakeClock(),
        AlertingConfig(announce_delay_seconds=0),
        StaticInventory(list(a.values()), services),
    )
    changes: list[IncidentChange] = []
    engine.subscribe(changes.append)
    return engine, changes


def test_a_service_name_two_namespaces_share_is_shown_as_namespace_slash_name(tmp_path: Path) -> None:
    # prod/llama and staging/llama each lose a replica with their node: both incidents read "inference
    # service llama 50% of replicas lost", in the title, in Slack and in the webhook, and nobody can tell
    # which one is hit. mistral is the only one of its name and keeps its short name.
    engine, changes = _llama_in_two_namespaces(tmp_path)
    for node in ("a01", "a02"):
        engine.ingest([Alert({"alertname": "KubeNodeNotReady", "cluster": "k", "node": node})])
    titles = {row.title for row, _ in engine.store.list_rows()}
    assert titles == {
        "node a01 is down: 1 node, 8 GPUs, inference service prod/llama 50% of replicas lost,"
        " inference service mistral 50% of replicas lost",
        "node a02 is down: 1 node, 8 GPUs, inference service staging/llama 50% of replicas lost",
    }
    told = build_notification(next(c for c in reversed(changes) if "a02" in c.incident.title))
    assert "inference service staging/llama 50% of replicas lost" in told.impact_parts
    payload = webhook_payload(told)["incident"]
    assert "staging/llama" in payload["title"] and "staging/llama" in payload["impact"]["summary"]
    message = incident_message(told)
    slack = json.dumps([message.text, message.attachments])
    assert "inference service staging/llama 50% of replicas lost" in slack
    assert "inference service llama" not in slack


def test_a_service_root_cause_whose_name_two_namespaces_share_names_its_namespace(tmp_path: Path) -> None:
    engine, _ = _llama_in_two_namespaces(tmp_path)
    slow = {"alertname": "InferenceLatencyHigh", "cluster": "k", "service": "llama"}
    engine.ingest([Alert({**slow, "namespace": "staging"}), Alert({**slow, "service": "mistral"})])
    titles = sorted(row.title for row, _ in engine.store.list_rows())
    assert titles == [
        "inference service mistral degraded (InferenceLatencyHigh)",
        "inference service staging/llama degraded (InferenceLatencyHigh)",
    ]


@pytest.mark.parametrize(
    ("alert", "title"),
    [
        (
            {"alertname": "KubeNodeNotReady", "cluster": "k", "node": "a02"},
            "node a02 is down: 1 node, 8 GPUs, inference service staging/llama 50% of replicas lost",
        ),
        (
            {"alertname": "InferenceLatencyHigh", "cluster": "k", "service": "llama", "namespace": "staging"},
            "inference service staging/llama degraded (InferenceLatencyHigh)",
        ),
    ],
    ids=["node-down", "service-root"],
)
def test_a_postmortem_names_a_workload_as_its_title_does_when_two_namespaces_share_its_name(
    tmp_path: Path, alert: dict[str, str], title: str
) -> None:
    # The title said "staging/llama", the postmortem draft's Workloads line "inference service llama".
    engine, _ = _llama_in_two_namespaces(tmp_path)
    engine.ingest([Alert(alert)])
    ((row, _),) = engine.store.list_rows()
    assert row.title == title
    draft = engine.postmortem(row.id)
    assert "- Workloads: inference service staging/llama\n" in draft
    assert "inference service llama" not in draft
