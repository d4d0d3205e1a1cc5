"""Joining beside a silenced incident: what joins it and stays muted, what is a fault of its own, and a
fault beside what the silence was set for (joined, merged or reopening it) ending the silence."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting import scenarios
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.subscriptions import IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, FaultKind, IncidentState
from tests.alerting.joining_alerts import ANOMALY, _engine_fleet, _on
from tests.migrated_store import migrated_sqlite


# A quiet incident: all its alerts resolved, it waits out its quiet period (still open). node r07-n01 runs
# ranks of the training job (spare GPUs: a GPU lost stalls it, P1).
def _lost_gpu_3_silenced(tmp_path: Path, *, quiet: bool = True) -> tuple[FakeClock, IncidentEngine, str]:
    """GPU 3 of r07-n01 lost (incident A, P1), A silenced for an hour; with ``quiet``, the GPU back since."""
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    clock = FakeClock()
    config = AlertingConfig(announce_delay_seconds=0)
    engine = IncidentEngine(make_engine(path), clock, config, scenarios.fleet_inventory(spare_gpus=8))
    engine.ingest([_on(3, alertname="GpuLost")])
    [incident_id] = engine.open_incident_ids()
    assert engine.store.get(incident_id).priority.value == "P1"
    engine.silence_incident(incident_id, 3600, "op")
    clock.advance(30)
    if quiet:
        engine.ingest([_on(3, AlertStatus.RESOLVED, alertname="GpuLost")])
        assert engine.store.get(incident_id).state is IncidentState.TRIGGERED  # waits out its quiet period
        clock.advance(5)
    return clock, engine, incident_id


def _muted(engine: IncidentEngine, alert: Alert) -> list[str]:
    """The silences muting ``alert`` now (Alertmanager's ``silencedBy``), after a repeat of it."""
    engine.ingest([alert])
    row = engine.store.alert(alert.fingerprint)
    assert row is not None
    return engine.mute_state(alert.fingerprint, dict(alert.labels), row.incident_id)[0]


def _kept_gpu_lost(engine: IncidentEngine, incident_id: str) -> None:
    """Incident A still says what it was: GPU 3 lost, P1, and holds only its own alert."""
    quiet = engine.store.get(incident_id)
    assert quiet.merged_into is None and quiet.state is IncidentState.TRIGGERED
    assert quiet.root_cause.kind is FaultKind.GPU_LOST and quiet.title.startswith("gpu r07-n01/3 lost")
    assert (quiet.priority.value, len(quiet.alert_fingerprints)) == ("P1", 1)
    assert [e.kind for e in quiet.timeline if e.kind in ("root_cause_changed", "merged", "alert_added")] == [
        "alert_added"
    ]


def test_a_new_fault_beside_a_quiet_silenced_incident_opens_its_own_incident_and_is_not_muted(
    tmp_path: Path,
) -> None:
    # Anomalies on GPUs 5 and 6 of the node joined A: its root became "unknown @ node" (P1 fell to P3), and
    # the silence set for the GPU loss muted them. A quiet incident takes only its fault coming back,
    # silenced or not: they are a new fault, its own incident, which pages.
    clock, engine, lost = _lost_gpu_3_silenced(tmp_path, quiet=True)
    engine.ingest([_on(5, **ANOMALY)])
    clock.advance(5)
    engine.ingest([_on(6, **ANOMALY)])
    [new] = [i for i in engine.open_incident_ids() if i != lost]
    assert sorted(engine.store.get(new).alert_fingerprints) == sorted(
        _on(g, **ANOMALY).fingerprint for g in (5, 6)
    )
    assert [_muted(engine, _on(g, **ANOMALY)) for g in (5, 6)] == [[], []]
    _kept_gpu_lost(engine, lost)


@pytest.mark.parametrize("alertname", ["GPUXid", "GpuLost"], ids=["xid-79", "gpu-lost"])
def test_another_gpu_of_a_silenced_incidents_node_lost_joins_it_and_ends_its_silence(
    tmp_path: Path, alertname: str
) -> None:
    """Slack walk-through: an XID 79 on another GPU of a node whose incident (GPU 3 lost) was silenced
    opened a second incident for the same node and job. One node's fault is one incident, silenced or not;
    the silence was set for GPU 3, not for a new GPU falling off the bus, so it ends, saying why, and the
    new alert is not muted."""
    clock, engine, lost = _lost_gpu_3_silenced(tmp_path, quiet=False)
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    beside = _on(5, alertname=alertname, **({"xid": "79"} if alertname == "GPUXid" else {}))
    engine.ingest([beside])
    assert list(engine.open_incident_ids()) == [lost]
    incident = engine.store.get(lost)
    assert beside.fingerprint in incident.alert_fingerprints
    assert incident.title.startswith("node r07-n01 GPUs lost") and engine.silenced_until() == {}
    ended = next(e for e in incident.timeline if e.kind == "silence_ended")
    named = "GPUXid XID 79" if alertname == "GPUXid" else alertname  # an XID alert says which XID came
    assert ended.message.startswith(
        f"silence ended early (silenced by op): {named} (r07-n01, 5) fired, a fault beside the one the"
        " silence was set for"
    )
    assert told and all(c.silenced_until is None for c in told)  # what it told pages
    assert _muted(engine, beside) == []
    clock.advance(60)
    engine.tick()  # nothing left to catch up on: one silence_ended
    assert [e.kind for e in engine.store.get(lost).timeline].count("silence_ended") == 1


def _node_gpus_lost_silenced(tmp_path: Path) -> tuple[FakeClock, IncidentEngine, str, list[IncidentChange]]:
    """GPUs 3 and 4 of r07-n01 lost (incident A, rooted at the node), A silenced for an hour; the changes told
    since the silence."""
    clock, engine = _engine_fleet(tmp_path)
    engine.ingest([_on(3, alertname="GpuLost"), _on(4, alertname="GpuLost")])
    [incident_id] = engine.open_incident_ids()
    assert engine.store.get(incident_id).title.startswith("node r07-n01 GPUs lost")
    engine.silence_incident(incident_id, 3600, "op")
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    clock.advance(10)
    return clock, engine, incident_id, told


def test_a_live_incident_is_not_merged_into_a_silenced_one_its_root_does_not_explain(tmp_path: Path) -> None:
    # GPU 5 of the node runs hot (incident B, of its own: GPUs lost do not explain it), under A's root; then
    # an XID 79 of GPU 3 joins A, whose merge pass looks at B. A's root does not explain B: it stays apart,
    # unmuted, and A's silence holds (nothing beside it came in). A silence that made its incident take
    # what lies under its root (as "a held incident takes its own fault" once did) fails here.
    clock, engine, lost, _told = _node_gpus_lost_silenced(tmp_path)
    hot = _on(5, alertname="GpuThermalSlowdown")
    engine.ingest([hot])
    [live] = [i for i in engine.open_incident_ids() if i != lost]
    clock.advance(10)
    xid = _on(3, alertname="GPUXid", xid="79")
    engine.ingest([xid])
    assert sorted(engine.open_incident_ids()) == sorted([lost, live])
    assert engine.store.get(live).alert_fingerprints == [hot.fingerprint]
    assert xid.fingerprint in engine.store.get(lost).alert_fingerprints
    assert list(engine.silenced_until()) == [lost]
    silence = [s.id for s in engine.silences() if s.incident_id == lost]
    assert [_muted(engine, a) for a in (hot, xid)] == [[], silence]


def test_a_fault_merged_in_beside_an_alert_the_silenced_root_explains_ends_the_silence(
    tmp_path: Path,
) -> None:
    """Slack walk-through: GPU 5 of a node whose two lost GPUs were silenced runs hot and pages (incident
    B); an XID 13 of GPU 5 joins B. When A next changed, its merge pass took B in (A's root explains an XID
    on its node) and, as merges judged a silence by the best-explained alert, A's silence held: the thermal
    fault that had paged went quiet under a silence set for the lost GPUs. Joins, merges and regroupings
    now judge by one rule (``root_facts.beside_held``): the thermal slowdown is beside what the silence was
    set for, as its join would be, so the silence ends, naming it, and the merge pages. B goes into A as the
    XID joins it (B's merge pass asks A, rooted above it: ``merging.IncidentMerging._wider_taker``), as it
    would in one POST with A's alerts, not only when A next changes."""
    clock, engine, lost, told = _node_gpus_lost_silenced(tmp_path)
    hot, app = _on(5, alertname="GpuThermalSlowdown"), _on(5, alertname="GPUXid", xid="13")
    engine.ingest([hot])
    [live] = [i for i in engine.open_incident_ids() if i != lost]
    clock.advance(10)
    engine.ingest([app])
    assert list(engine.open_incident_ids()) == [lost]
    clock.advance(10)
    engine.ingest([_on(3, alertname="GPUXid", xid="79")])
    assert list(engine.open_incident_ids()) == [lost]
    assert engine.store.get(live).merged_into == lost
    assert engine.silenced_until() == {}
    [ended] = [e for e in engine.store.get(lost).timeline if e.kind == "silence_ended"]
    assert "GpuThermalSlowdown (r07-n01, 5)" in ended.message and f"(from {live})" in ended.message
    assert [c.silenced_until for c in told if c.incident.id == lost and c.event.kind == "silence_ended"] == [
        None
    ]
    assert [_muted(engine, a) for a in (hot, app)] == [[], []]


def test_a_quiet_silenced_incident_takes_its_own_alert_again_and_what_its_root_explains_muted(
    tmp_path: Path,
) -> None:
    # GPU 3 falls off the bus again: its own alert, then its XID 79 (the same fault, under its root). The
    # same incident, still silenced, its root still the GPU loss.
    _clock, engine, lost = _lost_gpu_3_silenced(tmp_path)
    again, beside = _on(3, alertname="GpuLost"), _on(3, alertname="GPUXid", xid="79")
    engine.ingest([again])
    engine.ingest([beside])
    assert list(engine.open_incident_ids()) == [lost]
    incident = engine.store.get(lost)
    assert sorted(incident.alert_fingerprints) == sorted([again.fingerprint, beside.fingerprint])
    assert incident.root_cause.kind is FaultKind.GPU_LOST and incident.priority.value == "P1"
    silence = [s.id for s in engine.silences() if s.incident_id == lost]
    assert [_muted(engine, a) for a in (again, beside)] == [silence, silence]


def test_a_firing_silenced_incident_mutes_what_its_root_explains_not_a_fault_beside_it(
    tmp_path: Path,
) -> None:
    # GPU 3 still lost and silenced: GPU 5 running hot is another fault (a GPU lost does not explain it) and
    # pages on its own; an anomaly on GPU 3 itself is the lost GPU's and is muted with its incident. (An
    # anomaly on another GPU, which a GPU lost on its node may explain: ``test_a_new_fault_beside_...``.)
    _clock, engine, lost = _lost_gpu_3_silenced(tmp_path, quiet=False)
    hot, anomaly = _on(5, alertname="GpuThermalSlowdown"), _on(3, **ANOMALY)
    engine.ingest([hot])
    engine.ingest([anomaly])
    [own] = [i for i in engine.open_incident_ids() if i != lost]
    assert engine.store.get(own).alert_fingerprints == [hot.fingerprint]
    assert anomaly.fingerprint in engine.store.get(lost).alert_fingerprints
    silence = [s.id for s in engine.silences() if s.incident_id == lost]
    assert [_muted(engine, a) for a in (hot, anomaly)] == [[], silence]


def test_a_fault_beside_a_resolved_silenced_incident_reopens_it_and_ends_its_silence(tmp_path: Path) -> None:
    # GPU 3 lost, silenced, back, resolved; within the silence GPU 4 of the node is lost: a recurrence of a
    # GPU lost on that node reopens A (``recurs``), as it would unsilenced, and A's silence muted it. The
    # silence was set for GPU 3: it ends, and GPU 4 pages.
    clock, engine, lost = _lost_gpu_3_silenced(tmp_path)
    clock.advance(engine.config.quiet_period_seconds)
    engine.tick()
    assert engine.store.get(lost).state is IncidentState.RESOLVED
    beside = _on(4, alertname="GpuLost")
    engine.ingest([beside])
    assert list(engine.open_incident_ids()) == [lost] and engine.silenced_until() == {}
    assert [e.kind for e in engine.store.get(lost).timeline][-3:-1] == ["reopened", "silence_ended"]
    assert _muted(engine, beside) == []


def _hot(node: int) -> Alert:
    return Alert(
        {"cluster": "c1", "Hostname": f"r07-n0{node}", "gpu": "2", "alertname": "GpuThermalSlowdown"}
    )


def test_a_rack_running_hot_around_a_silenced_node_is_one_incident_and_ends_its_silence(
    tmp_path: Path,
) -> None:
    """Slack walk-through: GPU 2 of r07-n01 ran hot (known: a fan being replaced) and was silenced; then the
    same GPU of r07-n02 and r07-n03 ran hot, the rack's cooling. Unsilenced, the three are one incident, the
    rack's; the silence kept the silenced one apart, so the rack's fault was two incidents (one of them muted)
    and what the on-call silenced hid a third of it. A silence never changes how alerts group: the three
    merge into the incident opened first, whose silence ends at the merge (the rack is not what it was set
    for), saying why, and the merge pages once: no change of it is told silenced, and the tick has nothing
    left to catch up on."""
    clock, engine = _engine_fleet(tmp_path)
    engine.ingest([_hot(1)])
    [first] = engine.open_incident_ids()
    engine.silence_incident(first, 3600, "op")
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    for node in (2, 3):
        clock.advance(10)
        engine.ingest([_hot(node)])
    assert list(engine.open_incident_ids()) == [first]
    incident = engine.store.get(first)
    assert sorted(incident.alert_fingerprints) == sorted(_hot(n).fingerprint for n in (1, 2, 3))
    assert engine.silenced_until() == {} and [_muted(engine, _hot(n)) for n in (1, 2, 3)] == [[], [], []]
    [ended] = [e for e in incident.timeline if e.kind == "silence_ended"]
    said = "silence ended early (silenced by op): GpuThermalSlowdown (r07-n03, 2) merged in (from inc-"
    assert ended.message.startswith(said)
    # Both incidents merged in this batch are what ended it, not only the first (r07-n02's went unnamed).
    [second] = [e.data["from"] for e in incident.timeline if e.kind == "merged" and "r07-n02" in e.message]
    assert f"GpuThermalSlowdown (r07-n02, 2) merged in (from {second})" in ended.message
    assert ended.message.count("a fault beside the one the silence was set for") == 2
    assert ended.data["beside"] == 2
    assert [c.silenced_until for c in told if c.incident.id == first and c.event.kind == "silence_ended"] == [
        None
    ]
    clock.advance(3600)
    engine.tick()
    assert [e.kind for e in engine.store.get(first).timeline].count("silence_ended") == 1


def test_a_silence_ended_by_a_merge_lists_what_came_under_it_earlier_in_the_same_post(tmp_path: Path) -> None:
    # GPU 2 of r07-n01 runs hot, silenced. One POST: another rule's alert of that same fault (it joins,
    # held), then the same GPU of r07-n02 and r07-n03 hot: the rack's cooling, merged in, ends the silence.
    # Its end said "nothing happened while silenced", though the alert had joined under it just before.
    clock, engine = _engine_fleet(tmp_path)
    engine.ingest([_hot(1)])
    [first] = engine.open_incident_ids()
    engine.silence_incident(first, 3600, "op")
    clock.advance(10)
    engine.ingest([Alert({**_hot(1).labels, "severity": "page"}), _hot(2), _hot(3)])
    assert list(engine.open_incident_ids()) == [first]
    [ended] = [e for e in engine.store.get(first).timeline if e.kind == "silence_ended"]
    assert ended.message.startswith("silence ended early (silenced by op): GpuThermalSlowdown (r07-n02, 2)")
    assert ended.message.endswith("; 1 event(s) while silenced: alert GpuThermalSlowdown (r07-n01, 2) firing")
    assert ended.data["held"] == 1


def test_a_silence_ended_by_a_reopening_names_what_else_joins_beside_it_in_the_same_post(
    tmp_path: Path,
) -> None:
    # GPU 2 of r07-n01 ran hot, silenced, and cooled: resolved, the silence running on. One POST: GPUs 5 and
    # 6 of the node hot. GPU 5 reopens the incident (the same signal on its node), beside what the silence
    # was set for: it ends. That end was not kept for the batch, so GPU 6, joining next, went unnamed (a
    # silence no longer held it). The reopening that ended it is not "while silenced" either.
    clock, engine = _engine_fleet(tmp_path)
    engine.ingest([_on(2, alertname="GpuThermalSlowdown")])
    [incident_id] = engine.open_incident_ids()
    engine.silence_incident(incident_id, 3600, "op")
    clock.advance(10)
    engine.ingest([_on(2, AlertStatus.RESOLVED, alertname="GpuThermalSlowdown")])
    for _ in range(40):
        clock.advance(10)
        engine.tick()
    assert engine.store.get(incident_id).state is IncidentState.RESOLVED
    engine.ingest([_on(5, alertname="GpuThermalSlowdown"), _on(6, alertname="GpuThermalSlowdown")])
    assert list(engine.open_incident_ids()) == [incident_id]
    [ended] = [e for e in engine.store.get(incident_id).timeline if e.kind == "silence_ended"]
    beside = "a fault beside the one the silence was set for"
    assert ended.message.startswith(
        f"silence ended early (silenced by op): GpuThermalSlowdown (r07-n01, 5) fired, {beside}; "
        f"GpuThermalSlowdown (r07-n01, 6) fired, {beside}; 3 event(s) while silenced: alert"
    )
    assert ended.data["beside"] == 2 and ended.data["held"] == 3


def test_a_silenced_incident_merged_into_an_unsilenced_one_is_no_longer_silenced_and_the_merge_says_whose(
    tmp_path: Path,
) -> None:
    # GPU 2 of r07-n01 runs hot (A, unsilenced), then that of r07-n02 (B, which the on-call silences), then
    # that of r07-n03: the rack's cooling, one incident, A. B's silence ran on after the merge, muting
    # nothing (its alerts are A's), yet B read as silenced until it ran out (API, `incidents show`, the
    # merge told to Slack marked silenced). It ends at the merge; both sides of the merge say whose it was.
    clock, engine = _engine_fleet(tmp_path)
    engine.ingest([_hot(1)])
    [first] = engine.open_incident_ids()
    clock.advance(10)
    engine.ingest([_hot(2)])
    [held] = [i for i in engine.open_incident_ids() if i != first]
    engine.silence_incident(held, 3600, "op")
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    clock.advance(10)
    engine.ingest([_hot(3)])
    assert list(engine.open_incident_ids()) == [first] and engine.store.get(held).merged_into == first
    assert engine.silenced_until() == {}
    assert [c.silenced_until for c in told if c.incident.id == held] == [None]
    [merged] = [e.message for e in engine.store.get(held).timeline if e.kind == "merged"]
    assert merged == f"merged into {first}, 1 alert moved; its silence (by op) ended"
    absorbed = [e.message for e in engine.store.get(first).timeline if e.data.get("from") == held]
    assert len(absorbed) == 1 and absorbed[0].endswith("(1 alert; its silence (by op) ended)")
    assert [_muted(engine, _hot(n)) for n in (1, 2, 3)] == [[], [], []]
    restarted = IncidentEngine(
        make_engine(str(tmp_path / "incidents.db")), clock, engine.config, scenarios.fleet_inventory()
    )
    assert restarted.silenced_until() == {}
