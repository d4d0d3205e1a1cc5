"""Reminding an incident that is silenced, inhibited, taken up or flapping: escalations and reminders while
something mutes it, and after."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alerting import scenarios as sc
from alerting.matchers import parse_matcher
from alerting.silence_index import SilenceIndex
from alerting.silences import Silence
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus
from tests.alerting.reminding_night import _DOWN, _NIGHT, _TICK, _past_due_muted, _reminders, _Serve, _told


@pytest.mark.parametrize("silenced", [True, False], ids=["silenced", "not-silenced"])
def test_an_escalation_while_a_silence_holds_the_incident_is_stored_as_paging_nobody(
    tmp_path: Path, silenced: bool
) -> None:
    # Node r01-n02 down (P2), then rack r01's power lost (P0). Told while silenced, the escalation paged
    # nobody: its event says so, and the reminders do not count it as a page (the silence's end pages).
    serve = _Serve(tmp_path / "serve")
    serve.engine.ingest(sc.node_failure(1, 2, serve.clock.now()))
    [incident_id] = serve.engine.open_incident_ids()
    if silenced:
        serve.engine.silence_incident(incident_id, 3600, "alice")
    serve.clock.advance(60)
    rack = {"cluster": sc.CLUSTER, "alertname": "RackPowerLoss", "rack": "r01", "severity": "critical"}
    serve.engine.ingest([Alert(rack)])
    [rose] = [
        e for e in serve.engine.store.get(incident_id).timeline if e.kind == "priority" and e.data["from"]
    ]
    assert (rose.data["from"], rose.data["to"]) == ("P2", "P0")
    assert rose.data.get("silenced", False) is silenced


@pytest.mark.parametrize("resent", [True, False], ids=["resent", "not-resent"])
def test_an_incident_whose_only_firing_alert_a_silence_mutes_is_not_reminded(
    tmp_path: Path, resent: bool
) -> None:
    # At 01:00 someone silences the node's alert itself (an Alertmanager silence on its labels, not the
    # incident's): Alertmanager repeats no notification of a silenced alert, so no reminder comes while it
    # holds (01:00 to 09:00); Prometheus may resend the alert meanwhile or not.
    serve = _Serve(tmp_path / "serve")
    serve.engine.ingest([_DOWN])
    serve.clock.advance(serve.config.announce_delay_seconds)
    serve.engine.tick()
    for at in range(_TICK, _NIGHT + 1, _TICK):
        serve.clock.advance(_TICK)
        if at == 7200:
            now = serve.clock.now()
            matcher = parse_matcher('node="r05-n03"')
            serve.engine.add_silence([matcher], now, now + timedelta(hours=8), "alice")
        if resent:
            serve.engine.ingest([_DOWN])
        serve.engine.tick()
    assert _reminders(serve) == []


@pytest.mark.parametrize("by", ["acknowledged", "mitigating"])
def test_an_incident_taken_up_before_an_escalation_is_not_reminded_while_it_stays_taken_up(
    tmp_path: Path, by: str
) -> None:
    # Node r01-n02 down (P2) at 23:00, acknowledged (or a drain marked mitigating) at 23:01; rack r01's
    # power lost at 23:30 escalates it to P0, which pages. It stays acknowledged (mitigating): a reminder
    # at 03:30 saying "not acknowledged" would be false, and would page over a remediation in progress.
    serve = _Serve(tmp_path / "serve")
    serve.engine.ingest(sc.node_failure(1, 2, serve.clock.now()))
    [incident_id] = serve.engine.open_incident_ids()
    serve.clock.advance(60)
    serve.engine.tick()
    if by == "acknowledged":
        serve.engine.acknowledge(incident_id, "alice")
    else:
        serve.engine.mark_mitigating(incident_id, "alice", "drain_node")
    serve.clock.advance(1740)
    rack = {"cluster": sc.CLUSTER, "alertname": "RackPowerLoss", "rack": "r01", "severity": "critical"}
    serve.engine.ingest([Alert(rack)])
    for _ in range(0, _NIGHT, _TICK):
        serve.clock.advance(_TICK)
        serve.engine.tick()
    incident = serve.engine.store.get(incident_id)
    assert incident.state.value == by and incident.priority.value == "P0"
    assert _reminders(serve) == []


def test_an_escalation_accepted_while_silenced_and_applied_after_the_silence_ended_is_a_page(
    tmp_path: Path,
) -> None:
    # The rack's power loss is accepted while a 60 s silence holds the node's incident and applied after a
    # tick saw the silence end. Silences are checked when a record is applied (``Batch.silence_time``): the
    # escalation is told unsilenced and pages, so its event must not say ``silenced`` (the reminders would
    # count no page there and remind 4 h after the opening, not after this escalation).
    serve = _Serve(tmp_path / "serve")
    serve.engine.ingest(sc.node_failure(1, 2, serve.clock.now()))
    [incident_id] = serve.engine.open_incident_ids()
    serve.engine.silence_incident(incident_id, 60, "alice")
    serve.clock.advance(30)
    accepted = serve.clock.now()
    serve.clock.advance(31)
    serve.engine.tick()
    rack = {"cluster": sc.CLUSTER, "alertname": "RackPowerLoss", "rack": "r01", "severity": "critical"}
    serve.engine.apply_accepted([(accepted, [Alert(rack)])], lambda _session: None)
    [rose] = [
        e for e in serve.engine.store.get(incident_id).timeline if e.kind == "priority" and e.data["from"]
    ]
    told = _told(serve)
    [escalation] = [n for n in told if n.event_kind == "priority" and n.escalated]
    assert escalation.pages and escalation.silenced_until is None
    assert rose.data.get("silenced", False) is False


def test_an_incident_muted_past_its_reminder_time_is_not_looked_at_again_at_every_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10,000 such incidents cost a quarter of a second a tick when each was matched against the silences
    # at every tick; the silence's end is known, so nothing of it is looked at before then.
    serve, _, _ = _past_due_muted(tmp_path)
    asked: list[object] = []
    muting = SilenceIndex.muting

    def counted(self: SilenceIndex, *args: Any, **kwargs: Any) -> list[Silence]:
        asked.append(args)
        return muting(self, *args, **kwargs)

    monkeypatch.setattr(SilenceIndex, "muting", counted)
    for _ in range(5):
        serve.clock.advance(5)
        serve.engine.tick()
    assert asked == []
    assert _reminders(serve) == []


@pytest.mark.parametrize(
    "freed",
    ["silence-expired", "silence-ran-out", "unmuted-alert-joined", "alert-fired-again"],
)
def test_an_incident_muted_past_its_reminder_time_is_reminded_at_the_first_tick_nothing_mutes_it(
    tmp_path: Path, freed: str
) -> None:
    # Looked at again only when what mutes it may end: its silence's end, or at once when the silences
    # change, or something of it changes (an alert joins that nothing mutes; a quiet incident's alert fires
    # again): the reminder comes at the first tick after, as a restarted serve would remind.
    serve, incident_id, silence_id = _past_due_muted(tmp_path)
    for _ in range(3):
        serve.clock.advance(5)
        serve.engine.tick()
    if freed == "silence-expired":
        serve.engine.expire_silence(silence_id)
    elif freed == "silence-ran-out":
        serve.clock.advance(8 * 3600)
    elif freed == "unmuted-alert-joined":
        gpu = {"cluster": sc.CLUSTER, "alertname": "GpuFellOffBus", "node": "r05-n03", "gpu": "2"}
        serve.engine.ingest([Alert(gpu)])
        assert serve.engine.open_incident_ids() == [incident_id]
    else:  # the alert resolves, the silence is lifted, and the alert fires again within the quiet period
        serve.engine.ingest([Alert(dict(_DOWN.labels), status=AlertStatus.RESOLVED)])
        serve.engine.tick()
        serve.engine.expire_silence(silence_id)
        serve.clock.advance(5)
        serve.engine.tick()
        assert _reminders(serve) == []  # nothing of it fires
        serve.engine.ingest([_DOWN])
    before = serve.clock.now()
    serve.clock.advance(5)
    serve.engine.tick()
    [reminder] = _reminders(serve)
    assert reminder.incident_id == incident_id and before < reminder.event_at <= serve.clock.now()


def test_an_incident_inhibited_past_its_reminder_time_is_reminded_once_the_source_ends(
    tmp_path: Path,
) -> None:
    # A maintenance alert of another cluster inhibits every NodeDown (no ``equal``): the node's incident is
    # not reminded while it fires, and is at the first tick after it resolved.
    rule = {"source_matchers": ['alertname="FleetMaintenance"'], "target_matchers": ['alertname="NodeDown"']}
    serve = _Serve(tmp_path / "serve")
    serve.config = AlertingConfig(inhibit_rules=[rule])  # type: ignore[list-item]
    serve.restart()
    serve.engine.ingest([_DOWN])
    [incident_id] = serve.engine.open_incident_ids()
    source = Alert({"cluster": "elsewhere", "alertname": "FleetMaintenance"})
    serve.engine.ingest([source])
    serve.clock.advance(serve.config.announce_delay_seconds)
    serve.engine.tick()  # its opening announced: the page the reminder counts from
    serve.clock.advance(4 * 3600 + 60)
    serve.engine.tick()
    for _ in range(3):
        serve.clock.advance(5)
        serve.engine.tick()
    assert incident_id not in [n.incident_id for n in _reminders(serve)]
    serve.engine.ingest([Alert(dict(source.labels), status=AlertStatus.RESOLVED)])
    serve.clock.advance(5)
    serve.engine.tick()
    assert incident_id in [n.incident_id for n in _reminders(serve)]


@pytest.mark.parametrize("steady", [False, True], ids=["only-flapping", "one-firing-steadily"])
def test_a_reminder_of_an_incident_whose_alerts_only_flap_says_still_flapping(
    tmp_path: Path, steady: bool
) -> None:
    # The node's alert fires and resolves every minute from 23:00 (flapping from its sixth change: the
    # incident stays open); reminded of 10 minutes after its page, "still firing" would say what it is not
    # doing. With another alert of it firing steadily (a GPU of the node fell off the bus), it is firing.
    serve = _Serve(tmp_path / "serve", remind_after_seconds=600)
    gpu = Alert({"cluster": sc.CLUSTER, "alertname": "GpuFellOffBus", "node": "r05-n03", "gpu": "2"})
    serve.engine.ingest([_DOWN, gpu] if steady else [_DOWN])
    for change in range(1, 12):
        serve.clock.advance(60)
        status = AlertStatus.RESOLVED if change % 2 else AlertStatus.FIRING
        serve.engine.ingest([Alert(dict(_DOWN.labels), status=status)])
        serve.engine.tick()
    assert len(serve.engine.open_incident_ids()) == 1
    [reminder] = _reminders(serve)
    what = "firing" if steady else "flapping"
    assert reminder.event_message == f"still {what} 10m after the last page, not acknowledged: reminding"
