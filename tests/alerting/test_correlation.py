from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from alerting import scenarios
from alerting.correlation import Candidate, Member, join_rank
from alerting.faults import classify
from alerting.topology import locate
from gpuwarden.model import WorkloadKind, WorkloadRef

AT = datetime(2026, 3, 1, tzinfo=UTC)
JOB = WorkloadRef(WorkloadKind.TRAINING_JOB, "research", "llm-70b")


def _member(fp: str, **labels: str) -> Member:
    kind = classify(labels)
    return Member(fp, kind, locate(labels, kind), AT, True, labels)


def _node_incident(cluster: str) -> Candidate:
    members = [
        _member(f"g{i}", alertname="GPULost", cluster=cluster, rack="r07", node="r07-n01", gpu=str(i))
        for i in range(2)
    ]
    return Candidate("inc-1", (cluster, "r07", "r07-n01"), frozenset({JOB}), members, AT)


def test_a_fault_on_the_same_node_name_in_another_cluster_does_not_join() -> None:
    new = _member("x", alertname="GPULost", cluster="c2", rack="r07", node="r07-n01", gpu="3")
    assert join_rank(_node_incident("c1"), new, scenarios.fleet_inventory()) is None
    same_cluster = _member("y", alertname="GPULost", cluster="c1", rack="r07", node="r07-n01", gpu="3")
    assert join_rank(_node_incident("c1"), same_cluster, scenarios.fleet_inventory()) == 0


def test_a_symptom_of_the_incidents_workload_joins_whatever_cluster_label_it_carries() -> None:
    labels = {"cluster": "c2", "node": "r07-n01", "namespace": "research", "slurm_job": "llm-70b"}
    stall = _member("s", alertname="TrainingJobStalled", **labels)
    assert stall.location.path[0] == "c2"
    assert join_rank(_node_incident("c1"), stall, None) == 1


def test_a_symptom_of_a_same_named_workload_of_another_cluster_does_not_join() -> None:
    incident = _node_incident("c1")
    in_c1 = Candidate(
        incident.id, incident.root_path, frozenset({replace(JOB, cluster="c1")}), incident.members, AT
    )
    labels = {"cluster": "c2", "node": "r07-n01", "namespace": "research", "slurm_job": "llm-70b"}
    stall = _member("s", alertname="TrainingJobStalled", **labels)
    assert join_rank(in_c1, stall, None) is None  # c2's llm-70b is another job
    same = _member("t", alertname="TrainingJobStalled", **{**labels, "cluster": "c1"})
    assert join_rank(in_c1, same, None) == 1
