from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from alerting import scenarios
from alerting.correlation import Candidate, Member, join_rank
from alerting.faults import classify
from alerting.topology import locate
from gpuwarden.model import FaultKind, WorkloadKind, WorkloadRef

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


def test_an_incidents_facts_gathered_alert_by_alert_are_those_of_all_its_alerts_at_once() -> None:
    from alerting.batch import OpenIncident  # noqa: PLC0415
    from alerting.correlation import root_facts  # noqa: PLC0415
    from gpuwarden.model import IncidentState, Priority  # noqa: PLC0415

    where = {"cluster": "c1", "rack": "r07"}
    arriving = [
        _member("a", alertname="GPUXid", node="r07-n01", gpu="1", xid="13", **where),
        _member("b", alertname="GPUTemperatureHigh", node="r07-n02", gpu="2", **where),
        _member("c", alertname="GPUXid", node="r07-n02", gpu="3", xid="13", **where),
        # The node goes down after its XID: the XID's name is no longer one "not on a taken node" there.
        _member("d", alertname="NodeDown", node="r07-n01", **where),
        _member("e", alertname="NodeDown", node="r07-n02", **where),
        _member("f", alertname="GPUXid", node="r07-n03", gpu="0", xid="13", **where),
    ]
    inc = OpenIncident("inc-1", ("c1", "r07"), Priority.P3, IncidentState.TRIGGERED, AT)
    for k, member in enumerate(arriving):
        inc.members[member.fingerprint] = member
        assert inc.facts() == root_facts(arriving[: k + 1]), member.fingerprint
    assert inc.facts().signals == frozenset({("GPUXid", FaultKind.XID, 13)})  # on r07-n03, no outage took it


@pytest.mark.parametrize(
    ("xid", "rank"), [("119", 5), ("31", None)], ids=["the-same-code-rolls-up", "another-code-does-not"]
)
def test_the_cluster_roll_up_of_a_spreading_xid_takes_only_that_xids_code(xid: str, rank: int | None) -> None:
    members = [
        _member(f"m{n}", alertname="GPUXid", cluster="c1", rack="r02", node=f"r02-n0{n}", gpu="0", xid="119")
        for n in (1, 2)
    ]
    rollout = Candidate("inc-1", ("c1", "r02"), frozenset(), members, AT)
    new = _member("x", alertname="GPUXid", cluster="c1", rack="r05", node="r05-n03", gpu="4", xid=xid)
    assert join_rank(rollout, new, scenarios.fleet_inventory()) == rank
