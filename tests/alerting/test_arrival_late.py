"""Alerts posted out of onset order across POSTs (several Alertmanagers, their retries, several anomaly
services) give the incidents onset order gives (README, "Incidents, batching"), and a driver rollout
posted one alert per POST takes no NVSwitch failure it reached (``benchmarks/batch_order_fuzz.py``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from alerting import scenarios as sc
from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, WorkloadKind, WorkloadRef
from tests.alerting.arrival_streams import START, _engine, _onset
from tests.migrated_store import migrated_sqlite

Outcome = frozenset[tuple[str, str, str, frozenset[str]]]


def _outcome(tmp_path: Path, posts: list[list[Alert]]) -> tuple[Outcome, int]:
    """Each open incident (root kind and target, priority, alerts) and how many incidents opened."""
    alerts = [a for post in posts for a in post]
    engine = _engine(tmp_path, max(_onset(a) for a in alerts) + timedelta(seconds=10))
    for post in posts:
        engine.ingest(post)
    found = set()
    for row, _ in engine.store.list_rows():
        target = str(sorted(row.root_target.items()))
        fps = frozenset(engine.store.get(row.id).alert_fingerprints)
        found.add((row.root_kind, target, row.priority, fps))
    return frozenset(found), engine.counters["incidents_opened"]


def _at(seconds: float, **labels: str) -> Alert:
    return Alert({"cluster": sc.CLUSTER, **labels}, starts_at=START + timedelta(seconds=seconds))


def _gpu(node: str, gpu: int, name: str, at: float, **extra: str) -> Alert:
    return _at(at, alertname=name, Hostname=node, gpu=str(gpu), UUID=sc.gpu_uuid(node, gpu), **extra)


LATE = {
    # The exporter of r02-n03 went stale 5 s after its GPU 6 ran hot, and was posted first: one incident,
    # the node's heat, as in onset order (batch fuzz --shuffle 30, seed 155).
    "stale exporter posted before the heat it follows": (
        _gpu("r02-n03", 6, "GpuTemperatureHigh", 0),
        _at(5, alertname="DCGMExporterStale", Hostname="r02-n03"),
    ),
    # The exporter of r02-n04 went stale 11 s before its GPU 1 fell off the bus and was posted after it: two
    # incidents, as in onset order, not the stale exporter in the GPU's (seed 285).
    "stale exporter posted after a GPU lost later": (
        _at(0, alertname="DCGMExporterStale", Hostname="r02-n04"),
        _gpu("r02-n04", 1, "GPULost", 11),
    ),
    # Service chat's latency began before an XID 13 on r01-n02 (a node chat runs on, not its GPU) and was
    # posted after it: the latency's incident rooted at the XID, as in onset order (seeds 170, 279).
    "service latency posted after a fault on its node that followed it": (
        _at(0, alertname="ChatLatencyHigh", service="chat", namespace="serving"),
        _gpu("r01-n02", 5, "GPUXid", 10, xid="13"),
    ),
}


@pytest.mark.parametrize("name", sorted(LATE))
def test_an_alert_posted_after_one_that_began_later_groups_as_in_onset_order(
    tmp_path: Path, name: str
) -> None:
    first, second = LATE[name]
    in_order, _ = _outcome(tmp_path, [[first], [second]])
    assert _outcome(tmp_path, [[second], [first]])[0] == in_order


def test_a_rollout_posted_one_alert_per_post_takes_no_nvswitch_failure_it_reached(tmp_path: Path) -> None:
    # A driver rollout reaches r07-n01 15 s in and r07-n02 30 s in; an NVSwitch failed on r07-n02 at 20 s.
    # One POST gave two incidents (the rollout's XIDs 119, the switch's XIDs 74 and NVLink errors); one alert
    # per POST in onset order, the switch's incident took r07-n02's first XIDs 119 and, as one piece of the
    # rollout beside r07-n01's, went whole into the rollout's: one incident, a second page merged away.
    alerts = sc.driver_rollout_xids((7, 8), START, stalled_job=None) + [
        a
        for a in sc.nvlink_switch_failure(7, 2, START + timedelta(seconds=20))
        if a.labels["alertname"] != "TrainingJobStalled"
    ]
    by_onset = sorted(alerts, key=lambda a: (_onset(a), a.fingerprint))
    together = _outcome(tmp_path, [by_onset])
    one_by_one = _outcome(tmp_path, [[a] for a in by_onset])
    assert one_by_one == together
    switch = {a.fingerprint for a in alerts if a.labels.get("xid") != "119"}
    assert sorted(len(fps & switch) for _, _, _, fps in together[0]) == [0, len(switch)]
    assert together[1] == 2


def test_the_incident_paged_first_survives_when_a_late_alert_folds_it_in(tmp_path: Path) -> None:
    # The stale exporter of r02-n03 is posted (and paged: no announce delay) before the heat of its GPU 6
    # that began 5 s earlier. The heat's incident takes the exporter's in, and the page told first goes on:
    # the clock stood still between the POSTs, and the heat's earlier onset made its new incident survive.
    heat, stale = LATE["stale exporter posted before the heat it follows"]
    engine = _engine(tmp_path, START + timedelta(seconds=30))
    engine.ingest([stale])
    [paged] = engine.open_incident_ids()
    engine.ingest([heat])
    assert engine.open_incident_ids() == [paged]
    assert set(engine.store.get(paged).alert_fingerprints) == {heat.fingerprint, stale.fingerprint}


def test_a_fault_an_incident_took_before_a_late_alert_rooted_it_goes_where_onset_order_put_it(
    tmp_path: Path,
) -> None:
    # Service chat's latency, then GPU 4 of r01-n02 (a node chat runs on) lost 10 s later, and a power brake
    # on its GPU 6 5 s after that. In onset order the lost GPU roots the latency's incident and the brake,
    # which a lost GPU does not explain, is an incident of its own. The brake was posted before the lost GPU
    # (seeds 281, 297 of batch fuzz --shuffle 30): it joined the latency's incident while it had no root,
    # the lost GPU then rooted it, and the brake stayed inside, shown as part of the GPU's fault.
    latency = _at(0, alertname="ChatLatencyHigh", service="chat", namespace="serving")
    lost = _gpu("r01-n02", 4, "GPULost", 10)
    brake = _gpu("r01-n02", 6, "GpuPowerBrake", 15)
    in_order, _ = _outcome(tmp_path, [[latency], [lost], [brake]])
    assert sorted(len(fps) for _, _, _, fps in in_order) == [1, 2]  # the scenario still parts them
    assert _outcome(tmp_path, [[latency], [brake], [lost]])[0] == in_order


def test_a_fault_that_brought_the_workload_a_late_alert_joined_for_stays_with_it(tmp_path: Path) -> None:
    # llama's latency, heat on a1 (a llama node: evidence), then GPU 3 of b1 lost (job 300's, not llama's)
    # and a2's exporter stale 6 s later (a2 runs llama and job 300). In onset order the lost GPU opens its
    # own incident, the stale exporter joins the latency's and brings job 300, and the merge puts the
    # latency's incident into the lost GPU's: one incident. Posted before the lost GPU, the stale exporter
    # brought job 300 first and the lost GPU joined for it: the stale exporter is no stray to move out
    # (batch fuzz --shuffle 30, seed 1113).
    llama = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "prod", "llama", "c1")
    job = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "300", "c1")
    replicas = (frozenset({("c1", "a1", 0), ("c1", "a1", 1)}), frozenset({("c1", "a2", 0), ("c1", "a2", 1)}))
    ranks = (frozenset(("c1", "a2", g) for g in range(4, 8)), frozenset(("c1", "b1", g) for g in range(4)))
    nodes = [NodeInfo("a1", "c1", "ra", 8), NodeInfo("a2", "c1", "ra", 8), NodeInfo("b1", "c1", "rb", 8)]
    inventory = StaticInventory(nodes, [WorkloadInfo(llama, replicas), WorkloadInfo(job, ranks)], {"c1": 0})
    latency = _at(0, alertname="LlamaLatencyHigh", service="llama", namespace="prod")
    hot = _at(6, alertname="GpuTemperatureHigh", node="a1", gpu="1")
    lost = _at(14, alertname="GPULost", node="b1", gpu="3")
    stale = _at(20, alertname="DCGMExporterStale", Hostname="a2")
    outcomes = []
    for posts in ([[latency], [hot], [lost], [stale]], [[latency], [hot], [stale], [lost]]):
        sql = migrated_sqlite(tmp_path / f"{len(outcomes)}.db")
        clock = FakeClock((START + timedelta(seconds=30)).timestamp())
        engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), inventory)
        for post in posts:
            engine.ingest(post)
        outcomes.append(sorted(n for row, n in engine.store.list_rows()))
    assert outcomes[0] == [4]  # the scenario still makes one incident in onset order
    assert outcomes[1] == outcomes[0]
