"""What the incident engine tells its listeners: after the commit, despite a failing listener, what the
firing alerts recommend, and a POST's moves and root-cause changes told once."""

from __future__ import annotations

from datetime import timedelta

from alerting import scenarios
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, AlertStatus, RecommendedAction
from tests.alerting.incident_engines import _engine, _open, _rack_down


def test_listeners_see_changes_only_after_commit(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock)
    seen: list[tuple[ChangeKind, int]] = []

    def listener(change: IncidentChange) -> None:
        # Read through a separate engine: the change must already be committed.
        other = IncidentEngine(make_engine(db), clock)
        seen.append((change.kind, len(other.store.get(change.incident.id).alert_fingerprints)))

    engine.subscribe(listener)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "x1"})])
    assert seen and seen[0] == (ChangeKind.OPENED, 1)


def test_a_failing_listener_does_not_break_ingest(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock)

    def broken(change: IncidentChange) -> None:
        raise RuntimeError("boom")

    engine.subscribe(broken)
    engine.ingest([Alert({"alertname": "NodeDown", "node": "x1"})])
    assert len(_open(engine)) == 1
    assert engine.counters["listener_errors"] >= 1


def test_changes_carry_what_the_firing_alerts_recommend(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, quiet_period_seconds=0)
    seen: list[tuple[ChangeKind, tuple[str, ...]]] = []
    engine.subscribe(lambda c: seen.append((c.kind, c.recommended)))
    xid = {"alertname": "GpuXid", "xid": "79", "cluster": "c1", "node": "x1", "gpu": "3"}
    down = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    noise = {"alertname": "GpuXid", "xid": "63", "cluster": "c1", "node": "x1", "gpu": "4"}  # informational
    engine.ingest(
        [
            Alert(noise, recommended_action=RecommendedAction.IGNORE),
            Alert(xid, recommended_action=RecommendedAction.RESTART_NODE),
            Alert(down, recommended_action=RecommendedAction.INVESTIGATE),
        ]
    )
    # Most drastic first, no "ignore"; XID 79's follow-up in the catalog (CONTACT_SUPPORT) after its reboot.
    assert seen[0] == (ChangeKind.OPENED, ("restart_node", "contact_support", "investigate"))
    clock.advance(60)
    before = len(seen)
    engine.ingest([Alert(xid, status=AlertStatus.RESOLVED)])  # the XID alert ends, the node is still down
    assert len(seen) > before and seen[-1][1] == ("investigate",)  # only firing alerts recommend


def test_a_repeat_that_changes_its_recommended_action_is_what_the_incident_recommends(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock)
    seen: list[tuple[str, ...]] = []
    engine.subscribe(lambda c: seen.append(c.recommended))
    anomaly = {"alertname": "GpuwardenAnomaly", "cluster": "c1", "node": "n03", "gpu": "7"}
    engine.ingest([Alert(anomaly, recommended_action=RecommendedAction.INVESTIGATE)])
    assert seen[-1] == ("investigate",)
    engine.ingest([Alert(anomaly, recommended_action=RecommendedAction.RESET_GPU)])
    assert seen[-1] == ("reset_gpu",)
    ((incident, *_),) = _open(engine)
    assert [a.recommended_action for a in engine.store.alerts_of(incident)] == ["reset_gpu"]
    before = len(seen)
    engine.ingest([Alert(anomaly, recommended_action=RecommendedAction.RESET_GPU)])  # a plain repeat
    assert len(seen) == before


def test_a_reply_telling_an_alert_joined_also_says_the_same_transaction_moved_it_on(
    db: str, clock: FakeClock
) -> None:
    # A dead rack has stopped training job llm-70b; an NVSwitch then fails on r08-n03, where the job's
    # ranks stall too. A stalled rank joins the rack's incident first, and the same transaction moves it to
    # the NVLink incident, which holds its GPU: the rack's thread read "alert TrainingJobStalled (Slurm job
    # llm-70b) firing" and nothing of the move, an alert its incident no longer has.
    engine = _rack_down(db, clock)
    ((rack_id, *_),) = _open(engine)
    heard: list[IncidentChange] = []
    engine.subscribe(heard.append)
    clock.advance(30)
    # Its stalled ranks posted first, the switch's alerts on their GPUs in a second POST that the journal
    # applier applies in the same transaction: the ranks join the rack's incident before the switch's
    # incident exists (in onset order, as one POST is taken, the switch's incident counts the job first).
    alerts = scenarios.nvlink_switch_failure(8, 3, clock.now())
    stalls = [a for a in alerts if a.labels["alertname"] == "TrainingJobStalled"]
    switch = [a for a in alerts if a not in stalls]
    engine.apply_accepted([(clock.now(), stalls), (clock.now(), switch)], lambda _session: None)
    moved = [e for e in engine.store.get(rack_id).timeline if e.kind == "alerts_moved"]
    assert moved, "the scenario no longer moves a stalled rank: the test checks nothing"
    told = [c for c in heard if c.incident.id == rack_id]
    assert told and all(any(m.message in c.also for m in moved) for c in told), [
        (c.event.message, c.also) for c in told
    ]


def test_stalled_ranks_moved_together_to_one_incident_are_one_timeline_entry_and_one_also_line(
    db: str, clock: FakeClock
) -> None:
    # A dead rack's incident holds llm-70b's stalled ranks; a driver rollout then reaches the job's racks and
    # the ranks whose GPUs it holds move to the rollout's incident, one POST: each rank was its own
    # "1 stalled rank alert moved to inc-…" on both timelines and its own "• also:" line in Slack's reply
    # (88 identical lines).
    engine = _rack_down(db, clock)
    heard: list[IncidentChange] = []
    engine.subscribe(heard.append)
    clock.advance(30)
    engine.ingest(scenarios.driver_rollout_xids((7, 8), clock.now()))
    moves: dict[tuple[str, str], int] = {}
    for r, _ in engine.store.list_rows(include_merged=True):
        for e in engine.store.get(r.id).timeline:
            if e.kind == "alerts_moved":
                key = (r.id, e.message.split(" ", 1)[1])  # what moved, between which two, why
                moves[key] = moves.get(key, 0) + 1
    assert moves, "the scenario no longer moves a stalled rank: the test checks nothing"
    assert set(moves.values()) == {1}, moves
    for c in heard:
        assert len(set(c.also)) == len(c.also), c.also


def test_a_root_cause_that_moves_several_times_in_one_post_is_told_once_where_it_ended(
    db: str, clock: FakeClock
) -> None:
    # A dead rack's incident, resolved; an NVSwitch fails on r08-n03; then a driver rollout's XID 119 reaches
    # both of llm-70b's racks in one POST. The rack's incident reopens and its root cause moves three times
    # as the POST's alerts are grouped: three replies at one instant, two of them already untrue ("root cause
    # is now XID on gpu r07-n08/0", "... job stalled on training job llm-70b", "... XID on cluster c1").
    engine = _engine(db, clock, scenarios.fleet_inventory(), quiet_period_seconds=20)
    storm = scenarios.rack_failure(7, clock.now())
    engine.ingest(storm)
    clock.advance(60)
    engine.ingest([Alert(a.labels, starts_at=a.starts_at, ends_at=clock.now()) for a in storm])
    clock.advance(60)
    engine.tick()
    clock.advance(60)
    engine.ingest(scenarios.nvlink_switch_failure(8, 3, clock.now()))
    clock.advance(60)
    heard: list[IncidentChange] = []
    engine.subscribe(heard.append)
    engine.ingest(scenarios.driver_rollout_xids((7, 8), clock.now() - timedelta(seconds=100)))
    moved = [c for c in heard if c.event.kind == "root_cause_changed"]
    assert [c.event.message for c in moved] == ["root cause is now XID on cluster c1"]
    (incident_id,) = {c.incident.id for c in moved}
    assert _open(engine)[0][0] == incident_id and _open(engine)[0][2] == "xid"
    said = [e.message for e in engine.store.get(incident_id).timeline if e.kind == "root_cause_changed"]
    assert said[-1] == "root cause is now XID on cluster c1" and len(said) == len(set(said))
