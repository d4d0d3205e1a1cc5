"""Joining: where an alert that changed goes (its open incident, a reopened one, another, a new one)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from alerting import scenarios
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import StaticInventory
from alerting.notifiers.base import build_notification
from alerting.notifiers.blocks import incident_message
from alerting.notifiers.webhook import webhook_payload
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, FaultKind, IncidentState
from tests.migrated_store import migrated_sqlite

HOT = {"alertname": "GpuTemperatureHigh", "cluster": "c8", "node": "ff-n1", "gpu": "2"}


def _engine(
    tmp_path: Path,
    clock: FakeClock,
    inventory: StaticInventory | None = None,
    *,
    remind_after_seconds: float = 14400,
) -> IncidentEngine:
    sql = migrated_sqlite(tmp_path / "incidents.db")
    config = AlertingConfig(
        announce_delay_seconds=0,
        quiet_period_seconds=3,
        flap_window_seconds=120,
        flap_start_transitions=6,
        remind_after_seconds=remind_after_seconds,
    )
    return IncidentEngine(sql, clock, config, inventory)


def test_the_flap_that_crosses_the_threshold_of_a_resolved_incident_is_held_not_paged(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = _engine(tmp_path, clock)
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    engine.ingest([Alert(HOT)])
    [incident_id] = engine.open_incident_ids()
    reopens, said = [], []
    for _ in range(3):  # transitions R1 F2, R3 F4, R5 F6: the sixth crosses the threshold
        clock.advance(8)
        engine.ingest([Alert(HOT, status=AlertStatus.RESOLVED)])
        for _ in range(8):  # ticks through the quiet period: the incident resolves each time
            clock.advance(1)
            engine.tick()
        assert engine.store.get(incident_id).state is IncidentState.RESOLVED
        before = len(told)
        engine.ingest([Alert(HOT)])
        reopened = [c for c in told[before:] if c.kind is ChangeKind.REOPENED]
        assert len(reopened) == 1  # each is told as a reopening (a webhook's ticket opens again)
        reopens.append(sum(build_notification(c).needs_attention for c in reopened))
        said.append(reopened[0].event.message)
    # F2 pages a reopening; F4, by the alert that reopened it within the hour, is held as cycling; F6, that
    # makes it flapping, is held as a flap (the flap's hold is said, not the cycle's).
    assert reopens == [1, 0, 0]
    assert ["cycling" in m for m in said] == [False, True, False]
    assert said[2].endswith("(flapping: held, no page)")
    incident = engine.store.get(incident_id)
    assert incident.state is not IncidentState.RESOLVED  # held open while it flaps
    assert "alert GpuTemperatureHigh started flapping" in [e.message for e in incident.timeline]
    shown = str(incident_message(build_notification(told[-1])).attachments)
    assert "flapping" in shown and "GpuTemperatureHigh" in shown


RC = {"cluster": "c10", "severity": "critical"}
NODE_DOWN = {**RC, "alertname": "NodeDown", "instance": "rc-n1:9100", "job": "node"}


def _gpus_lost() -> list[Alert]:
    return [Alert({**RC, "alertname": "GPULost", "Hostname": "rc-n1", "gpu": str(k)}) for k in range(8)]


def _watched(
    tmp_path: Path, inventory: StaticInventory | None = None
) -> tuple[FakeClock, IncidentEngine, list[IncidentChange]]:
    """An engine, its clock, and the changes it tells."""
    clock = FakeClock()
    engine = _engine(tmp_path, clock, inventory)
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    return clock, engine, told


def _rack_7_repaired(tmp_path: Path) -> tuple[FakeClock, IncidentEngine, list[IncidentChange], str]:
    """Rack r07 lost power and was repaired a minute ago: its incident resolved (the last value)."""
    clock, engine, told = _watched(tmp_path, scenarios.fleet_inventory())
    rack = _down_and_resolved(engine, clock, scenarios.rack_failure(7, clock.now(), stalled_job=None))
    clock.advance(60)
    return clock, engine, told, rack


def _down_and_resolved(engine: IncidentEngine, clock: FakeClock, alerts: list[Alert] | None = None) -> str:
    """Post ``alerts`` (node rc-n1 down by default) in batches of 64, resolve them, tick until resolved."""
    alerts = alerts or [Alert(NODE_DOWN)]
    for i in range(0, len(alerts), 64):
        engine.ingest(alerts[i : i + 64])
    [incident_id] = engine.open_incident_ids()
    clock.advance(3)
    resolved = [Alert(a.labels, status=AlertStatus.RESOLVED, starts_at=a.starts_at) for a in alerts]
    for i in range(0, len(resolved), 64):
        engine.ingest(resolved[i : i + 64])
    for _ in range(9):
        clock.advance(1)
        engine.tick()
    assert engine.store.get(incident_id).state is IncidentState.RESOLVED
    return incident_id


def _cycle_once(engine: IncidentEngine, clock: FakeClock, told: list[IncidentChange], alert: Alert) -> str:
    """Resolve the incident's alerts, tick through the quiet period, fire ``alert``: its reopening, as told
    (``pages`` when it pages: Slack broadcasts it, a webhook's ``pages``)."""
    clock.advance(400)
    engine.ingest([Alert(a, status=AlertStatus.RESOLVED) for a in (HOT, {**HOT, "gpu": "3"})])
    clock.advance(4)
    engine.tick()
    clock.advance(400)
    before = len(told)
    engine.ingest([alert])
    [reopened] = [c for c in told[before:] if c.kind is ChangeKind.REOPENED]
    return f"{'pages' if build_notification(reopened).needs_attention else 'held'}: {reopened.event.message}"


def test_an_incident_reopening_again_and_again_by_its_alert_pages_only_the_first_time(tmp_path: Path) -> None:
    # A thermal alert firing 400 s, resolved 400 s (longer than the quiet period): the incident resolved and
    # reopened every cycle, and each reopening paged, every 13 minutes all night. A restarted serve decides
    # alike (from the stored timeline). Another alert's reopening, or one after an hour's calm, pages.
    clock = FakeClock()
    engine = _engine(tmp_path, clock)
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    engine.ingest([Alert(HOT)])
    said = [_cycle_once(engine, clock, told, Alert(HOT)) for _ in range(2)]
    engine = _engine(tmp_path, clock)  # serve restarted between two cycles
    engine.subscribe(told.append)
    said.append(_cycle_once(engine, clock, told, Alert(HOT)))
    said.append(_cycle_once(engine, clock, told, Alert({**HOT, "gpu": "3"})))  # its node's other GPU
    # GPU 2 again: held; counted are the reopenings of the last hour it came back with (three, and this
    # one), not GPU 3's, which it did not (the count said 5 "by the same alerts").
    said.append(_cycle_once(engine, clock, told, Alert(HOT)))
    clock.advance(3600)
    said.append(_cycle_once(engine, clock, told, Alert(HOT)))
    assert [s.split(": ")[0] for s in said] == ["pages", "held", "held", "pages", "held", "pages"]
    hot = "GpuTemperatureHigh (ff-n1, 2) fired again"
    assert said[0] == said[5] == f"pages: reopened: {hot}"
    cycling = "within 1h by this alert, no page)"
    assert [said[1], said[2], said[4]] == [
        f"held: reopened: {hot} (cycling: reopened {n} times {cycling}" for n in (2, 3, 4)
    ]
    assert said[3].startswith("pages: reopened: GpuTemperatureHigh (ff-n1, 3) fired, which its root")
    # The resolution of a held opening pages nobody either (Slack's broadcast_resolutions skips it), as
    # read from the stored timeline: the one after the restart too.
    ends = [build_notification(c).held for c in told if c.kind is ChangeKind.RESOLVED]
    assert ends == [False, False, True, True, False, True]


@pytest.mark.parametrize(
    ("remind_after", "cycles", "restart_before", "ack_before", "pages"),
    [
        pytest.param(14400, 40, 19, None, [1, 19, 37], id="reminded-every-4h-alike-after-a-restart"),
        pytest.param(14400, 20, None, 2, [1], id="acknowledged-since-its-last-page"),
        pytest.param(0, 20, None, None, [1], id="never-remind-as-before"),
    ],
)
def test_an_incident_held_as_cycling_all_night_pages_again_as_a_reminder_once_its_last_page_is_old(
    tmp_path: Path,
    remind_after: float,
    cycles: int,
    restart_before: int | None,
    ack_before: int | None,
    pages: list[int],
) -> None:
    # A thermal alert firing 400 s, resolved 404 s (past the quiet period), 40 times: 9 hours, a reopening
    # every 804 s. It paged at the opening and the first reopening, then was held as cycling all night. Now
    # a held reopening pages as a reminder once the last page is 4 h (14400 s) old: the 19th, 18 x 804 s =
    # 14472 s after the first, and the 37th (4 pages in 9 h, not 2); a serve restarted just before the 19th
    # decides alike, from the stored timeline. Not when someone acknowledged the incident since its last
    # page (after the first reopening), nor with remind_after_seconds 0 (20 cycles: past the 19th).
    clock = FakeClock()
    engine = _engine(tmp_path, clock, remind_after_seconds=remind_after)
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    engine.ingest([Alert(HOT)])
    [incident_id] = engine.open_incident_ids()
    said = {}
    for k in range(1, cycles + 1):
        if k == restart_before:
            engine = _engine(tmp_path, clock, remind_after_seconds=remind_after)
            engine.subscribe(told.append)
        if k == ack_before:
            engine.acknowledge(incident_id, "alice")
        said[k] = _cycle_once(engine, clock, told, Alert(HOT))
    assert [k for k, s in said.items() if s.startswith("pages")] == pages
    assert [c.kind for c in told].count(ChangeKind.OPENED) == 1  # the opening, which paged too
    hot = "GpuTemperatureHigh (ff-n1, 2) fired again (cycling: reopened 5 times within 1h by this alert"
    assert said[18] == said[19 if 19 not in pages else 20] == f"held: reopened: {hot}, no page)"
    if 19 in pages:  # 14472 s after the first reopening's page; the 37th 14472 s after the 19th's
        assert (
            said[19]
            == said[37]
            == f"pages: reopened: {hot}; still cycling 4h1m after the last page, reminding)"
        )
        reopened = [build_notification(c) for c in told if c.kind is ChangeKind.REOPENED]
        event = webhook_payload(reopened[18], first_for_receiver=False)["event"]
        assert event["pages"] is True and event["reminder"] == {"last_page_seconds": 14472.0}
        assert webhook_payload(reopened[17], first_for_receiver=False)["event"]["reminder"] is None
        # The reminder paged: its opening's end is not held (slack.broadcast_resolutions broadcasts it).
        ends = [build_notification(c).held for c in told if c.kind is ChangeKind.RESOLVED]
        assert ends[18:21] == [True, False, True]  # ends[k]: the end of the k-th reopening


def test_a_recurrence_through_another_alert_reopens_the_incident_whose_root_explains_it(
    tmp_path: Path,
) -> None:
    clock, engine, told = _watched(tmp_path)
    incident_id = _down_and_resolved(engine, clock)
    clock.advance(20)
    engine.ingest(_gpus_lost())  # the node is down again; its GPUs' alerts fire before NodeDown does
    clock.advance(4)
    engine.ingest([*_gpus_lost(), Alert(NODE_DOWN)])
    assert list(engine.open_incident_ids()) == [incident_id]
    assert [c.kind for c in told].count(ChangeKind.OPENED) == 1  # announced once, at the first outage
    assert [c.kind for c in told].count(ChangeKind.REOPENED) == 1
    assert len(engine.store.get(incident_id).alert_fingerprints) == 9


def test_a_new_alert_after_the_reopen_window_opens_a_new_incident(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = _engine(tmp_path, clock)
    incident_id = _down_and_resolved(engine, clock)
    clock.advance(engine.config.reopen_window_seconds + 1)
    engine.ingest(_gpus_lost())
    [new_id] = engine.open_incident_ids()
    assert new_id != incident_id


def test_another_fault_on_a_node_that_was_down_opens_its_own_incident(tmp_path: Path) -> None:
    # The node's root explains anything on it while it is down; back up, a hot GPU there is a new fault,
    # not "node rc-n1 was down" again.
    clock, engine, told = _watched(tmp_path)
    incident_id = _down_and_resolved(engine, clock)
    clock.advance(20)
    engine.ingest([Alert({**RC, "alertname": "GpuTemperatureHigh", "Hostname": "rc-n1", "gpu": "2"})])
    [new_id] = engine.open_incident_ids()
    assert new_id != incident_id
    assert engine.store.get(incident_id).state is IncidentState.RESOLVED
    assert ChangeKind.REOPENED not in [c.kind for c in told]


def _rollout_on_rack_7(start: datetime) -> list[Alert]:
    """The driver rollout's XID 119s on rack r07's first two nodes (as ``driver_rollout_xids`` sends them)."""
    xids = scenarios.driver_rollout_xids((7,), start, stalled_job=None)
    return [a for a in xids if a.labels["Hostname"] in ("r07-n01", "r07-n02")]


def test_a_driver_rollout_reaching_a_rack_that_lost_power_opens_its_own_incident(tmp_path: Path) -> None:
    # The storms of bench_incidents, one after the other: rack r07 loses power and is repaired, then a bad
    # driver reaches it. The rack's root explained every alert on its nodes while they were down; it does
    # not make an XID 119 on them the power loss again (that reopened and paged "rack r07 lost power").
    clock, engine, told, rack = _rack_7_repaired(tmp_path)
    engine.ingest(_rollout_on_rack_7(clock.now()))
    [rollout] = engine.open_incident_ids()
    assert rollout != rack
    assert engine.store.get(rack).state is IncidentState.RESOLVED
    assert ChangeKind.REOPENED not in [c.kind for c in told]
    assert engine.store.get(rollout).root_cause.kind is FaultKind.XID


def test_a_node_of_a_rack_that_lost_power_going_down_again_reopens_the_rack_incident(tmp_path: Path) -> None:
    clock, engine, told, rack = _rack_7_repaired(tmp_path)
    again = scenarios.node_failure(7, 3, clock.now())  # its node r07-n03 hangs: alerts the rack never had
    engine.ingest([Alert({**a.labels, "alertname": "GPUHung"}) for a in again if "gpu" in a.labels])
    assert list(engine.open_incident_ids()) == [rack]
    assert [c.kind for c in told].count(ChangeKind.REOPENED) == 1
    # The rack's fault partly back, as the reopening says ("which its root cause rack r07 explains"), not
    # retitled as the node's ("node r07-n03 was down").
    incident = engine.store.get(rack)
    assert str(incident.root_cause.target) == "rack/r07"
    assert incident.title.startswith("rack r07 lost power, partly back: 1 node, 8 GPUs")


def test_a_gpu_lost_again_through_its_xid_reopens_the_gpus_incident(tmp_path: Path) -> None:
    # The GPU fell off the bus; back, resolved; it falls off again and this time the XID watcher's alert
    # (XID 79) comes before GPULost: the same fault, the same incident.
    clock, engine, told = _watched(tmp_path)
    lost = Alert({**RC, "alertname": "GPULost", "Hostname": "rc-n1", "gpu": "3"})
    incident_id = _down_and_resolved(engine, clock, [lost])
    clock.advance(20)
    engine.ingest([Alert({**RC, "alertname": "GPUXid", "xid": "79", "Hostname": "rc-n1", "gpu": "3"})])
    assert list(engine.open_incident_ids()) == [incident_id]
    assert [c.kind for c in told].count(ChangeKind.REOPENED) == 1
    reopened = [e.message for e in engine.store.get(incident_id).timeline if e.kind == "reopened"]
    assert reopened == ["reopened: GPUXid XID 79 (rc-n1, 3) fired, which its root cause gpu rc-n1/3 explains"]


def _stale(*gpus: int) -> list[Alert]:
    """dcgm-exporter's series on node rc-n1 gone stale: what a node that died looks like from Prometheus."""
    return [Alert({**RC, "alertname": "DCGMExporterStale", "Hostname": "rc-n1", "gpu": str(k)}) for k in gpus]


def test_a_node_down_again_whose_exporter_goes_stale_first_reopens_its_incident(tmp_path: Path) -> None:
    # The node was down (NodeDown alone) and came back; it dies again and the exporter's staleness, not
    # NodeDown, fires first. That opened a second incident (a second top-level Slack message) which the
    # NodeDown then joined, while the first stayed resolved.
    clock, engine, told = _watched(tmp_path)
    incident_id = _down_and_resolved(engine, clock)
    clock.advance(20)
    engine.ingest(_stale(*range(8)))
    clock.advance(4)
    engine.ingest([*_stale(*range(8)), Alert(NODE_DOWN)])
    assert list(engine.open_incident_ids()) == [incident_id]
    assert [c.kind for c in told].count(ChangeKind.OPENED) == 1
    assert [c.kind for c in told].count(ChangeKind.REOPENED) == 1
    reopened = [e.message for e in engine.store.get(incident_id).timeline if e.kind == "reopened"]
    assert reopened == [
        "reopened: DCGMExporterStale (rc-n1, 0) fired, which its root cause node rc-n1 explains"
    ]


@pytest.mark.parametrize(("gpu", "reopens"), [(3, True), (5, False)], ids=["the-lost-gpu", "another-gpu"])
def test_a_stale_exporter_reopens_a_lost_gpus_incident_only_on_that_gpu(
    tmp_path: Path, gpu: int, reopens: bool
) -> None:
    # Only GPU 3 fell off the bus and the node stayed up: its own exporter going stale is the GPU gone again;
    # another GPU's going stale there says nothing of that fault and is a new incident.
    clock, engine, told = _watched(tmp_path)
    lost = Alert({**RC, "alertname": "GPULost", "Hostname": "rc-n1", "gpu": "3"})
    incident_id = _down_and_resolved(engine, clock, [lost])
    clock.advance(20)
    engine.ingest(_stale(gpu))
    [now_open] = engine.open_incident_ids()
    assert (now_open == incident_id) is reopens
    assert [c.kind for c in told].count(ChangeKind.REOPENED) == int(reopens)


# A quiet incident: all its alerts resolved, it waits out its quiet period (still open). node r07-n01 runs
# ranks of the training job (spare GPUs: a GPU lost stalls it, P1).
ANOMALY = {"alertname": "GpuwardenAnomaly", "for": "DCGM_FI_DEV_POWER_USAGE", "model": "fleet"}


def _on(gpu: int, status: AlertStatus = AlertStatus.FIRING, **labels: str) -> Alert:
    return Alert({"cluster": "c1", "Hostname": "r07-n01", "gpu": str(gpu), **labels}, status=status)


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
    set for, as its join would be, so the silence ends, naming it, and the merge pages."""
    clock, engine, lost, told = _node_gpus_lost_silenced(tmp_path)
    hot, app = _on(5, alertname="GpuThermalSlowdown"), _on(5, alertname="GPUXid", xid="13")
    engine.ingest([hot])
    clock.advance(10)
    engine.ingest([app])
    [live] = [i for i in engine.open_incident_ids() if i != lost]
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


def _engine_fleet(tmp_path: Path) -> tuple[FakeClock, IncidentEngine]:
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    clock = FakeClock()
    config = AlertingConfig(announce_delay_seconds=0)
    return clock, IncidentEngine(make_engine(path), clock, config, scenarios.fleet_inventory(spare_gpus=8))


@pytest.mark.parametrize(
    ("fault", "title"),
    [
        ({"alertname": "GPUXid", "xid": "79"}, "gpu r07-n01/2 lost (fell off the bus)"),
        ({"alertname": "GpuThermalSlowdown"}, "gpu r07-n01/2 thermal"),
    ],
    ids=["xid-79", "thermal"],
)
def test_an_anomaly_on_one_gpu_does_not_take_in_a_fault_on_another_gpu_of_its_node(
    tmp_path: Path, fault: dict[str, str], title: str
) -> None:
    # A power anomaly on GPU 5, then a fault on GPU 2: the anomaly's incident took the fault in as any
    # cause on its node, and a thermal slowdown's incident was titled "node r07-n01 GpuwardenAnomaly on
    # DCGM_FI_DEV_POWER_USAGE". The fault is its own incident, titled for it; the anomaly stays P3.
    clock, engine = _engine_fleet(tmp_path)
    anomaly, hard = _on(5, **ANOMALY), _on(2, **fault)
    engine.ingest([anomaly])
    [first] = engine.open_incident_ids()
    clock.advance(30)
    engine.ingest([hard])
    [other] = [i for i in engine.open_incident_ids() if i != first]
    assert engine.store.get(first).alert_fingerprints == [anomaly.fingerprint]
    assert engine.store.get(first).priority.value == "P3"
    assert engine.store.get(other).alert_fingerprints == [hard.fingerprint]
    assert engine.store.get(other).title.startswith(title)


@pytest.mark.parametrize("first_anomaly", [True, False], ids=["anomaly-first", "xid-first"])
def test_an_anomaly_and_a_hard_fault_on_one_gpu_are_one_incident_rooted_at_the_fault(
    tmp_path: Path, first_anomaly: bool
) -> None:
    # What an incident holding an anomaly takes in is for: the anomaly was the hard fault's first sign.
    clock, engine = _engine_fleet(tmp_path)
    anomaly, hard = _on(2, **ANOMALY), _on(2, alertname="GPUXid", xid="79")
    for alert in (anomaly, hard) if first_anomaly else (hard, anomaly):
        engine.ingest([alert])
        clock.advance(30)
    [incident_id] = engine.open_incident_ids()
    incident = engine.store.get(incident_id)
    assert sorted(incident.alert_fingerprints) == sorted([anomaly.fingerprint, hard.fingerprint])
    assert incident.root_cause.kind is FaultKind.GPU_LOST and incident.priority.value == "P1"


def _sign(labels: dict[str, str]) -> Alert:
    """An alert on GPU 2 of r07-n01, or on the node with ``gpu: "-"``."""
    if labels.get("gpu") == "-":
        return Alert(
            {"cluster": "c1", "Hostname": "r07-n01", **{k: v for k, v in labels.items() if k != "gpu"}}
        )
    return _on(2, **labels)


# A stale exporter hides the node's data; a fault another source reports there is not caused by it. An XID
# is its GPU's fault unless the catalog's action says the whole machine needs restarting (RESTART_VM, as
# 151) or it is a PCIe fault (167 PCIE_FATAL_TIMEOUT): those may be any fault's cause on their node.
@pytest.mark.parametrize(
    "first",
    [
        {"alertname": "GPUXid", "xid": "13"},
        {"alertname": "GPUXid", "xid": "31"},
        {"alertname": "GPUXid", "xid": "119"},
        {"alertname": "DCGMExporterStale", "gpu": "-"},
    ],
    ids=["xid-13", "xid-31", "xid-119", "exporter-stale"],
)
def test_an_xid_or_a_stale_exporter_does_not_take_in_a_fault_on_another_gpu_of_its_node(
    tmp_path: Path, first: dict[str, str]
) -> None:
    clock, engine = _engine_fleet(tmp_path)
    sign, hot = _sign(first), _on(5, alertname="GpuThermalSlowdown")
    engine.ingest([sign])
    [incident] = engine.open_incident_ids()
    clock.advance(30)
    engine.ingest([hot])
    [other] = [i for i in engine.open_incident_ids() if i != incident]
    assert engine.store.get(incident).alert_fingerprints == [sign.fingerprint]
    assert engine.store.get(other).alert_fingerprints == [hot.fingerprint]
    assert engine.store.get(other).title.startswith("gpu r07-n01/5 thermal")


@pytest.mark.parametrize(
    ("first", "gpu"),
    [
        ({"alertname": "GPUXid", "xid": "13"}, 2),  # on its own GPU
        ({"alertname": "GPUXid", "xid": "167"}, 5),  # a PCIe fault: the host's
        ({"alertname": "GPUXid", "xid": "151"}, 5),  # the catalog says RESTART_VM
        ({"alertname": "GPUXid", "xid": "13", "gpu": "-"}, 5),  # an XID of the node, no GPU named
    ],
    ids=["same-gpu", "xid-167-pcie", "xid-151-restart-vm", "node-xid"],
)
def test_an_xid_still_takes_in_what_it_may_cause(tmp_path: Path, first: dict[str, str], gpu: int) -> None:
    clock, engine = _engine_fleet(tmp_path)
    sign, hot = _sign(first), _on(gpu, alertname="GpuThermalSlowdown")
    engine.ingest([sign])
    clock.advance(30)
    engine.ingest([hot])
    [incident] = engine.open_incident_ids()
    assert sorted(engine.store.get(incident).alert_fingerprints) == sorted(
        [sign.fingerprint, hot.fingerprint]
    )


XID_13 = {"alertname": "GPUXid", "xid": "13"}


@pytest.mark.parametrize(
    ("first", "title"),
    [
        ({"alertname": "GpuThermalSlowdown"}, "gpu r07-n01/2 thermal"),
        ({"alertname": "GPUXid", "xid": "31"}, "gpu r07-n01/2 XID 31"),
    ],
    ids=["thermal", "xid-31"],
)
@pytest.mark.parametrize("new", [XID_13, ANOMALY], ids=["then-xid-13", "then-anomaly"])
def test_an_xid_or_an_anomaly_of_one_gpu_does_not_join_a_fault_of_another_gpu_of_its_node(
    tmp_path: Path, first: dict[str, str], title: str, new: dict[str, str]
) -> None:
    # GPU 2 slows down for heat (or an XID 31 there), then an XID 13 (or an anomaly) fires on GPU 5: it
    # joined GPU 2's incident as any fault's sign on the node, rooting it at the node ("node r07-n01
    # thermal"). It is GPU 5's own fault; GPU 2's incident stays what it was.
    clock, engine = _engine_fleet(tmp_path)
    fault, sign = _on(2, **first), _on(5, **new)
    engine.ingest([fault])
    [incident] = engine.open_incident_ids()
    clock.advance(30)
    engine.ingest([sign])
    [other] = [i for i in engine.open_incident_ids() if i != incident]
    assert engine.store.get(incident).alert_fingerprints == [fault.fingerprint]
    assert engine.store.get(incident).title.startswith(title)
    assert engine.store.get(other).alert_fingerprints == [sign.fingerprint]
    assert engine.store.get(other).title.startswith("gpu r07-n01/5 ")


@pytest.mark.parametrize(
    ("first", "new"),
    [
        ({"alertname": "GpuThermalSlowdown"}, XID_13),
        ({"alertname": "GPUXid", "xid": "31"}, XID_13),
        ({"alertname": "GpuThermalSlowdown"}, ANOMALY),
    ],
    ids=["thermal-xid-13", "xid-31-xid-13", "thermal-anomaly"],
)
@pytest.mark.parametrize("reverse", [False, True], ids=["fault-first", "sign-first"])
def test_a_sign_and_a_fault_of_another_gpu_are_two_incidents_whichever_came_first(
    tmp_path: Path, first: dict[str, str], new: dict[str, str], reverse: bool
) -> None:
    # GPU 2's fault then an XID 13 or an anomaly on GPU 5: one incident (the sign joined as any fault's),
    # while the other way round they were two (a sign explains only its GPU): two in either order now.
    clock, engine = _engine_fleet(tmp_path)
    fault, sign = _sign(first), _on(5, **new) if new.get("gpu") != "-" else _sign(new)
    for alert in (sign, fault) if reverse else (fault, sign):
        engine.ingest([alert])
        clock.advance(30)
    held = sorted(engine.store.get(i).alert_fingerprints for i in engine.open_incident_ids())
    assert held == sorted([[fault.fingerprint], [sign.fingerprint]])


@pytest.mark.parametrize(
    ("first", "new"),
    [
        ({"alertname": "GPUXid", "xid": "79"}, XID_13),  # GPU 2 fell off the bus: its job died everywhere
        ({"alertname": "GpuLost"}, ANOMALY),
        ({"alertname": "NodeDown", "gpu": "-"}, XID_13),
        ({"alertname": "GPUXid", "xid": "13"}, XID_13),  # the same XID on two GPUs: a pattern
        ({"alertname": "GpuThermalSlowdown"}, {**XID_13, "gpu": "-"}),  # an XID of the node, no GPU named
        ({"alertname": "GpuThermalSlowdown"}, {"alertname": "GPUXid", "xid": "151"}),  # the host's XID
        ({"alertname": "GpuThermalSlowdown"}, {"alertname": "DCGMExporterStale", "gpu": "-"}),  # the node's
    ],
    ids=["xid-79", "gpu-lost", "node-down", "same-xid", "node-xid", "host-xid-151", "node-stale-exporter"],
)
def test_a_sign_on_another_gpu_still_joins_the_fault_that_explains_it(
    tmp_path: Path, first: dict[str, str], new: dict[str, str]
) -> None:
    clock, engine = _engine_fleet(tmp_path)
    fault, sign = _sign(first), _on(5, **new) if new.get("gpu") != "-" else _sign(new)
    engine.ingest([fault])
    clock.advance(30)
    engine.ingest([sign])
    [incident] = engine.open_incident_ids()
    assert sorted(engine.store.get(incident).alert_fingerprints) == sorted(
        [fault.fingerprint, sign.fingerprint]
    )


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
