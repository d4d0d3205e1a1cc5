"""The incidents a set of alerts makes do not depend on the order, the batching or the luck of a run.

Prometheus sends a rule group's alerts in any order and batching, HA peers send them twice, and incident ids
are random draws: the same alerts must give the same incidents as they give in onset order.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import alerting.joining
from alerting import scenarios as sc
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from alerting.migrate import upgrade
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, WorkloadKind, WorkloadRef
from tests.alerting.arrival_streams import START, _batches, _engine, _onset, _ranks
from tests.migrated_store import migrated_sqlite

Outcome = frozenset[tuple[str, str, str, str, frozenset[str]]]


PAIRS = {
    # Different racks, at the same time: two incidents, each with the ranks its fault holds.
    "rack r07 + nvswitch r08-n03": sc.rack_failure(7, START)
    + sc.nvlink_switch_failure(8, 3, START + timedelta(seconds=20)),
    "rack r07 + rack r05": sc.rack_failure(7, START)
    + sc.rack_failure(5, START + timedelta(seconds=30), seed=3, stalled_job=None),
    "rack r05 + rollout r02,r03": sc.rack_failure(5, START, stalled_job=None)
    + sc.driver_rollout_xids((2, 3), START, stalled_job=None),
    "rollout r07,r08 + node r02-n04": sc.driver_rollout_xids((7, 8), START)
    + sc.node_failure(2, 4, START + timedelta(seconds=40)),
    # One rack: two NVSwitch failures are one signal spreading in the rack (XID 74 and NVLink errors both).
    "nvswitch r08-n03 + nvswitch r08-n05": sc.nvlink_switch_failure(8, 3, START)
    + sc.nvlink_switch_failure(8, 5, START + timedelta(seconds=20), seed=2),
    # One rack: a switch failure the rack's power loss swallows.
    "nvswitch r07-n03 + rack r07": sc.nvlink_switch_failure(7, 3, START)
    + sc.rack_failure(7, START + timedelta(seconds=30)),
    # A driver rollout (XID 119) beside another fault: the rollout is one incident whatever racks it
    # reached, the other fault its own, and XID 119s on the other fault's node are the rollout's.
    "rollout r01,r02 + node r01-n03": sc.driver_rollout_xids((1, 2), START, stalled_job=None)
    + sc.node_failure(1, 3, START + timedelta(seconds=20)),
    "node r07-n01 + rollout r07,r08": sc.node_failure(7, 1, START)
    + sc.driver_rollout_xids((7, 8), START + timedelta(seconds=20), stalled_job=None),
    "rollout r07,r08 + nvswitch r07-n02": sc.driver_rollout_xids((7, 8), START, stalled_job=None)
    + sc.nvlink_switch_failure(7, 2, START + timedelta(seconds=20)),
    "rollout r07,r08 + nvswitch r08-n04": sc.driver_rollout_xids((7, 8), START)
    + sc.nvlink_switch_failure(8, 4, START + timedelta(seconds=30)),
    "rollout r07,r08 + rack r07": sc.driver_rollout_xids((7, 8), START, stalled_job=None)
    + sc.rack_failure(7, START + timedelta(seconds=20)),
    "job stall + rollout r03,r04": sc.job_wide_stall(START, ranks=16)
    + sc.driver_rollout_xids((3, 4), START + timedelta(seconds=5), stalled_job=None),
}


def _outcome(engine: IncidentEngine) -> Outcome:
    """Each open incident: root kind and target, priority, title and its alerts (not its random id)."""
    found = set()
    for row, _ in engine.store.list_rows():
        incident = engine.store.get(row.id)
        target = str(sorted(row.root_target.items()))
        found.add(
            (row.root_kind, target, row.priority, incident.title, frozenset(incident.alert_fingerprints))
        )
    return frozenset(found)


def _feed(tmp_path: Path, posts: list[list[Alert]], at: datetime) -> Outcome:
    engine = _engine(tmp_path, at)
    for post in posts:
        engine.ingest(post)
    return _outcome(engine)


def _orders(alerts: list[Alert]) -> Iterator[tuple[str, list[list[Alert]]]]:
    """A handful of arrival orders and batchings (deterministic seeds)."""
    by_onset = sorted(alerts, key=lambda a: (_onset(a), a.fingerprint))
    yield "reversed, one per POST", [[a] for a in reversed(by_onset)]
    yield "onset order, all in one POST", [by_onset]
    for seed in (0, 1):
        shuffled = list(alerts)
        random.Random(seed).shuffle(shuffled)
        yield f"shuffled {seed}, POSTs of 64", _batches(shuffled, 64)
    shuffled = list(alerts)
    random.Random(2).shuffle(shuffled)
    yield "shuffled 2, all in one POST, sent twice", [shuffled, list(reversed(shuffled))]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Outcome]]:
    """A pair's outcome in each arrival order of ``_orders``, fed once for both tests that read it."""
    outcomes: dict[str, dict[str, Outcome]] = {}

    def of(name: str) -> dict[str, Outcome]:
        if name not in outcomes:
            alerts = _ranks(PAIRS[name])
            at, tmp = max(_onset(a) for a in alerts), tmp_path_factory.mktemp("orders")
            outcomes[name] = {order: _feed(tmp, posts, at) for order, posts in _orders(alerts)}
        return outcomes[name]

    return of


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_two_faults_give_the_same_incidents_in_any_order_and_batching(
    tmp_path: Path, name: str, fed: Callable[[str], dict[str, Outcome]]
) -> None:
    alerts = _ranks(PAIRS[name])
    at = max(_onset(a) for a in alerts)
    by_onset = sorted(alerts, key=lambda a: (_onset(a), a.fingerprint))
    expected = _feed(tmp_path, _batches(by_onset, 64), at)
    for order, outcome in fed(name).items():
        assert outcome == expected, order


@pytest.mark.parametrize("name", sorted(n for n in PAIRS if "rollout" in n and "job stall" not in n))
def test_a_rollout_is_one_incident_of_its_xids_beside_another_fault_of_its_own(
    name: str, fed: Callable[[str], dict[str, Outcome]]
) -> None:
    alerts = _ranks(PAIRS[name])
    xids = {a.fingerprint for a in alerts if a.labels.get("xid") == "119"}
    other = {a.fingerprint for a in alerts if a.labels["alertname"] not in ("GPUXid", "TrainingJobStalled")}
    other |= {a.fingerprint for a in alerts if a.labels.get("xid") not in (None, "119")}
    for order, outcome in fed(name).items():
        holding = [fps for _k, _t, _p, _title, fps in outcome]
        rollout = [fps for fps in holding if xids <= fps]
        assert len(rollout) == 1, order  # every XID 119, on whatever node, in one incident
        assert not rollout[0] & other, order  # the other fault's alerts are not the rollout's
        assert any(other <= fps for fps in holding), order  # the other fault is one incident


def _ids(monkeypatch: pytest.MonkeyPatch, descending: bool) -> None:
    """Incident ids drawn from a counter, ascending or descending with creation, instead of uuid4."""
    counter = itertools.count()

    class Draw:
        @staticmethod
        def uuid4() -> uuid.UUID:
            n = next(counter)
            return uuid.UUID(int=((1 << 48) - 1 - n if descending else n) << 80 | 1)

    monkeypatch.setattr(alerting.joining, "uuid", Draw)


def test_the_same_alerts_in_the_same_order_give_the_same_incidents_whatever_ids_are_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two switch failures in one rack, shuffled: incidents of one POST used to tie, broken on the random id.
    alerts = sc.nvlink_switch_failure(8, 3, START) + sc.nvlink_switch_failure(
        8, 5, START + timedelta(seconds=20), seed=2
    )
    random.Random(5).shuffle(alerts)
    at = max(_onset(a) for a in alerts)
    outcomes = set()
    for descending in (False, True):
        _ids(monkeypatch, descending)
        outcomes.add(_feed(tmp_path, _batches(alerts, 64), at))
    assert len(outcomes) == 1


def _stall(rank: int, at: float) -> Alert:
    labels = {"cluster": sc.CLUSTER, "alertname": "TrainingJobStalled", "slurm_job": "llm-70b"}
    return Alert({**labels, "rank": str(rank)}, starts_at=START + timedelta(seconds=at))


def _gpu(node: str, index: int, name: str, at: float, **extra: str) -> Alert:
    labels = {"cluster": sc.CLUSTER, "Hostname": node, "gpu": str(index), "UUID": sc.gpu_uuid(node, index)}
    return Alert({**labels, "alertname": name, **extra}, starts_at=START + timedelta(seconds=at))


def _where(tmp_path: Path, posts: list[list[Alert]]) -> dict[str, tuple[str, str, str]]:
    """Alert fingerprint -> (root kind, root name, priority) of the incident holding it."""
    engine = _engine(tmp_path, START + timedelta(seconds=120))
    for post in posts:
        engine.ingest(post)
    out = {}
    for row, _ in engine.store.list_rows():
        root = (row.root_kind, str(row.root_target.get("name") or row.root_target.get("node")), row.priority)
        out.update(dict.fromkeys(engine.store.get(row.id).alert_fingerprints, root))
    return out


def test_a_stalled_rank_joins_the_incident_whose_fault_holds_its_gpu(tmp_path: Path) -> None:
    # Rack r07 loses power while an NVSwitch fails on r08-n03: ranks 0-63 run on r07, 80-87 on r08-n03.
    alerts = _ranks(sc.rack_failure(7, START) + sc.nvlink_switch_failure(8, 3, START + timedelta(seconds=20)))
    stalls = [a for a in alerts if a.labels["alertname"] == "TrainingJobStalled"]
    stalls_first = stalls + [a for a in alerts if a not in stalls]
    for posts in ([stalls_first], _batches(list(reversed(stalls_first)), 1)):
        where = _where(tmp_path, posts)
        for alert in stalls:
            rank = int(alert.labels["rank"])
            expected = ("rack_down", "r07", "P0") if rank < 64 else ("nvlink", "r08-n03", "P0")
            assert where[alert.fingerprint] == expected, rank


def test_a_stall_opened_incident_does_not_glue_two_unrelated_faults(tmp_path: Path) -> None:
    # One POST, the stalls of r08-n03's ranks first, then GPU faults on r07 and the NVSwitch on r08-n03.
    alerts = [
        _stall(87, 85),
        _gpu("r08-n03", 4, "GPUNVLinkErrors", 25),
        _gpu("r07-n05", 1, "GPUXid", 7, xid="79"),
        _gpu("r07-n06", 1, "GPULost", 15),
        _stall(86, 95),
        _gpu("r08-n03", 0, "GPUXid", 28, xid="74"),
    ]
    where = _where(tmp_path, [alerts])
    assert len(set(where.values())) == 3  # each r07 GPU its own fault, the switch its own
    nvlink = {where[a.fingerprint] for a in alerts if a.labels.get("Hostname") == "r08-n03"}
    assert len(nvlink) == 1
    assert {where[a.fingerprint] for a in alerts[::4]} == nvlink  # ranks 87 and 86 run on r08-n03
    assert where[alerts[2].fingerprint] != where[alerts[3].fingerprint]


def test_a_stale_exporter_in_another_rack_does_not_join_a_partial_rack_outage(tmp_path: Path) -> None:
    r05 = [_gpu(f"r05-n0{n}", g, "GPULost", 30) for n in (1, 2) for g in (0, 1)]
    r05 += [_gpu(f"r05-n0{n}", g, "DCGMExporterStale", 60) for n in (1, 2) for g in (0, 1)]
    r07 = _gpu("r07-n04", 6, "DCGMExporterStale", 49)
    where = _where(tmp_path, [r05, [r07], [_stall(30, 70)]])
    assert where[r05[0].fingerprint] == ("gpu_lost", "r05", "P2")  # no job on r05
    assert where[r07.fingerprint] != where[r05[0].fingerprint]


def test_a_rack_power_loss_arriving_over_half_a_minute_pages_once_by_default(tmp_path: Path) -> None:
    # Each alert first reaches gpuwarden within 30 s of its onset (rule evaluation, Prometheus' batching);
    # the engine ticks every 5 s. Announced at once, the rack's first alerts opened 8 incidents, 7 of them
    # then resolved as merged: 8 pages for one fault.
    from alerting.subscriptions import ChangeKind  # noqa: PLC0415

    alerts = sc.rack_failure(7, START)
    rng = random.Random(0)
    arrives = {a.fingerprint: _onset(a) + timedelta(seconds=rng.random() * 30) for a in alerts}
    path = str(tmp_path / "announce.db")
    upgrade(make_engine(path))
    clock = FakeClock(START.timestamp())
    engine = IncidentEngine(make_engine(path), clock, AlertingConfig(), sc.fleet_inventory())
    opened: list[str] = []
    engine.subscribe(
        lambda change: opened.append(change.incident.id) if change.kind is ChangeKind.OPENED else None
    )
    sent: set[str] = set()
    while clock.now() <= START + timedelta(seconds=150):
        due = [a for a in alerts if a.fingerprint not in sent and arrives[a.fingerprint] <= clock.now()]
        if due:
            engine.ingest(due)
            sent |= {a.fingerprint for a in due}
        engine.tick()
        clock.advance(5)
    assert len(opened) == 1
    [(row, count)] = engine.store.list_rows()
    assert (row.id, row.root_kind, count) == (opened[0], "rack_down", len(alerts))


def test_an_announced_incident_survives_when_a_larger_fault_takes_it_in(tmp_path: Path) -> None:
    # An NVSwitch fails on r07-n03 and is announced; 30 s later rack r07 loses power. The rack's incident
    # explains the switch's, but the page people already hold must not end as "merged into" a newer one.
    switch = [
        a for a in sc.nvlink_switch_failure(7, 3, START) if a.labels["alertname"] != "TrainingJobStalled"
    ]
    engine = _engine(tmp_path, START + timedelta(seconds=15))
    engine.ingest(switch)
    [announced] = engine.open_incident_ids()
    rack = sc.rack_failure(7, START + timedelta(seconds=30))
    assert isinstance(engine.clock, FakeClock)
    engine.clock.advance(60)
    for i in range(0, len(rack), 64):
        engine.ingest(rack[i : i + 64])
    assert engine.open_incident_ids() == [announced]
    incident = engine.store.get(announced)
    assert (incident.root_cause.kind.value, len(incident.alert_fingerprints)) == (
        "rack_down",
        len(switch) + len(rack),
    )


def _served_node() -> StaticInventory:
    """Node s1 of rack ra, cluster c1: a replica of service llama on GPUs 0-1 and one on GPUs 2-3."""
    ref = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "prod", "llama", "c1")
    units = (frozenset({("c1", "s1", 0), ("c1", "s1", 1)}), frozenset({("c1", "s1", 2), ("c1", "s1", 3)}))
    return StaticInventory([NodeInfo("s1", "c1", "ra", 8)], [WorkloadInfo(ref, units)], {"c1": 0})


@pytest.mark.parametrize("together", [False, True], ids=["one POST each", "one POST"])
def test_a_services_symptom_joins_the_fault_on_its_gpus_that_came_first_in_the_same_post_too(
    tmp_path: Path, together: bool
) -> None:
    # An XID 13 on a replica's GPU, the service's latency alert, then an XID 13 on another replica's GPU
    # of the same node. Posted one by one, the latency joined the first XID's incident and so did the second
    # XID (the same signal on another GPU of the node). Posted together, the first XID's new incident did
    # not yet count the service, so the latency opened an incident of its own, which took the second XID:
    # two incidents, the service's "degraded" holding the second XID, and the first XID alone at P3.
    def xid(gpu: int, at: float) -> Alert:
        labels = {"alertname": "GPUXid", "cluster": "c1", "Hostname": "s1", "gpu": str(gpu), "xid": "13"}
        return Alert(labels, starts_at=START + timedelta(seconds=at))

    latency = Alert(
        {"alertname": "LlamaLatencyHigh", "service": "llama", "namespace": "prod"},
        starts_at=START + timedelta(seconds=30),
    )
    alerts = [xid(0, 0), latency, xid(2, 40)]
    sql = migrated_sqlite(tmp_path / "served.db")
    clock = FakeClock((START + timedelta(seconds=60)).timestamp())
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), _served_node())
    for post in [alerts] if together else [[a] for a in alerts]:
        engine.ingest(post)
    [incident_id] = engine.open_incident_ids()
    incident = engine.store.get(incident_id)
    assert set(incident.alert_fingerprints) == {a.fingerprint for a in alerts}
    assert (incident.root_cause.kind.value, incident.priority.value) == ("xid", "P2")
    assert [row.merged_into for row, _ in engine.store.list_rows()] == [None]  # no incident opened to merge


@pytest.mark.parametrize("seed", range(8))
def test_a_deadlocked_job_is_stalled_whichever_of_its_ranks_alerts_began_first(
    tmp_path: Path, seed: int
) -> None:
    # Every rank of a deadlocked job raises its step-time alert and its stall alert within one evaluation:
    # the incident was a "straggler" (one slow rank) where a step-time alert began first (three seeds here),
    # "stalled" where a stall did, and so told two stories of one storm (bench_incidents' job-wide stall).
    alerts = sc.job_wide_stall(START, ranks=16, seed=seed)
    for posts in ([alerts], _batches(sorted(alerts, key=_onset), 4)):
        (tmp_path / str(len(posts))).mkdir()
        where = _where(tmp_path / str(len(posts)), posts)
        assert set(where.values()) == {("job_stalled", "llm-70b", "P0")}, where


def test_a_services_replicas_lost_in_two_incidents_are_titled_alike_in_one_post_and_one_by_one(
    tmp_path: Path,
) -> None:
    # Service llama has two replicas on s1 and two on s2. A GPU of s1 lost, one of s2 lost 10 s later (two
    # faults, two incidents), then the service's latency alert, which joins s1's. One by one, s1's incident
    # was assessed again for the latency after s2's took its replica, and said "(more in other incidents)";
    # in one POST it was assessed before s2's incident counted its GPU, and s2's loss crossed no priority
    # tier, so it was not assessed again: its title did not say so.
    ref = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "prod", "llama", "c1")
    units = tuple(frozenset({("c1", n, g), ("c1", n, g + 1)}) for n in ("s1", "s2") for g in (0, 2))
    nodes = [NodeInfo("s1", "c1", "ra", 8), NodeInfo("s2", "c1", "ra", 8)]

    def lost(node: str, at: float) -> Alert:
        labels = {"alertname": "GPULost", "cluster": "c1", "Hostname": node, "gpu": "0"}
        return Alert(labels, starts_at=START + timedelta(seconds=at))

    latency = Alert(
        {"alertname": "LlamaLatencyHigh", "service": "llama", "namespace": "prod"},
        starts_at=START + timedelta(seconds=20),
    )
    alerts = [lost("s1", 0), lost("s2", 10), latency]
    titles = []
    for posts in ([[a] for a in alerts], [alerts]):
        sql = migrated_sqlite(tmp_path / f"{len(posts)}.db")
        clock = FakeClock((START + timedelta(seconds=60)).timestamp())
        inventory = StaticInventory(nodes, [WorkloadInfo(ref, units)], {"c1": 0})
        engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), inventory)
        for post in posts:
            engine.ingest(post)
        titles.append(sorted(engine.store.get(i).title for i in engine.open_incident_ids()))
    assert titles[0] == titles[1]
    assert len(titles[0]) == 2
    assert all(t.endswith("25% of replicas lost (more in other incidents)") for t in titles[0])


def _latency(at: float) -> Alert:
    labels = {"alertname": "LlamaLatencyHigh", "service": "llama", "namespace": "prod"}
    return Alert(labels, starts_at=START + timedelta(seconds=at))


def _fault(name: str, node: str, gpu: int, at: float) -> Alert:
    labels = {"alertname": name, "cluster": "c1", "Hostname": node, "gpu": str(gpu)}
    return Alert(labels, starts_at=START + timedelta(seconds=at))


def _incidents(tmp_path: Path, posts: list[list[Alert]], inventory: StaticInventory) -> list[tuple[str, int]]:
    """Each incident's root kind and number of alerts, merged-away ones left out."""
    sql = migrated_sqlite(tmp_path / f"{uuid.uuid4().hex}.db")
    clock = FakeClock((START + timedelta(seconds=120)).timestamp())
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), inventory)
    for post in posts:
        engine.ingest(post)
    return sorted((row.root_kind, n) for row, n in engine.store.list_rows() if row.merged_into is None)


@pytest.mark.parametrize("together", [False, True], ids=["one POST each", "one POST"])
def test_a_fault_begun_after_a_services_symptom_does_not_root_its_incident_for_the_rest_of_the_post(
    tmp_path: Path, together: bool
) -> None:
    # Service llama's latency alert, a power brake on GPU 7 of its node s1 a minute later (not a GPU of the
    # service: no capacity taken, evidence, the root stays the service), then NVLink errors on GPU 6. One by
    # one, both faults joined the service's incident. In one POST the brake rooted the incident at its GPU
    # until the end of the transaction, so the NVLink errors, which a brake does not explain, opened an
    # incident of their own ("gpu s1/6 NVLink errors").
    alerts = [_latency(0), _fault("GpuPowerBrake", "s1", 7, 60), _fault("NVLinkErrors", "s1", 6, 70)]
    posts = [alerts] if together else [[a] for a in alerts]
    assert _incidents(tmp_path, posts, _served_node()) == [("service_degraded", 3)]


@pytest.mark.parametrize("together", [False, True], ids=["one POST each", "one POST"])
def test_a_racks_heat_takes_in_a_services_incident_whose_fault_is_that_heat(
    tmp_path: Path, together: bool
) -> None:
    # GPUs running hot on s2 and s3, llama's latency alert, a GPU hot on s4 (three nodes: the rack's heat),
    # then one hot on s1, a GPU of llama's. One by one, the last joined the rack's heat, which took the
    # service's incident in. In one POST the rack's heat rolls up only as the transaction ends, and the last
    # one joined the service's incident (its node hosts llama; evidence only, it began after the symptom):
    # the heat now takes that incident in too, its one fault being the heat on a GPU of the rack.
    ref = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "prod", "llama", "c1")
    units = (frozenset({("c1", "s1", 0), ("c1", "s1", 1)}), frozenset({("c1", "s1", 2), ("c1", "s1", 3)}))
    nodes = [NodeInfo(f"s{i}", "c1", "ra", 8) for i in (1, 2, 3, 4)]
    inventory = StaticInventory(nodes, [WorkloadInfo(ref, units)], {"c1": 0})
    hot = "GpuTemperatureHigh"
    alerts = [
        _fault(hot, "s2", 2, 3),
        _fault(hot, "s3", 0, 25),
        _latency(28),
        _fault(hot, "s4", 7, 59),
        _fault(hot, "s1", 3, 76),
    ]
    posts = [alerts] if together else [[a] for a in alerts]
    assert _incidents(tmp_path, posts, inventory) == [("thermal", 5)]


@pytest.mark.parametrize(
    "posts",
    ["one POST each, in onset order", "one POST in onset order", "one POST by labels", "one POST reversed"],
)
def test_the_alerts_of_one_post_group_as_in_onset_order_whatever_order_it_lists_them_in(
    tmp_path: Path, posts: str
) -> None:
    # An XID 13 on GPU 5 of s1, then s1's exporter stale 30 s later: the stale exporter joins the XID's
    # incident, its node's fault (``test_correlation``). Prometheus and Alertmanager list a group's alerts
    # by their labels, so one POST of both lists the stale exporter first: taken in that order, it opened
    # an incident of its own and the XID, which a stale exporter does not explain, opened another.
    labels = {"alertname": "XidError", "cluster": "c1", "Hostname": "s1", "gpu": "5", "xid": "13"}
    xid = Alert(labels, starts_at=START)
    stale = Alert(
        {"alertname": "DCGMExporterStale", "cluster": "c1", "Hostname": "s1"},
        starts_at=START + timedelta(seconds=30),
    )
    fed = {
        "one POST each, in onset order": [[xid], [stale]],
        "one POST in onset order": [[xid, stale]],
        "one POST by labels": [sorted([xid, stale], key=lambda a: sorted(a.labels.items()))],
        "one POST reversed": [[stale, xid]],
    }[posts]
    assert _incidents(tmp_path, fed, _served_node()) == [("xid", 2)]
