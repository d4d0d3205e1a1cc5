"""Joining: which incident an alert that fires again reopens (its own, one whose root explains it, or a
new one), and when a reopening pages (cycling, flapping, reminders)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from alerting import scenarios
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
