"""The postmortem draft: the priority an incident reached at its worst stays visible after it recovers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from alerting import scenarios as sc
from alerting.engine import IncidentEngine
from alerting.postmortem import peak_priority, render_postmortem
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import (
    Alert,
    AlertStatus,
    FaultKind,
    GpuRef,
    Impact,
    Incident,
    IncidentState,
    Priority,
    RootCause,
    TimelineEvent,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def incident(priorities: list[tuple[str, str]]) -> Incident:
    timeline = [TimelineEvent(T0, "opened", "incident opened")]
    timeline += [
        TimelineEvent(T0 + timedelta(minutes=i), "priority", f"priority {p}", {"to": p, "reason": why})
        for i, (p, why) in enumerate(priorities)
    ]
    return Incident(
        id="inc-1",
        title="gpu node-02/3 lost",
        priority=Priority(priorities[-1][0]),
        state=IncidentState.RESOLVED,
        root_cause=RootCause(FaultKind.GPU_LOST, GpuRef("node-02", 3)),
        opened_at=T0,
        timeline=timeline,
        resolved_at=T0 + timedelta(minutes=40),
    )


def test_an_incident_that_fell_from_p1_to_p3_reports_p1_at_its_worst_and_why() -> None:
    inc = incident([("P1", "training job stalled by a fatal fault"), ("P3", "potential problem")])
    assert peak_priority(inc) == (Priority.P1, "training job stalled by a fatal fault")
    md = render_postmortem(inc, T0, ["GpuLost"], inc.resolved_at)
    assert "- Priority: **P1** at its worst (training job stalled by a fatal fault); P3 at the end" in md


def test_an_incident_whose_priority_never_changed_shows_it_once() -> None:
    inc = incident([("P2", "degraded")])
    assert peak_priority(inc)[0] == Priority.P2
    assert "- Priority: **P2**\n" in render_postmortem(inc, T0, ["GpuClockSlowdown"], inc.resolved_at)


def test_alerts_without_an_alertname_are_evidence_named_alert_not_an_empty_name() -> None:
    inc = replace(incident([("P3", "potential problem")]), alert_fingerprints=("a", "b"))
    assert "- Evidence: 2 alerts (GpuLost, alert)\n" in render_postmortem(inc, T0, ["", "GpuLost"], None)
    inc = replace(inc, alert_fingerprints=("a",))
    assert "- Evidence: 1 alert (alert)\n" in render_postmortem(inc, T0, [""], None)


def test_a_note_of_several_lines_stays_inside_its_timeline_item() -> None:
    inc = incident([("P2", "degraded")])
    text = "PSU swapped\n```\nunclosed fence\n# Heading\n````"
    inc.timeline.append(TimelineEvent(T0 + timedelta(minutes=5), "note", f"note by bob: {text}"))
    md = render_postmortem(inc, T0, ["GpuLost"], inc.resolved_at)
    lines = md.splitlines()
    start = lines.index("- 2026-01-01T00:05:00Z — note by bob: PSU swapped")
    assert lines[start + 1 : start + 6] == [
        "  `````text",
        "  ```",
        "  unclosed fence",
        "  # Heading",
        "  ````",
    ]
    assert lines[start + 6] == "  `````"  # closed, longer than any fence inside: the rest stays Markdown
    assert "\n# Heading" not in md and "## Follow-ups" in md


Labels = Mapping[str, str]
ECC: Labels = {"alertname": "GpuEccDbe", "node": "n04", "gpu": "3"}
PROBE = datetime(2026, 3, 2, 16, 47, 19, tzinfo=UTC)  # the alert is posted; it started two minutes before


def _t(hhmmss: str) -> datetime:
    """That time of the probe's day."""
    h, m, sec = (int(x) for x in hhmmss.split(":"))
    return PROBE.replace(hour=h, minute=m, second=sec)


def _at(clock: FakeClock, hhmmss: str) -> None:
    """Move the fake clock forward to that time of the probe's day."""
    clock.advance((_t(hhmmss) - clock.now()).total_seconds())


def _fire(engine: IncidentEngine, clock: FakeClock, starts: str, posted: str, labels: Labels = ECC) -> None:
    _at(clock, posted)
    engine.ingest([Alert(labels, starts_at=_t(starts), ends_at=clock.now() + timedelta(minutes=5))])


def _resolve(engine: IncidentEngine, clock: FakeClock, ended: str, posted: str) -> None:
    _at(clock, posted)
    engine.ingest([Alert(ECC, status=AlertStatus.RESOLVED, ends_at=_t(ended))])


def _metrics(md: str) -> dict[str, str]:
    section = md.split("## Metrics\n\n", 1)[1].split("\n\n", 1)[0]
    return dict(line.removeprefix("- ").split(": ", 1) for line in section.splitlines())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(PROBE.timestamp())


def test_a_reopened_incident_measures_from_the_onset_before_the_reopen(sql: Engine, clock: FakeClock) -> None:
    engine = IncidentEngine(sql, clock, AlertingConfig(quiet_period_seconds=20, announce_delay_seconds=0))
    _fire(engine, clock, starts="16:45:19", posted="16:47:19")
    [incident_id] = engine.open_incident_ids()
    _resolve(engine, clock, ended="16:47:21", posted="16:47:21")
    _at(clock, "16:47:42")
    engine.tick()
    assert engine.store.get(incident_id).state is IncidentState.RESOLVED
    _fire(engine, clock, starts="16:47:47", posted="16:47:47")  # fires again: the incident reopens
    assert list(engine.open_incident_ids()) == [incident_id]
    _resolve(engine, clock, ended="16:47:49", posted="16:47:49")
    _at(clock, "16:48:09")
    engine.tick()
    md = engine.postmortem(incident_id)
    metrics = _metrics(md)
    assert metrics["MTTD (first onset to incident opened)"] == "2m 00s"
    assert metrics["MTTR (first onset to recovery)"] == "2m 30s"  # to 16:47:49, the final recovery
    assert metrics["First onset"].startswith("2026-03-02T16:45:19Z")


def test_an_onset_an_alert_knows_before_its_starts_at_is_where_mttd_and_mttr_begin(
    sql: Engine, clock: FakeClock
) -> None:
    # The presence detector's NodeDown starts when the absence limit passed; its `onset` annotation says
    # when the node's last sample came. MTTD was "0m 00s" for an incident opened 91 s after the node died.
    engine = IncidentEngine(sql, clock, AlertingConfig(quiet_period_seconds=20, announce_delay_seconds=0))
    down = {"alertname": "NodeDown", "Hostname": "n04"}
    _at(clock, "16:47:19")
    onset = {"onset": "2026-03-02T16:45:48Z"}
    engine.ingest(
        [Alert(down, starts_at=clock.now(), ends_at=clock.now() + timedelta(minutes=5), annotations=onset)]
    )
    [incident_id] = engine.open_incident_ids()
    metrics = _metrics(engine.postmortem(incident_id))
    assert metrics["MTTD (first onset to incident opened)"] == "1m 31s"
    assert metrics["First onset"].startswith("2026-03-02T16:45:48Z")
    # One that is no time, or later than startsAt, is not an onset: startsAt stays where it begins.
    for odd in ("soon", "2026-03-02T16:50:00Z", "2026-03-02T16:40:00"):
        other = {**down, "Hostname": f"m{len(odd):02d}"}
        engine.ingest(
            [
                Alert(
                    other,
                    starts_at=clock.now(),
                    ends_at=clock.now() + timedelta(minutes=5),
                    annotations={"onset": odd},
                )
            ]
        )
        [other_id] = [i for i in engine.open_incident_ids() if other["Hostname"] in engine.store.get(i).title]
        assert _metrics(engine.postmortem(other_id))["MTTD (first onset to incident opened)"] == "0m 00s", odd


def test_mttr_ends_when_the_last_alert_resolved_not_after_the_quiet_period(
    sql: Engine, clock: FakeClock
) -> None:
    engine = IncidentEngine(sql, clock, AlertingConfig(quiet_period_seconds=300, announce_delay_seconds=0))
    _fire(engine, clock, starts="16:46:19", posted="16:47:19")
    [incident_id] = engine.open_incident_ids()
    _resolve(engine, clock, ended="16:49:19", posted="16:49:49")  # the resolve came late; endsAt says when
    _at(clock, "16:55:00")
    engine.tick()
    incident = engine.store.get(incident_id)
    assert incident.resolved_at == _t("16:55:00")  # the incident's own time is unchanged
    metrics = _metrics(engine.postmortem(incident_id))
    assert metrics["MTTR (first onset to recovery)"] == "3m 00s"
    assert metrics["Recovered"].startswith("2026-03-02T16:49:19Z (its last alert resolved")


def test_an_open_incident_has_no_mttr_yet(sql: Engine, clock: FakeClock) -> None:
    engine = IncidentEngine(sql, clock, AlertingConfig(quiet_period_seconds=300, announce_delay_seconds=0))
    _fire(engine, clock, starts="16:46:19", posted="16:47:19")
    [incident_id] = engine.open_incident_ids()
    _resolve(engine, clock, ended="16:49:19", posted="16:49:19")  # quiet, but it may still fire again
    metrics = _metrics(engine.postmortem(incident_id))
    assert metrics["MTTD (first onset to incident opened)"] == "1m 00s"
    assert metrics["MTTR (first onset to recovery)"] == "n/a (not resolved)"


def test_an_incident_keeps_the_first_onset_of_the_incidents_merged_with_it(
    sql: Engine, clock: FakeClock
) -> None:
    config = AlertingConfig(correlation_window_seconds=60, announce_delay_seconds=0)
    engine = IncidentEngine(sql, clock, config)
    in_rack = {"cluster": "c1", "rack": "r1"}
    gpu = {**ECC, **in_rack}
    _fire(engine, clock, starts="16:45:19", posted="16:47:19", labels=gpu)
    [first] = engine.open_incident_ids()
    _at(clock, "16:47:30")
    engine.ingest([Alert(gpu, status=AlertStatus.RESOLVED)])
    _fire(engine, clock, starts="16:48:00", posted="16:48:00", labels=gpu)  # fires again, a later startsAt
    node = {"alertname": "NodeDown", "node": "n05", **in_rack}
    _fire(engine, clock, starts="16:58:00", posted="16:58:00", labels=node)
    _fire(
        engine, clock, starts="16:58:10", posted="16:58:10", labels={"alertname": "RackPowerLoss", **in_rack}
    )
    # The GPU's incident, opened (and announced) first, survives and takes in the rack's.
    [survivor] = engine.open_incident_ids()
    assert survivor == first
    [absorbed] = [r.id for r, _ in engine.store.list_rows(include_merged=True) if r.merged_into == survivor]
    assert _metrics(engine.postmortem(survivor))["First onset"].startswith("2026-03-02T16:45:19Z")
    assert engine.store.get(survivor).root_cause.kind.value == "rack_down"
    merged = _metrics(engine.postmortem(absorbed))
    assert merged["MTTR (first onset to recovery)"] == "n/a (merged into another incident)"


def test_an_ack_of_an_incident_merged_in_is_the_survivors_ack_and_action(
    sql: Engine, clock: FakeClock
) -> None:
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0))
    hot = {"alertname": "GpuTemperatureHigh", "node": "n10", "gpu": "0"}
    xid = {"alertname": "GpuXidError", "node": "n10", "gpu": "1"}
    _fire(engine, clock, starts="16:47:19", posted="16:47:20", labels=hot)
    [survivor] = engine.open_incident_ids()
    _fire(engine, clock, starts="16:47:21", posted="16:47:21", labels=xid)
    [absorbed] = set(engine.open_incident_ids()) - {survivor}
    _at(clock, "16:47:28")
    engine.acknowledge(absorbed, "bea")
    # The node goes down: one fault, the incident opened first takes the other in.
    _fire(
        engine, clock, starts="16:47:30", posted="16:47:31", labels={"alertname": "NodeDown", "node": "n10"}
    )
    assert engine.store.get(absorbed).merged_into == survivor
    md = engine.postmortem(survivor)
    assert _metrics(md)["Time to acknowledge"] == "0m 08s"  # bea's ack, 16:47:20 to 16:47:28
    actions = md.split("## Actions\n\n", 1)[1].split("\n\n", 1)[0]
    assert actions == f"- 2026-03-02T16:47:28Z — acknowledged by bea (on {absorbed}, merged in since)"


def _timeline(md: str) -> list[str]:
    section = md.split("## Timeline\n\n", 1)[1].split("\n\n## ", 1)[0]
    return [line.removeprefix("- ") for line in section.splitlines() if line.startswith("- ")]


def test_the_timeline_shows_when_the_fault_began_and_ended_as_the_metrics_measure_them(
    sql: Engine, clock: FakeClock
) -> None:
    engine = IncidentEngine(sql, clock, AlertingConfig(quiet_period_seconds=300, announce_delay_seconds=0))
    _fire(engine, clock, starts="16:42:19", posted="16:47:19")  # began five minutes before it was posted
    [incident_id] = engine.open_incident_ids()
    _resolve(engine, clock, ended="16:55:36", posted="16:56:06")  # its resolve arrived 30 s late
    _at(clock, "17:01:07")
    engine.tick()
    md = engine.postmortem(incident_id)
    metrics = _metrics(md)
    assert metrics["First onset"].startswith("2026-03-02T16:42:19Z")
    assert metrics["Recovered"].startswith("2026-03-02T16:55:36Z")
    lines = _timeline(md)
    began = "2026-03-02T16:42:19Z — fault began (first alert's onset)"
    ended = "2026-03-02T16:55:36Z — fault ended (last alert's endsAt)"
    received = "2026-03-02T16:56:06Z — alert GpuEccDbe (n04, 3) resolved"
    assert lines[0] == began and lines.index(began) < lines.index("2026-03-02T16:47:19Z — incident opened")
    assert lines.index(ended) + 1 == lines.index(received)  # in time order, the fault's end first
    assert lines == sorted(lines, key=lambda line: line.split(" — ", 1)[0])
    assert "Alert entries are when gpuwarden received them" in md


def test_an_open_incident_shows_its_onset_but_no_end_on_the_timeline(sql: Engine, clock: FakeClock) -> None:
    engine = IncidentEngine(sql, clock, AlertingConfig(quiet_period_seconds=300, announce_delay_seconds=0))
    _fire(engine, clock, starts="16:46:19", posted="16:47:19")
    [incident_id] = engine.open_incident_ids()
    lines = _timeline(engine.postmortem(incident_id))
    assert lines[0] == "2026-03-02T16:46:19Z — fault began (first alert's onset)"
    assert not any("fault ended" in line for line in lines)


def test_an_incident_resolved_by_hand_lists_who_resolved_it_and_when_the_fault_ended(
    sql: Engine, clock: FakeClock
) -> None:
    engine = IncidentEngine(sql, clock, AlertingConfig(quiet_period_seconds=300, announce_delay_seconds=0))
    _fire(engine, clock, starts="16:46:19", posted="16:47:19")
    [incident_id] = engine.open_incident_ids()
    _resolve(engine, clock, ended="16:49:19", posted="16:49:49")
    _at(clock, "16:50:00")
    engine.resolve(incident_id, "alice")
    md = engine.postmortem(incident_id)
    assert _metrics(md)["MTTR (first onset to recovery)"] == "3m 00s"
    assert "- 2026-03-02T16:50:00Z — resolved by alice" in md.split("## Actions\n\n", 1)[1].split("\n\n")[0]
    assert "2026-03-02T16:49:19Z — fault ended (last alert's endsAt)" in _timeline(md)


def test_a_resolve_whose_ends_at_lies_ahead_ends_the_fault_when_it_was_seen_resolved(
    sql: Engine, clock: FakeClock
) -> None:
    engine = IncidentEngine(sql, clock, AlertingConfig(quiet_period_seconds=300, announce_delay_seconds=0))
    _fire(engine, clock, starts="16:46:19", posted="16:47:19")
    [incident_id] = engine.open_incident_ids()
    _resolve(engine, clock, ended="16:52:00", posted="16:49:19")  # the sender's clock runs ahead
    _at(clock, "16:55:00")
    engine.tick()
    md = engine.postmortem(incident_id)
    assert _metrics(md)["Recovered"].startswith("2026-03-02T16:49:19Z")
    assert "2026-03-02T16:49:19Z — fault ended (all its alerts seen resolved)" in _timeline(md)


def test_an_incident_marked_mitigating_before_anyone_acked_it_counts_as_acknowledged_then(
    sql: Engine, clock: FakeClock
) -> None:
    engine = IncidentEngine(sql, clock, AlertingConfig(quiet_period_seconds=20, announce_delay_seconds=0))
    _fire(engine, clock, starts="16:47:09", posted="16:47:19")
    [incident_id] = engine.open_incident_ids()
    _at(clock, "16:47:34")
    engine.mark_mitigating(incident_id, "dave", "drain n4")
    _at(clock, "16:47:37")
    assert engine.acknowledge_outcome(incident_id, "erin").changed is False  # "already mitigating"
    metrics = _metrics(engine.postmortem(incident_id))
    assert metrics["Time to acknowledge"] == "0m 15s, when mitigating: drain n4 (by dave)"


def test_time_to_acknowledge_runs_to_the_first_ack_not_a_later_one(sql: Engine, clock: FakeClock) -> None:
    engine = IncidentEngine(sql, clock, AlertingConfig(quiet_period_seconds=20, announce_delay_seconds=0))
    _fire(engine, clock, starts="16:47:09", posted="16:47:19")
    [incident_id] = engine.open_incident_ids()
    _at(clock, "16:47:26")
    engine.acknowledge(incident_id, "alice")
    _at(clock, "16:47:30")
    engine.mark_mitigating(incident_id, "alice", "reset gpu")
    assert _metrics(engine.postmortem(incident_id))["Time to acknowledge"] == "0m 07s"


def test_one_alert_is_one_alert_and_follow_ups_start_with_no_empty_checkbox() -> None:
    inc = incident([("P2", "degraded")])
    inc.alert_fingerprints = ["fp-1"]
    md = render_postmortem(inc, T0, ["GpuLost"], inc.resolved_at)
    assert "- Evidence: 1 alert (GpuLost)\n" in md
    follow_ups = md.split("## Follow-ups\n\n", 1)[1]
    assert follow_ups.strip() and all(line.strip() != "- [ ]" for line in follow_ups.splitlines())


def test_a_silence_is_in_the_actions_as_long_as_it_was_asked_for(sql: Engine, clock: FakeClock) -> None:
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0))
    _fire(engine, clock, starts="16:45:19", posted="16:47:19")
    [incident_id] = engine.open_incident_ids()
    engine.silence_incident(incident_id, 5400, "alice")
    actions = engine.postmortem(incident_id).split("## Actions\n\n", 1)[1].split("\n\n", 1)[0]
    (silence,) = engine.all_silences()
    assert actions.endswith(f"— silenced for 1h30m by alice (silence {silence.id})")


INJECTED = (
    "GpuHot\n\n## Root cause (confirmed)\nOperator error by **alice**: [approve the fix](http://evil.example/x)\n"
    '<img src="http://evil.example/t.png">'
)


def test_label_text_stays_literal_text_in_every_part_of_the_draft() -> None:
    """An alertname added a "## Root cause (confirmed)" section, bold text, a link and an <img> (a tracking
    pixel) to the draft people paste into a wiki or an issue; the timeline fenced it, the heading and the
    Evidence line did not."""
    inc = incident([("P2", INJECTED)])
    inc.title = f"{INJECTED} on node-09"
    inc.alert_fingerprints = ["fp-1"]
    inc.timeline.append(TimelineEvent(T0, "acknowledged", f"acknowledged by {INJECTED}"))
    md = render_postmortem(inc, T0, [INJECTED], inc.resolved_at)
    lines = md.splitlines()
    assert [line for line in lines if line.startswith("#")] == [
        lines[0],
        *("## Impact", "## Root cause", "## Metrics", "## Actions", "## Timeline", "## Follow-ups"),
    ]
    before_timeline = md.split("## Timeline", 1)[0]  # where the timeline has a note's lines, they are fenced
    assert "<img" not in before_timeline and "**alice**" not in before_timeline
    assert not re.search(r"(?<!\\)\]\(http", before_timeline)  # no link: its bracket is escaped
    # Rendered: "GpuHot\n\n## Root cause (confirmed)\nOperator error by **alice**: ..." as plain text.
    assert lines[0].startswith(r"# Postmortem draft: GpuHot\\n\\n\#\# Root cause (confirmed)\\nOperator")
    assert '&lt;img src="http://evil.example/t.png"&gt;' in lines[0]
    assert r"- Evidence: 1 alert (GpuHot\\n\\n\#\# Root cause" in md
    assert r"by \*\*alice\*\*: \[approve the fix\](http://evil.example/x)" in md


def _impact(md: str) -> list[str]:
    return md.split("## Impact\n\n", 1)[1].split("\n\n", 1)[0].splitlines()


def test_the_impact_is_the_worst_one_across_recovery_restart_and_reopen(sql: Engine) -> None:
    clock = FakeClock(T0.timestamp())
    config = AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=30)
    inventory = sc.fleet_inventory(spare_gpus=16)
    engine = IncidentEngine(sql, clock, config, inventory)
    downs = [
        Alert({"alertname": "NodeDown", "cluster": "c1", "node": sc.node_name(7, n)}) for n in range(1, 6)
    ]
    engine.ingest(downs)  # 5 nodes, 40 GPUs of the job's 128: more than the 16 spare, P0
    [incident_id] = engine.open_incident_ids()
    clock.advance(60)
    engine.ingest([Alert(a.labels, status=AlertStatus.RESOLVED) for a in downs[1:]])  # 1 node left: P1
    clock.advance(60)
    engine.ingest([Alert(downs[0].labels, status=AlertStatus.RESOLVED)])
    clock.advance(31)
    engine.tick()
    engine = IncidentEngine(sql, clock, config, inventory)  # a restart
    clock.advance(30)
    engine.ingest([downs[1]])  # down again within the reopen window: the incident reopens
    clock.advance(60)
    engine.ingest([Alert(downs[1].labels, status=AlertStatus.RESOLVED)])
    clock.advance(31)
    engine.tick()
    assert engine.store.get(incident_id).state is IncidentState.RESOLVED
    impact = _impact(engine.postmortem(incident_id))
    assert impact[:2] == [
        "- At its worst (P0): 5 nodes, 40 GPUs, training job llm-70b stopped",
        "- At the end (P1): 1 node, 8 GPUs, training job llm-70b stopped",
    ]
    assert (
        "- GPUs affected: 40 at its worst, 8 at the end; nodes affected: 5 at its worst, 1 at the end"
        in impact
    )
    assert "- Spare capacity available: no at its worst, yes at the end" in impact


def test_an_impact_that_never_changed_is_shown_once(sql: Engine) -> None:
    clock = FakeClock(T0.timestamp())
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), sc.fleet_inventory())
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": sc.node_name(7, 1)})])
    [incident_id] = engine.open_incident_ids()
    impact = _impact(engine.postmortem(incident_id))
    assert impact[:2] == [
        "- 1 node, 8 GPUs, training job llm-70b stopped",
        "- GPUs affected: 8; nodes affected: 1",
    ]


def test_a_gpu_degraded_but_not_lost_is_said_as_slack_says_it_not_as_no_impact(sql: Engine) -> None:
    # The demo's thermal incident: "no workload impact known" above "Workloads: inference service llm-chat",
    # where Slack said "no capacity lost; 1 GPU degraded".
    clock = FakeClock(T0.timestamp())
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), sc.fleet_inventory())
    node = sc.node_name(7, 1)
    engine.ingest([Alert({"alertname": "GpuClockSlowdown", "cluster": "c1", "Hostname": node, "gpu": "2"})])
    [incident_id] = engine.open_incident_ids()
    impact = _impact(engine.postmortem(incident_id))
    assert impact[:2] == ["- no capacity lost; 1 GPU degraded", "- GPUs affected: 1; nodes affected: 1"]


def test_an_incident_keeps_the_worst_impact_of_one_it_absorbed(sql: Engine) -> None:
    # The same power-brake slowdown spreads over three nodes of rack r07: the rack's fault, and the incident
    # opened first takes the other two in. The second had 8 GPUs slowed before 7 recovered; the draft
    # reported the 3 GPUs slowed at the merge as if that were the worst.
    clock = FakeClock(T0.timestamp())
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), sc.fleet_inventory())

    def slowed(node: int, gpu: int, status: AlertStatus = AlertStatus.FIRING) -> Alert:
        labels = {"alertname": "GpuPowerBrakeSlowdown", "cluster": "c1", "node": sc.node_name(7, node)}
        return Alert({**labels, "gpu": str(gpu)}, status=status)

    engine.ingest([slowed(1, 0)])
    [survivor] = engine.open_incident_ids()
    clock.advance(10)
    engine.ingest([slowed(2, gpu) for gpu in range(8)])
    clock.advance(10)
    engine.ingest([slowed(2, gpu, AlertStatus.RESOLVED) for gpu in range(1, 8)])
    clock.advance(10)
    engine.ingest([slowed(3, 0)])
    assert engine.open_incident_ids() == [survivor]
    absorbed = [r for r, _ in engine.store.list_rows(include_merged=True) if r.merged_into == survivor]
    assert len(absorbed) == 2
    impact = _impact(engine.postmortem(survivor))
    assert (
        "- GPUs affected: 8 at its worst, 3 at the end; nodes affected: 1 at its worst, 3 at the end"
        in impact
    ), impact


def test_a_share_under_1_percent_and_a_ratio_near_all_are_not_rounded_to_0_or_100_percent() -> None:
    # The draft said "Largest share of a workload affected: 0%" for 0.4 % and "Error ratio: 100%" for
    # 99.6 %, where Slack and ``incidents show`` say 0.4% and 99.6% (``gpuwarden.model.percent``).
    inc = incident([("P0", "error ratio 99.6% > 50%")])
    inc.impact = Impact(affected_share=0.004, error_ratio=0.996)
    impact = _impact(render_postmortem(inc, T0, ["InferenceErrors"], inc.resolved_at))
    assert "- Largest share of a workload affected: 0.4%" in impact
    assert "- Error ratio: 99.6%" in impact
