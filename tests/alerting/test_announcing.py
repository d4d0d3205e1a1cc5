"""Announcing incidents to the outbox: what Slack and a webhook receiver hear of incidents merged at birth."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from alerting import announcing
from alerting import scenarios as sc
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.notifiers.webhook import WebhookNotifier
from alerting.outbox import Outbox
from alerting.store_models import IncidentRow
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, RecommendedAction
from tests.alerting.announcing_serve import _served
from tests.alerting.arrival_streams import START, _batches, _ranks
from tests.alerting.handoff_serve import _down, _kinds, _serve
from tests.alerting.notifiers.incidents import lifecycle
from tests.migrated_store import migrated_sqlite


def test_with_no_announce_delay_an_incident_merged_in_the_batch_that_opened_it_is_never_announced(
    tmp_path: Path,
) -> None:
    # A rollout's XIDs and a rack's outage in 64-alert POSTs: node incidents open and are taken in by the
    # incident that goes on within one POST. Each still got a Slack message and an "opened" webhook that
    # already said "resolved" (the payload was the incident as it was when told, after the merge).
    alerts = _ranks(
        sc.driver_rollout_xids((7, 8), START, stalled_job=None)
        + sc.rack_failure(7, START + timedelta(seconds=20))
    )
    random.Random(1).shuffle(alerts)
    with _served(tmp_path, alerts) as (engine, outbox, recorder, hook):
        for post in _batches(alerts, 64):
            engine.ingest(post)
        outbox.dispatch_due()
        hook.close()
        merged = _merged(engine)
        assert merged, "the scenario merges incidents within one POST"
        posts = recorder.hook_posts("oncall")
        opened = [p["incident"]["id"] for p in posts if p["change"] == "opened"]
        assert sorted(opened) == sorted(engine.open_incident_ids())  # only the incidents that go on speak
        assert {p["incident"]["id"] for p in posts}.isdisjoint(merged)
        assert len(recorder.channel_messages()) == len(engine.open_incident_ids())


def _rebooting(alert: Alert) -> Alert:
    """The alert, recommending a reboot when it is an XID 79 (fell off the bus), as the catalog says."""
    return (
        replace(alert, recommended_action=RecommendedAction.RESTART_NODE)
        if alert.labels.get("xid")
        else alert
    )


def _merged(engine: IncidentEngine) -> list[str]:
    """The ids of merged incidents."""
    with engine._sessions() as session:
        return list(session.scalars(select(IncidentRow.id).where(IncidentRow.merged_into.is_not(None))))


def test_the_end_of_an_incident_never_announced_reaches_only_a_notifier_that_heard_of_it(
    tmp_path: Path,
) -> None:
    # A crash between the outbox storing an "opened" and the engine forgetting it: the next process finds
    # the incident ended before it announced it, and says nothing of it, but for its end to whoever heard.
    path = str(tmp_path / "s.db")
    migrated_sqlite(Path(path)).dispose()
    with SlackRecorder() as recorder:
        told = WebhookNotifier(f"{recorder.root_url}/hooks/told", name="webhook:told")
        later = WebhookNotifier(f"{recorder.root_url}/hooks/later", name="webhook:later")
        opened, *_, resolved = lifecycle("inc-a")
        Outbox(make_engine(path), [told], FakeClock()).enqueue(opened)
        restarted = Outbox(make_engine(path), [told, later], FakeClock())
        assert restarted.enqueue(replace(resolved, only_if_told=True)) == 1
        assert restarted.enqueue(replace(lifecycle("inc-b")[-1], only_if_told=True)) == 0
        restarted.dispatch_due()
        told.close()
        later.close()
        assert [p["change"] for p in recorder.hook_posts("told")] == ["opened", "resolved"]
        assert recorder.hook_posts("later") == []


def test_an_opened_handed_over_before_a_crash_is_followed_by_its_end_after_the_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The outbox stored "opened", but the engine died before forgetting it; the incident then resolved and
    # that was never told. The next process finds an incident opened and ended, never announced by it.
    db = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(db)).dispose()
    clock = FakeClock()
    engine, outbox = _serve(db, clock)
    with monkeypatch.context() as patch:
        patch.setattr(announcing, "forget", _down)
        lost = Alert({"alertname": "GPULost", "cluster": "c1", "Hostname": "r01-n01", "gpu": "0"})
        engine.ingest([lost])
        assert _kinds(outbox) == [ChangeKind.OPENED]
        patch.setattr(outbox, "enqueue", _down)
        engine.ingest([Alert(lost.labels, status=AlertStatus.RESOLVED)])
        clock.advance(61)
        engine.tick()
    engine, outbox = _serve(db, clock)
    engine.tick()
    assert _kinds(outbox) == [ChangeKind.OPENED, ChangeKind.RESOLVED]


def test_changes_told_together_each_describe_the_incident_as_it_was_at_their_own_event(
    tmp_path: Path,
) -> None:
    # An NVSwitch incident announced, then one applier batch: the rack's outage raises its priority, and the
    # rack's incident takes it in. Its "updated" and "priority_changed" said `resolved` in the webhook body
    # and in the Slack thread, as the incident was after the whole batch: a receiver closed its ticket twice.
    # A node of the rack went down a second before the NVSwitch's first alert (an NVLink error) opened its
    # own incident: the batch grows the node's to the rack's, which opened first and so takes the NVSwitch's
    # in. The NVLink error opens it: a stale exporter of the rack opened it before, which took in the node's
    # NVLink errors and XIDs then; it explains nothing else on its node now.
    rack = [_rebooting(a) for a in sc.rack_failure(7, START + timedelta(seconds=30))]
    alerts = _ranks(sc.nvlink_switch_failure(7, 3, START) + rack)
    random.Random(17).shuffle(alerts)
    down = next(a for a in alerts if a.labels.get("instance") == f"{sc.node_name(7, 1)}:9100")
    nvlink = next(a for a in alerts if a.labels["alertname"] == "GPUNVLinkErrors")
    with _served(tmp_path, alerts) as (engine, outbox, recorder, hook):
        engine.ingest([down])
        (wider,) = engine.open_incident_ids()
        engine.clock.advance(1)  # type: ignore[attr-defined]
        engine.ingest([nvlink])
        outbox.dispatch_due()
        (first,) = set(engine.open_incident_ids()) - {wider}
        rest = [a for a in alerts if a is not nvlink and a is not down]
        switch_node = [a for a in rest if a.labels.get("Hostname") == sc.node_name(7, 3)]
        # Two POSTs: the switch's node's first (its XID 79s join the NVSwitch's incident), then the rest.
        batch = [switch_node, [a for a in rest if all(a is not b for b in switch_node)]]
        engine.apply_accepted([(engine.clock.now(), post) for post in batch], lambda _: None)
        outbox.dispatch_due()
        hook.close()
        assert engine.open_incident_ids() == [wider]  # the incident that opened first goes on
        assert engine.store.get(first).merged_into == wider
        posts = [p for p in recorder.hook_posts("oncall") if p["incident"]["id"] == first]
        assert [p["change"] for p in posts] == ["opened", "updated", "priority_changed", "resolved"]
        assert [p["incident"]["state"] for p in posts] == ["triggered"] * 3 + ["resolved"]
        assert [p["incident"]["resolved_at"] is None for p in posts] == [True] * 3 + [False]
        # The rack's XID 79s joined it in the batch, then it was merged: what they recommend was read from the
        # open incidents after the batch, where it no longer was, and said nothing.
        said_then = [p["incident"]["recommended_actions"] for p in posts]
        advice = ["restart_node", "contact_support"]  # the catalog's immediate action and follow-up of XID 79
        assert said_then == [[], advice, advice, []]
        changed = posts[2]
        assert changed["event"]["message"].startswith(f"priority {changed['incident']['priority']}:")
        (parent,) = [m for m in recorder.channel_messages() if first in str(m.metadata)]
        said = [r.blocks[1]["elements"][0]["text"] for r in recorder.replies(parent.ts)]
        assert [s.endswith("triggered") for s in said] == [True] * 3 + [False]
        assert said[-1].endswith("resolved")
        # The NVSwitch incident opened P3 and went P0 in the batch, at the same clock time: the change was
        # found on the timeline by time and kind, so told as the opening's "priority P3" event, with its
        # idempotency key: the P0 was dropped as a repeat (Slack and the webhook said P3 throughout).
        for other in {p["incident"]["id"] for p in recorder.hook_posts("oncall")}:
            stored = engine.store.get(other)
            told = [p for p in recorder.hook_posts("oncall") if p["incident"]["id"] == other]
            changed = [e.message for e in stored.timeline if e.kind == "priority" and e.data.get("from")]
            assert [p["event"]["message"] for p in told if p["change"] == "priority_changed"] == changed
            assert told[-1]["incident"]["priority"] == stored.priority.value


def test_two_identical_changes_of_one_instant_are_each_told(tmp_path: Path) -> None:
    # Two changes alike in time, kind, message and data (a note said twice at one clock instant; a root
    # cause that goes A, B, A, B in one batch) had one idempotency key: the outbox stored the second as a
    # repeat of the first and nobody heard it (a receiver left believing the root cause was A).
    alerts = sc.node_failure(1, 1, START)
    with _served(tmp_path, alerts) as (engine, outbox, recorder, hook):
        engine.ingest(alerts)
        (incident_id,) = engine.open_incident_ids()
        for _ in range(2):
            engine.add_note(incident_id, "alice", "cordoning r01-n01")
        outbox.dispatch_due()
        hook.close()
        notes = [p for p in recorder.hook_posts("oncall") if p["event"]["kind"] == "note"]
        assert [p["event"]["message"] for p in notes] == ["note by alice: cordoning r01-n01"] * 2
        assert len({p["idempotency_key"] for p in notes}) == 2
        (parent,) = recorder.channel_messages()
        said = [str(r.blocks) for r in recorder.replies(parent.ts)]
        assert sum("cordoning r01-n01" in s for s in said) == 2


def _rack_power_loss(rack: int, onset_offset: float) -> Alert:
    labels = {
        "alertname": "RackPowerLoss",
        "rack": f"r{rack:02d}",
        "cluster": sc.CLUSTER,
        "severity": "critical",
    }
    return Alert(labels, starts_at=START + timedelta(seconds=onset_offset))


def _gpu_lost_and_node_down() -> list[Alert]:
    """Two incidents' alerts in rack r01: GPU 3 of r01-n01 lost a minute before START, node r01-n02 down."""
    node = sc.node_name(1, 1)
    labels = {"alertname": "GPULost", "Hostname": node, "gpu": "3", "UUID": sc.gpu_uuid(node, 3)}
    lost = Alert({**labels, "cluster": sc.CLUSTER}, starts_at=START - timedelta(seconds=60))
    return [lost, *sc.node_failure(1, 2, START)]


def test_an_incident_merged_away_in_the_batch_that_escalated_it_pages_nobody_for_that_escalation(
    tmp_path: Path,
) -> None:
    # Probe walk: a GPU lost on r01-n01 and node r01-n02 down are two incidents; then rack r01 loses power
    # (every replica of `chat`): in that one POST both rose to P0 and one took the other in. The one merged
    # away still broadcast its "priority P0" to the channel before its "merged into": two pages, one fault.
    first = _gpu_lost_and_node_down()
    rack = _rack_power_loss(1, 30)
    with _served(tmp_path, first) as (engine, outbox, recorder, _hook):
        engine.ingest(first)
        outbox.dispatch_due()
        assert len(engine.open_incident_ids()) == 2
        engine.clock.advance(60)  # type: ignore[attr-defined]
        engine.ingest([*first, rack])  # Prometheus sends what still fires with the new alert
        outbox.dispatch_due()
        merged = _merged(engine)
        assert len(merged) == 1 and len(engine.open_incident_ids()) == 1
        (gone,) = merged
        (gone_parent,) = [m for m in recorder.channel_messages() if gone in str(m.metadata)]
        told = [(r.event, r.reply_broadcast) for r in recorder.replies(gone_parent.ts)]
        assert ("merged", False) in told and ("priority", False) in told  # told in its thread, as it was
        escalations = [m for m in recorder.visible_in_channel() if m.thread_ts and m.event == "priority"]
        assert len(escalations) == 1  # the incident that goes on pages; the one merged away does not


def test_the_resolution_of_an_incident_merged_away_is_not_broadcast_with_broadcast_resolutions(
    tmp_path: Path,
) -> None:
    # Two incidents (a GPU lost, a node down), then their rack loses power: one takes the other in. With
    # ``slack.broadcast_resolutions`` the one merged away had its "merged into" (a resolution) broadcast:
    # the channel heard "resolved" of a fault still going on, told in the other incident's thread.
    first = _gpu_lost_and_node_down()
    with _served(tmp_path, first, broadcast_resolutions=True) as (engine, outbox, recorder, _hook):
        engine.ingest(first)
        outbox.dispatch_due()
        engine.clock.advance(60)  # type: ignore[attr-defined]
        engine.ingest([*first, _rack_power_loss(1, 30)])
        outbox.dispatch_due()
        (gone,) = _merged(engine)
        (gone_parent,) = [m for m in recorder.channel_messages() if gone in str(m.metadata)]
        told = [(r.event, r.reply_broadcast) for r in recorder.replies(gone_parent.ts)]
        assert ("merged", False) in told  # its own thread says where it went
        assert [m for m in recorder.visible_in_channel() if m.thread_ts and m.event == "merged"] == []
        # A real resolution still reaches the channel: everything stops firing and the quiet period passes.
        (going_on,) = engine.open_incident_ids()
        engine.clock.advance(60)  # type: ignore[attr-defined]
        ended = engine.clock.now()
        engine.ingest([replace(a, ends_at=ended) for a in [*first, _rack_power_loss(1, 30)]])
        engine.clock.advance(engine.config.quiet_period_seconds + 1)  # type: ignore[attr-defined]
        engine.tick()
        outbox.dispatch_due()
        assert going_on not in engine.open_incident_ids()
        resolved = [m for m in recorder.visible_in_channel() if m.thread_ts and m.event == "resolved"]
        assert len(resolved) == 1


def test_what_a_batch_did_besides_its_told_changes_is_said_in_the_thread_once(tmp_path: Path) -> None:
    # Probe walk: GPU 0 of a node lost, then GPU 1 of it: the root moved to the node, and the only reply was
    # "root cause is now GPU lost on node ..."; the alert that joined was on the timeline, never in Slack.
    # Likewise the incident that took another in never said so when its root or priority moved too.
    node = sc.node_name(1, 1)

    def lost(gpu: int, offset: float) -> Alert:
        labels = {"alertname": "GPULost", "Hostname": node, "gpu": str(gpu), "UUID": sc.gpu_uuid(node, gpu)}
        return Alert({**labels, "cluster": sc.CLUSTER}, starts_at=START + timedelta(seconds=offset))

    first, second = lost(3, 0), lost(4, 60)
    with _served(tmp_path, [first]) as (engine, outbox, recorder, hook):
        engine.ingest([first])
        outbox.dispatch_due()
        engine.clock.advance(60)  # type: ignore[attr-defined]
        engine.ingest([first, second])
        engine.ingest([first, second])  # Prometheus sends them again: nothing new
        outbox.dispatch_due()
        hook.close()
        (incident_id,) = engine.open_incident_ids()
        kinds = [e.kind for e in engine.store.get(incident_id).timeline]
        assert "root_cause_changed" in kinds and kinds.count("alert_added") == 2
        (parent,) = recorder.channel_messages()
        said = [str(r.blocks) for r in recorder.replies(parent.ts)]
        joined = f"alert GPULost ({node}, 4) firing"
        assert sum(joined in s for s in said) == 1
        (moved,) = [s for s in said if "root cause is now" in s]
        assert joined in moved  # said with the change of its batch, not as a reply of its own


def _held_ten_seconds(tmp_path: Path) -> tuple[str, IncidentEngine, dict[str, str]]:
    """A store's path, an engine over it holding an incident back 10 s (quiet period 300 s) and the labels
    of GPU 3 of ``r01-n01`` lost."""
    path = str(tmp_path / "s.db")
    migrated_sqlite(Path(path)).dispose()
    config = AlertingConfig(announce_delay_seconds=10, quiet_period_seconds=300)
    engine = IncidentEngine(make_engine(path), FakeClock(START.timestamp()), config, sc.fleet_inventory())
    node = sc.node_name(1, 1)
    return path, engine, {"alertname": "GPULost", "Hostname": node, "gpu": "3", "UUID": sc.gpu_uuid(node, 3)}


def test_an_incident_whose_alerts_ended_before_its_announcement_says_so_when_announced(
    tmp_path: Path,
) -> None:
    # Probe walk: a power-brake alert ended a second after it fired; its incident was announced 10 s later
    # (waiting for its quiet period) as "incident opened", triggered, with nothing saying that no alert
    # fires any more: the "quiet" event was folded into the announcement and never told.
    path, engine, labels = _held_ten_seconds(tmp_path)
    clock = engine.clock
    fired = Alert({**labels, "cluster": sc.CLUSTER}, starts_at=START)
    with SlackRecorder() as recorder:
        slack = SlackNotifier(make_client(recorder.token, base_url=recorder.base_url), "#gpu-incidents")
        outbox = Outbox(make_engine(path), [slack], clock)
        engine.subscribe(outbox)
        engine.ingest([fired])
        clock.advance(1)
        engine.ingest([replace(fired, status=AlertStatus.RESOLVED, ends_at=clock.now())])
        clock.advance(10)
        engine.tick()
        outbox.dispatch_due()
        (parent,) = recorder.channel_messages()
        assert "quiet: all its alerts ended" in str(parent.attachments)


def test_a_persons_ack_and_note_within_the_announce_delay_announce_the_incident_and_are_told(
    tmp_path: Path,
) -> None:
    # Probe: an incident acknowledged, noted and mitigated 2 s after it opened (announce delay 8 s) was
    # announced at the delay as "opened", mitigating, and nothing else: no acknowledged or mitigating POST,
    # and the note's text reached neither the webhook nor the Slack thread (folded into the announcement).
    path, engine, labels = _held_ten_seconds(tmp_path)
    clock = engine.clock
    with SlackRecorder() as recorder:
        slack = SlackNotifier(make_client(recorder.token, base_url=recorder.base_url), "#gpu-incidents")
        hook = WebhookNotifier(f"{recorder.root_url}/hooks/oncall", name="webhook:oncall")
        outbox = Outbox(make_engine(path), [slack, hook], clock)
        engine.subscribe(outbox)
        engine.ingest([Alert({**labels, "cluster": sc.CLUSTER}, starts_at=START)])
        (incident_id,) = engine.open_incident_ids()
        clock.advance(2)
        engine.acknowledge(incident_id, "alice")
        engine.add_note(incident_id, "alice", "swapping the riser")
        clock.advance(10)
        engine.tick()
        outbox.dispatch_due()
        posts = recorder.hook_posts("oncall")
        assert [(p["change"], p["event"]["kind"]) for p in posts] == [
            ("opened", "opened"),
            ("acknowledged", "acknowledged"),
            ("updated", "note"),
        ]
        assert [p["first_for_receiver"] for p in posts] == [True, False, False]
        assert posts[2]["event"]["message"] == "note by alice: swapping the riser"
        (parent,) = recorder.channel_messages()
        replies = [r.text for r in recorder.replies(parent.ts)]
        assert any("swapping the riser" in text for text in replies), replies


def _cycle(engine: IncidentEngine, alert: Alert, on: float, off: float) -> None:
    """The alert fires ``on`` seconds, then is resolved ``off`` seconds (as a rule near its threshold
    makes it), ticked every 100 s."""
    for status, seconds in ((AlertStatus.FIRING, on), (AlertStatus.RESOLVED, off)):
        engine.ingest([replace(alert, status=status)])
        for _ in range(int(seconds // 100)):
            engine.clock.advance(100)  # type: ignore[attr-defined]
            engine.tick()


def test_a_slow_flap_replies_once_per_kind_then_edits_its_message_with_counts(tmp_path: Path) -> None:
    # Measured: a thermal alert 200 s firing, 200 s resolved changes state 3 times per 600 s (flapping
    # takes 6) and is never quiet for the 300 s quiet period: each "quiet" and "firing again" was a thread
    # reply, ~18 an hour, for as long as it cycled.
    node = sc.node_name(1, 1)
    labels = {"alertname": "GPUThermalSlowdown", "Hostname": node, "gpu": "3", "UUID": sc.gpu_uuid(node, 3)}
    hot = Alert({**labels, "cluster": sc.CLUSTER}, starts_at=START)
    with _served(tmp_path, [hot]) as (engine, outbox, recorder, hook):
        for _ in range(4):
            _cycle(engine, hot, 200, 200)
        outbox.dispatch_due()
        (incident_id,) = engine.open_incident_ids()
        (parent,) = recorder.channel_messages()
        assert [r.event for r in recorder.replies(parent.ts)] == ["opened", "quiet", "alert_firing"]
        assert "cycling: fired again 3 times, quiet 4 times in the last hour" in str(parent.attachments)
        assert recorder.visible_in_channel() == [parent]
        # A webhook still hears every change; the repeats say they are.
        folded = [p["event"]["folded"] for p in recorder.hook_posts("oncall")]
        assert folded[:3] == [None, None, None]
        assert folded[3:] and all(f is not None for f in folded[3:])
        assert folded[-1] == {"fired_again": 3, "went_quiet": 4, "within_seconds": 3600.0}
        # A real change is told as before, and the cycle's next quiet and firing again after it too.
        engine.add_note(incident_id, "bob", "fan swap planned")
        for _ in range(2):
            _cycle(engine, hot, 200, 200)
        outbox.dispatch_due()
        hook.close()
        said = [r.event for r in recorder.replies(parent.ts)]
        assert said == ["opened", "quiet", "alert_firing", "note", "alert_firing", "quiet"]
        # opened, 6 times quiet, 5 times firing again (the first fire opened it), the note
        assert len(recorder.hook_posts("oncall")) == 1 + 6 + 5 + 1
