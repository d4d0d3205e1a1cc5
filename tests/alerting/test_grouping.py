"""Grouping: an incident's root cause, impact and priority follow what still fires."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alerting import scenarios as sc
from alerting.batch import Batch
from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from alerting.notifiers.base import Notification, build_notification
from alerting.notifiers.blocks import incident_message
from alerting.notifiers.recorder import SlackRecorder
from alerting.outbox import Outbox
from alerting.subscriptions import IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, RecommendedAction, WorkloadKind, WorkloadRef
from tests.alerting.grouping_engine import BASE, _engine, _heat
from tests.alerting.muting_pipeline import Pipeline
from tests.alerting.outbox_only import Quiet
from tests.migrated_store import migrated_sqlite


def _gpu_lost(node: str) -> list[Alert]:
    gpu = {**BASE, "Hostname": node, "gpu": "0"}
    return [Alert({**gpu, "alertname": "GPULost"}), Alert({**gpu, "alertname": "GPUXid", "xid": "79"})]


def _node_down(node: str, status: AlertStatus = AlertStatus.FIRING) -> Alert:
    return Alert({**BASE, "alertname": "NodeDown", "instance": f"{node}:9100", "job": "node"}, status=status)


def test_root_cause_stays_the_rack_after_its_nodes_recover_while_a_lost_gpu_still_fires(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    engine = _engine(tmp_path, clock)
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    gpu_node = sc.node_name(1, 1)
    nodes = [sc.node_name(1, n) for n in range(1, 6)]
    engine.ingest(_gpu_lost(gpu_node))
    clock.advance(30)
    engine.ingest([_node_down(n) for n in nodes])
    (row, _), *others = engine.store.list_rows()
    assert not others and row.root_target["type"] == "rack"  # the nodes' fault took the incident up
    assert [e.message for e in engine.store.get(row.id).timeline if e.kind == "root_cause_changed"] == [
        "root cause is now node down on rack r01"  # operator words, not ``node_down on rack/r01``
    ]
    clock.advance(60)
    engine.ingest([_node_down(n, AlertStatus.RESOLVED) for n in nodes])

    incident = engine.store.get(row.id)
    # What happened was the rack's: its recovery is progress, not a narrower incident (the GPU's).
    assert (incident.root_cause.kind.value, str(incident.root_cause.target)) == ("node_down", "rack/r01")
    assert incident.title.startswith("rack r01 partial outage: 1 node, 1 GPU, ")
    assert incident.title.endswith("; 4 of 5 nodes recovered")
    shown = str(incident_message(build_notification(told[-1])).attachments)
    assert f"`{incident.root_cause.target}`" in shown and "gpu_lost" not in shown
    assert len([e for e in incident.timeline if e.kind == "root_cause_changed"]) == 1
    clock.advance(60)
    engine.ingest([Alert(a.labels, status=AlertStatus.RESOLVED) for a in _gpu_lost(gpu_node)])
    # All back: the list and the postmortem show what happened, not the last alert to resolve.
    assert engine.store.get(row.id).title.startswith("rack r01 partial outage: 5 nodes, 40 GPUs, ")


def test_title_and_root_cause_stay_the_rack_while_its_gpus_cool_one_by_one(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = _engine(tmp_path, clock)
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    hot = [(sc.node_name(1, n), g) for n in (1, 2, 3) for g in (0, 1)]
    engine.ingest([_heat(n, g) for n, g in hot])
    (row, _), *others = engine.store.list_rows()
    assert not others and row.title == "rack r01 thermal"
    titles = []
    for node, gpu in hot[:-1]:
        clock.advance(30)
        engine.ingest([_heat(node, gpu, AlertStatus.RESOLVED)])
        titles.append(engine.store.get(row.id).title)
    # It stays the rack's fault, recovery shown as progress (not "gpu r01-n03/1 thermal" at the end).
    assert titles == [f"rack r01 thermal; {n} of 6 GPUs recovered" for n in range(1, 6)]
    incident = engine.store.get(row.id)
    assert (incident.root_cause.kind.value, str(incident.root_cause.target)) == ("thermal", "rack/r01")
    assert not [e for e in incident.timeline if e.kind == "root_cause_changed"]
    assert {build_notification(c).root_cause_target for c in told} == {"rack/r01"}
    clock.advance(30)
    engine.ingest([_heat(*hot[-1], AlertStatus.RESOLVED)])
    assert engine.store.get(row.id).title == "rack r01 thermal"  # all back: what happened, for the record


def test_root_cause_stays_what_it_was_when_everything_resolves_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = _engine(tmp_path, clock)
    nodes = [sc.node_name(1, n) for n in range(1, 6)]
    engine.ingest(_gpu_lost(sc.node_name(1, 1)) + [_node_down(n) for n in nodes])
    (row, _), *_ = engine.store.list_rows()
    before = (row.root_kind, row.root_target)
    clock.advance(timedelta(minutes=1).total_seconds())
    gpu = [Alert(a.labels, status=AlertStatus.RESOLVED) for a in _gpu_lost(sc.node_name(1, 1))]
    engine.ingest([_node_down(n, AlertStatus.RESOLVED) for n in nodes] + gpu)
    after = engine.store.get(row.id)
    assert after.timeline[-1].kind == "quiet"  # all resolved, the quiet period started
    assert (after.root_cause.kind.value, str(after.root_cause.target)) == (before[0], "rack/r01")


def test_faults_of_other_kinds_on_other_nodes_that_a_job_joined_do_not_root_the_incident_at_their_rack(
    tmp_path: Path,
) -> None:
    # The soak: GPU r07-n01/2 runs hot (the job's step time was high first, so the job roots the incident
    # and takes in what hits it); the straggler's GPU on r07-n04 reads as heat to the thermal model, then a
    # GPU hangs on r07-n06. Once the step-time alert resolved the root became "thermal on rack r07": the
    # rack was not the cause of any of them.
    clock = FakeClock()
    engine = _engine(tmp_path, clock)
    start = clock.now()

    def post(labels: dict[str, str], onset: float, status: AlertStatus = AlertStatus.FIRING) -> None:
        engine.ingest([Alert({**BASE, **labels}, starts_at=start + timedelta(seconds=onset), status=status)])
        clock.advance(60)

    def gpu(node: str, index: int, name: str, **labels: str) -> dict[str, str]:
        return {"Hostname": node, "gpu": str(index), "alertname": name, **labels}

    step_time = {"alertname": "TrainingStepTimeHigh", "slurm_job": "llm-70b", "rank": "29"}
    post(gpu("r07-n01", 2, "GpuClockSlowdown", fault_kind="thermal"), 0)
    post(step_time, -30)
    post(gpu("r07-n04", 5, "GpuwardenAnomaly", model="thermal", **{"for": "DCGM_FI_DEV_SM_CLOCK"}), 120)
    post(gpu("r07-n06", 1, "GpuHung"), 180)
    post(step_time, -30, AlertStatus.RESOLVED)
    [incident_id] = engine.open_incident_ids()
    incident = engine.store.get(incident_id)
    assert len(incident.alert_fingerprints) == 4  # one incident: the job's, as designed
    # The hung GPU, the outage that stopped the job, is the root (as it was while the step time fired).
    assert (incident.root_cause.kind.value, str(incident.root_cause.target)) == ("hung_gpu", "gpu/r07-n06/1")
    assert "rack" not in incident.title


def _told_by_outbox(engine: IncidentEngine, clock: FakeClock) -> Outbox:
    outbox = Outbox(engine.store.engine, [Quiet()], clock)
    engine.subscribe(outbox)
    return outbox


def _stored(outbox: Outbox) -> list[Notification]:
    return [Notification.model_validate_json(m.payload) for m in outbox.messages()]


def test_each_change_of_what_an_incidents_alerts_recommend_reaches_the_outbox(tmp_path: Path) -> None:
    # Each re-post changes only what the alert recommends: told with the incident's last event, the second
    # change had the first's idempotency key, the outbox took it for a repeat, and Slack's Recommended
    # section and the webhook's recommended_actions kept "reset the GPU".
    clock = FakeClock()
    engine = _engine(tmp_path, clock)
    outbox = _told_by_outbox(engine, clock)
    anomaly = {**BASE, "alertname": "GpuwardenAnomaly", "Hostname": sc.node_name(1, 1), "gpu": "7"}
    for action in (
        RecommendedAction.INVESTIGATE,
        RecommendedAction.RESET_GPU,
        RecommendedAction.RESTART_NODE,
    ):
        engine.ingest([Alert(anomaly, recommended_action=action)])
        clock.advance(30)
    told = _stored(outbox)
    assert [n.recommended_actions for n in told] == [("investigate",), ("reset_gpu",), ("restart_node",)]
    assert [n.event_kind for n in told[1:]] == ["reassessed", "reassessed"]  # edits, no thread reply each
    (row, _), *_ = engine.store.list_rows()
    assert [e.kind for e in engine.store.get(row.id).timeline].count("reassessed") == 2


def test_an_error_ratio_that_moves_within_its_priority_tells_nobody(tmp_path: Path) -> None:
    # Slack and the webhook show no error ratio: 5% then 8% then 12% is the same P2 message. It was sent
    # once anyway (an edit, and a thread reply repeating the opening's "priority P2: error ratio 5%").
    clock = FakeClock()
    engine = _engine(tmp_path, clock)
    outbox = _told_by_outbox(engine, clock)
    errors = {**BASE, "alertname": "ChatHighErrorRate", "namespace": "serving", "service": "chat"}
    for ratio in ("0.05", "0.08", "0.12"):
        engine.ingest([Alert(errors, annotations={"error_ratio": ratio})])
        clock.advance(30)
    (row, _), *_ = engine.store.list_rows()
    assert (row.priority, row.impact["error_ratio"]) == ("P2", 0.12)  # the store has the latest figure
    assert [n.change.value for n in _stored(outbox)] == ["opened"]


def test_an_incident_assessed_again_as_another_gives_back_replicas_of_its_service_tells_the_outbox(
    tmp_path: Path,
) -> None:
    # Node a05's outage stopped a job (P0) and took a replica of svc10; a02's took two more, then came
    # back. a05's incident, P0 throughout, was assessed again each time (the service's loss crossed a
    # tier) and told with its last event, the opening's "priority": the second had the first's key, the
    # outbox dropped it, and Slack kept "(more in other incidents)" after the other incident had ended.
    svc = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "prod", "svc10", "k")
    job = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "train", "k")
    units = tuple(frozenset({("k", f"a0{n}", g)}) for n in range(1, 6) for g in range(2))
    inventory = StaticInventory(
        [NodeInfo(f"a0{n}", "k", f"r{n}", 2) for n in range(1, 6)],
        [WorkloadInfo(svc, units[:9]), WorkloadInfo(job, (units[9],))],
        {"k": 0},
    )
    clock = FakeClock()
    sql = migrated_sqlite(tmp_path / "incidents.db")
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), inventory)
    outbox = _told_by_outbox(engine, clock)

    def lost(node: str, status: AlertStatus = AlertStatus.FIRING) -> list[Alert]:
        xid = {"alertname": "GPUXid", "cluster": "k", "Hostname": node, "xid": "79"}
        return [Alert({**xid, "gpu": str(g)}, status=status) for g in range(2)]

    for alerts in (lost("a05"), lost("a02"), lost("a02", AlertStatus.RESOLVED)):
        engine.ingest(alerts)
        clock.advance(1)
    first = next(r for r, _ in engine.store.list_rows() if "a05" in r.title)
    assert first.priority == "P0" and first.title.endswith("svc10 11% of replicas lost")
    told = [n for n in _stored(outbox) if n.incident_id == first.id]
    assert [(n.event_kind, n.title.endswith("(more in other incidents)")) for n in told] == [
        ("opened", False),
        ("retitled", True),
        ("retitled", False),
    ]


def test_a_recommendation_flipping_at_every_evaluation_edits_the_slack_message_and_pages_nobody(
    tmp_path: Path,
) -> None:
    # A detector near its threshold recommends "investigate", then "reset the GPU", by turns, every 30 s
    # all night. Each flip is told (Slack's Recommended section and a webhook's recommended_actions follow
    # it), as an edit of the incident's message: no thread reply, no broadcast, no webhook event that pages.
    with SlackRecorder() as recorder:
        pipe = Pipeline(migrated_sqlite(tmp_path / "incidents.db"), recorder)
        anomaly = {"cluster": "c1", "alertname": "GpuwardenAnomaly", "node": "n05", "gpu": "3"}
        for k in range(10):
            action = RecommendedAction.RESET_GPU if k % 2 else RecommendedAction.INVESTIGATE
            pipe.clock.advance(30)
            pipe.engine.ingest([Alert(anomaly, recommended_action=action)])
            pipe.outbox.dispatch_due()
        pipe.hook.close()
    assert pipe.replies() == ["opened"] and len(recorder.visible_in_channel()) == 1
    assert pipe.parent().edits == 9
    posts = recorder.hook_posts("ops")
    assert [(p["event"]["kind"], p["event"]["pages"]) for p in posts[1:]] == [("reassessed", False)] * 9
    assert [p["incident"]["recommended_actions"] for p in posts[-2:]] == [["investigate"], ["reset_gpu"]]


def test_a_root_cause_moved_away_and_back_within_one_transaction_is_not_told_as_moved(tmp_path: Path) -> None:
    # Within one POST an incident's root may move and move back: the merge pass brings alerts in and it
    # rises to the rack, then regrouping takes them out again (``regrouping._move``: members popped, the
    # root recomputed from what is left). It ended where it began, yet "root cause is now GPU lost on gpu
    # r01-n01/0" went on its timeline, as a Slack reply and a webhook update: a move that did not happen.
    engine, first, told = _root_moved_away_and_back(tmp_path)
    incident = engine.store.get(first)
    assert str(incident.root_cause.target) == "gpu/r01-n01/0"
    assert [e.message for e in incident.timeline if e.kind == "root_cause_changed"] == []
    assert [c.event.kind for c in told if c.event.kind == "root_cause_changed"] == []


def test_a_root_cause_moved_away_and_back_within_one_transaction_is_not_told_as_retitled(
    tmp_path: Path,
) -> None:
    # The move taken back, what the incident shows was compared with what it showed halfway (the rack's
    # title), not with what it was told as before the transaction: "retitled: gpu r01-n01/0 lost ..." went
    # on its timeline, as a Slack reply and a webhook update, naming the title it already had.
    engine, first, told = _root_moved_away_and_back(tmp_path)
    assert [e.message for e in engine.store.get(first).timeline if e.kind == "retitled"] == []
    assert [(c.kind.value, c.event.kind) for c in told] == []


def _root_moved_away_and_back(tmp_path: Path) -> tuple[IncidentEngine, str, list[IncidentChange]]:
    """Three GPUs of a rack lost, each its own incident; in one transaction the first takes the others'
    alerts (its root rises to the rack) and gives them back (its root is its GPU again). The engine, the
    first incident and what was told since."""
    clock = FakeClock()
    engine = _engine(tmp_path, clock)
    for n in (1, 2, 3):
        engine.ingest([Alert({**BASE, "alertname": "GPULost", "Hostname": sc.node_name(1, n), "gpu": "0"})])
        clock.advance(30)
    (first, *others) = sorted(engine.open_incident_ids(), key=lambda i: engine.store.get(i).opened_at)
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    with engine._lock, engine._sessions() as session, session.begin(), session.no_autoflush:
        batch = Batch(session, clock.now())
        inc = engine._open[first]
        taken = {fp: m for o in others for fp, m in engine._open[o].members.items()}
        inc.members.update(taken)
        engine._recompute(batch, inc)
        assert inc.root_path == (sc.CLUSTER, "r01")  # it rose to the rack
        for fp in taken:
            del inc.members[fp]
        inc.root_moved = True
        engine._recompute(batch, inc)
    engine.tick()
    return engine, first, told
