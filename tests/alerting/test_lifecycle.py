"""What people do with an incident: resolving it by hand, and repeats that say they change nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine, event

from alerting.engine import IncidentEngine
from alerting.notifiers.base import build_notification
from alerting.store import Conflict, IncidentNotFound
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.clock import FakeClock, rfc3339
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, IncidentState

NODE = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
GPU = {"alertname": "GPUFallenOffBus", "cluster": "c1", "node": "x1", "gpu": "0"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _engine(sql: Engine, clock: FakeClock, **cfg: object) -> IncidentEngine:
    cfg.setdefault("announce_delay_seconds", 0)
    cfg.setdefault("quiet_period_seconds", 300)
    return IncidentEngine(sql, clock, AlertingConfig(**cfg))  # type: ignore[arg-type]


def _recorded(engine: IncidentEngine) -> list[IncidentChange]:
    changes: list[IncidentChange] = []
    engine.subscribe(changes.append)
    return changes


def _quiet_incident(engine: IncidentEngine, clock: FakeClock) -> str:
    """An incident whose one alert fired and resolved: waiting for its quiet period."""
    engine.ingest([Alert(NODE)])
    [incident_id] = engine.open_incident_ids()
    clock.advance(60)
    engine.ingest([Alert(NODE, status=AlertStatus.RESOLVED)])
    return incident_id


def test_resolving_by_hand_once_no_alert_fires_skips_the_quiet_period_as_the_tick_would_resolve(
    sql: Engine, clock: FakeClock
) -> None:
    engine = _engine(sql, clock)
    incident_id = _quiet_incident(engine, clock)
    changes = _recorded(engine)
    clock.advance(10)  # well inside the quiet period
    resolved = engine.resolve(incident_id, "alice")
    assert resolved.state is IncidentState.RESOLVED and resolved.resolved_at == clock.now()
    assert (resolved.timeline[-1].kind, resolved.timeline[-1].message) == ("resolved", "resolved by alice")
    assert [(c.kind, c.event.message) for c in changes] == [(ChangeKind.RESOLVED, "resolved by alice")]
    assert list(engine.open_incident_ids()) == [] and engine.open_priorities() == []
    assert engine.counters["incidents_resolved"] == 1
    clock.advance(600)  # the quiet period passes: the tick has nothing left to resolve
    engine.tick()
    assert engine.counters["incidents_resolved"] == 1 and len(changes) == 1
    assert [e.kind for e in engine.store.get(incident_id).timeline].count("resolved") == 1


def test_resolving_while_alerts_fire_is_refused_naming_how_many_and_changes_nothing(
    sql: Engine, clock: FakeClock
) -> None:
    engine = _engine(sql, clock)
    engine.ingest([Alert(NODE), Alert(GPU)])
    [incident_id] = engine.open_incident_ids()
    before = engine.store.get(incident_id)
    assert len(before.alert_fingerprints) == 2
    changes = _recorded(engine)
    with pytest.raises(Conflict) as refused:
        engine.resolve(incident_id, "alice")
    assert refused.value.field == "incident"
    assert "2 of its alerts still fire" in str(refused.value)
    assert f"gpuwarden incidents silence {incident_id} --for 1h" in str(refused.value)
    engine.ingest([Alert(GPU, status=AlertStatus.RESOLVED)])
    with pytest.raises(Conflict, match="1 of its alerts still fires"):
        engine.resolve(incident_id, "alice")
    after = engine.store.get(incident_id)
    assert after.state is before.state and "resolved" not in [e.kind for e in after.timeline]
    assert list(engine.open_incident_ids()) == [incident_id]
    assert engine.counters["incidents_resolved"] == 0
    assert all(c.kind is not ChangeKind.RESOLVED for c in changes)


def test_resolving_a_resolved_incident_changes_nothing_and_says_who_resolved_it(
    sql: Engine, clock: FakeClock
) -> None:
    engine = _engine(sql, clock)
    incident_id = _quiet_incident(engine, clock)
    first = engine.resolve_outcome(incident_id, "alice")
    assert first.changed and first.incident.state is IncidentState.RESOLVED
    changes = _recorded(engine)
    clock.advance(30)
    again = engine.resolve_outcome(incident_id, "bob")
    assert (again.changed, again.already) == (False, "already resolved by alice at 2026-01-01T00:01:00Z")
    assert again.incident.timeline == first.incident.timeline and changes == []
    assert engine.counters["incidents_resolved"] == 1
    with pytest.raises(IncidentNotFound):
        engine.resolve("inc-missing", "bob")


def test_resolving_an_incident_the_quiet_period_resolved_says_so(sql: Engine, clock: FakeClock) -> None:
    engine = _engine(sql, clock)
    incident_id = _quiet_incident(engine, clock)
    clock.advance(400)
    engine.tick()
    again = engine.resolve_outcome(incident_id, "bob")
    assert (again.changed, again.already) == (
        False,
        "already resolved at 2026-01-01T00:07:40Z, its alerts quiet for the quiet period",
    )
    with pytest.raises(IncidentNotFound):
        engine.resolve("inc-missing", "bob")


def test_an_incident_resolved_by_hand_reopens_when_its_alert_fires_again_within_the_reopen_window(
    sql: Engine, clock: FakeClock
) -> None:
    engine = _engine(sql, clock, reopen_window_seconds=3600)
    incident_id = _quiet_incident(engine, clock)
    engine.resolve(incident_id, "alice")
    changes = _recorded(engine)
    clock.advance(1800)
    engine.ingest([Alert(NODE)])
    reopened = engine.store.get(incident_id)
    assert reopened.state is IncidentState.TRIGGERED and reopened.resolved_at is None
    assert list(engine.open_incident_ids()) == [incident_id]
    assert changes[0].kind is ChangeKind.REOPENED
    engine.ingest([Alert(NODE, status=AlertStatus.RESOLVED)])
    clock.advance(301)
    engine.tick()  # and resolves again on its own
    assert engine.store.get(incident_id).state is IncidentState.RESOLVED
    assert engine.counters["incidents_resolved"] == 2


def test_a_second_ack_changes_nothing_and_says_who_acknowledged_first(sql: Engine, clock: FakeClock) -> None:
    engine = _engine(sql, clock)
    engine.ingest([Alert(NODE)])
    [incident_id] = engine.open_incident_ids()
    first = engine.acknowledge_outcome(incident_id, "alice")
    assert first.changed and first.incident.state is IncidentState.ACKNOWLEDGED
    acked_at = clock.now()
    changes = _recorded(engine)
    clock.advance(90)
    again = engine.acknowledge_outcome(incident_id, "bob")
    assert not again.changed
    assert again.already == f"already acknowledged by alice at {acked_at.isoformat().replace('+00:00', 'Z')}"
    assert again.incident.timeline == first.incident.timeline and changes == []


def test_acking_a_mitigating_incident_says_who_is_mitigating_it(sql: Engine, clock: FakeClock) -> None:
    engine = _engine(sql, clock)
    engine.ingest([Alert(NODE)])
    [incident_id] = engine.open_incident_ids()
    engine.mark_mitigating(incident_id, "carol", "power-cycling x1")
    again = engine.acknowledge_outcome(incident_id, "bob")
    assert not again.changed and again.incident.state is IncidentState.MITIGATING
    assert again.already.startswith(
        "already mitigating (power-cycling x1) by carol since 2026-01-01T00:00:00Z"
    )
    assert [e.kind for e in again.incident.timeline].count("acknowledged") == 0


def test_an_incident_whose_alert_flaps_is_not_resolved_by_hand_until_it_settles(
    sql: Engine, clock: FakeClock
) -> None:
    engine = _engine(sql, clock, flap_start_transitions=4)
    for cycle in range(8):  # fires and resolves every 10 s: flapping, resolved at this moment
        engine.ingest([Alert(NODE, status=AlertStatus.RESOLVED if cycle % 2 else AlertStatus.FIRING)])
        clock.advance(10)
    [incident_id] = engine.open_incident_ids()
    with pytest.raises(Conflict, match="flap"):
        engine.resolve(incident_id, "alice")
    assert list(engine.open_incident_ids()) == [incident_id]


def test_an_action_on_an_incident_merged_into_another_names_where_to_act(
    sql: Engine, clock: FakeClock
) -> None:
    from alerting import scenarios  # noqa: PLC0415

    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), scenarios.fleet_inventory())
    hot = {"alertname": "GPUTemperatureHigh", "cluster": "c1", "gpu": "2"}
    opened: list[str] = []
    for n in (1, 2, 3):  # a hot GPU on a third node of the rack: the first two fold into the rack's
        engine.ingest([Alert({**hot, "node": f"r06-n0{n}"})])
        opened += [i for i in engine.open_incident_ids() if i not in opened]
        clock.advance(40)
    [rack] = engine.open_incident_ids()
    folded = next(i for i in opened if i != rack)
    for act in (
        lambda: engine.acknowledge(folded, "alice"),
        lambda: engine.silence_incident(folded, 3600, "bob"),
        lambda: engine.resolve(folded, "carol"),
        lambda: engine.mark_mitigating(folded, "dave", "draining r06-n01"),
        lambda: engine.add_note(folded, "erin", "swapped the fan"),  # it was "noted" on the folded one
    ):
        with pytest.raises(Conflict, match=f"merged into {rack}; act on {rack}") as refused:
            act()
        assert str(refused.value).startswith(f"incident: {folded} was merged")  # the word said once


def test_marking_the_same_action_mitigating_again_changes_nothing_and_another_action_is_recorded(
    sql: Engine, clock: FakeClock
) -> None:
    # A retried request wrote a second "mitigating" event, and told listeners (a Slack edit) again.
    engine = _engine(sql, clock)
    engine.ingest([Alert(NODE)])
    [incident_id] = engine.open_incident_ids()
    first = engine.mark_mitigating(incident_id, "carol", "power-cycling x1")
    assert first.state is IncidentState.MITIGATING
    changes = _recorded(engine)
    clock.advance(30)
    assert engine.mark_mitigating(incident_id, "carol", "power-cycling x1").timeline == first.timeline
    again = engine.mark_mitigating_outcome(incident_id, "dave", "power-cycling x1")
    assert not again.changed and changes == []
    assert again.already == "already mitigating (power-cycling x1) by carol since 2026-01-01T00:00:00Z"
    assert again.incident.timeline == first.timeline
    other = engine.mark_mitigating_outcome(incident_id, "carol", "reseating x1's GPU 0")
    assert other.changed and [e.kind for e in other.incident.timeline].count("mitigating") == 2


def test_approving_the_same_remediation_again_by_anyone_changes_nothing(
    sql: Engine, clock: FakeClock
) -> None:
    # DESIGN.md: never repeat a remediation. A second press of the Slack button (by anyone) or a retried
    # request wrote a second approval.
    engine = _engine(sql, clock)
    engine.ingest([Alert(GPU)])
    [incident_id] = engine.open_incident_ids()
    first = engine.approve_remediation(incident_id, "slack:alice")
    assert first.state is IncidentState.MITIGATING
    changes = _recorded(engine)
    clock.advance(5)
    assert engine.approve_remediation(incident_id, "slack:bob").timeline == first.timeline
    again = engine.approve_remediation_outcome(incident_id, "slack:alice")
    assert not again.changed and changes == []
    assert again.already == "remediation already approved by slack:alice at 2026-01-01T00:00:00Z"
    assert [e.kind for e in again.incident.timeline].count("remediation_approved") == 1


def test_an_approval_after_the_root_cause_moved_is_a_new_remediation(sql: Engine, clock: FakeClock) -> None:
    engine = _engine(sql, clock)
    engine.ingest([Alert({**GPU, "alertname": "GPULost"})])
    [incident_id] = engine.open_incident_ids()
    engine.approve_remediation(incident_id, "slack:alice")  # a GPU lost: reset it
    clock.advance(20)
    engine.ingest([Alert(NODE)])  # the node went down with it: the root is the node now
    assert engine.store.get(incident_id).root_cause.kind.value == "node_down"
    approvals = [
        e.data
        for e in engine.approve_remediation(incident_id, "slack:alice").timeline
        if e.kind == "remediation_approved"
    ]
    assert [(a["root_kind"], a["by"]) for a in approvals] == [
        ("gpu_lost", "slack:alice"),
        ("node_down", "slack:alice"),
    ]


def _rival_writes_between_check_and_write(sql: Engine, state: str) -> tuple[list[str], Callable[..., None]]:
    """Once the engine first reads the incident's row, another writer (a retry's first attempt whose COMMIT
    lands now) sets the state and writes its event (of the state's name), unless the database refuses it
    (locked: the engine's read and write are one transaction). Returns what the rival met ("stored" or
    "refused") and the listener."""
    met: list[str] = []

    def rival(conn: object, cursor: object, statement: str, *args: object) -> None:
        if met or not statement.startswith("SELECT") or "FROM incidents" not in statement:
            return
        db = sqlite3.connect(str(sql.url.database), timeout=0)  # no wait for a lock: refused at once
        try:
            with db:
                (incident_id,) = db.execute("SELECT id FROM incidents").fetchone()
                db.execute("UPDATE incidents SET state = ? WHERE id = ?", (state, incident_id))
                db.execute(
                    "INSERT INTO timeline (incident_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)",
                    (
                        incident_id,
                        "2026-01-01 00:00:00.000000",
                        state,
                        f"{state} by rival",
                        '{"by": "rival"}',
                    ),
                )
            met.append("stored")
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
            met.append("refused")
        finally:
            db.close()

    event.listen(sql, "after_cursor_execute", rival)
    return met, rival


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_an_ack_or_resolve_checks_the_state_in_the_transaction_that_writes_it(
    sql: Engine, clock: FakeClock, action: str
) -> None:
    # The ack read the state in one session and wrote in another: a concurrent writer's ack between the two
    # made a second "acknowledged" event (a resolve's read ran before pysqlite began its transaction).
    engine = _engine(sql, clock)
    incident_id = _quiet_incident(engine, clock)
    kind = "acknowledged" if action == "acknowledge" else "resolved"  # the state and its event
    met, rival = _rival_writes_between_check_and_write(sql, kind)
    try:
        getattr(engine, f"{action}_outcome")(incident_id, "alice")
    finally:
        event.remove(sql, "after_cursor_execute", rival)
    timeline = engine.store.get(incident_id).timeline
    assert [e.kind for e in timeline].count(kind) == 1, [e.message for e in timeline]
    assert met == ["refused"]  # the rival came between a read and a write of one transaction


def test_the_actions_taken_on_an_incident_reach_its_notifications(sql: Engine, clock: FakeClock) -> None:
    engine = _engine(sql, clock)
    changes = _recorded(engine)
    engine.ingest([Alert(NODE)])
    [incident_id] = engine.open_incident_ids()
    engine.approve_remediation(incident_id, "alice")
    engine.mark_mitigating(incident_id, "bob", "drain x1")
    engine.record_action(incident_id, "reboot_node", "succeeded", "rebooted", "runbook")
    engine.add_note(incident_id, "carol", "watching it")
    taken = build_notification(changes[-1]).actions_taken
    assert taken == (
        "remediation approved by alice",
        "mitigating: drain x1 (by bob)",
        "reboot_node: succeeded rebooted (by runbook)",
    )
    listed = [
        line.split(" — ", 1)[1].replace("\\", "")
        for line in _postmortem_actions(engine.postmortem(incident_id))
    ]
    assert set(taken) <= set(listed)  # the postmortem's own record, which lists acknowledgements too


def _postmortem_actions(md: str) -> list[str]:
    return md.split("## Actions\n\n", 1)[1].split("\n\n", 1)[0].splitlines()


def test_a_silence_press_by_someone_else_while_a_silence_holds_makes_no_second_silence(
    sql: Engine, clock: FakeClock
) -> None:
    """Slack walk-through: bob pressed "Silence 1 h", alice pressed it ten minutes later and a second,
    slightly longer silence was made (a second timeline entry, a second "silenced" in the thread)."""
    engine = _engine(sql, clock)
    engine.ingest([Alert(NODE)])
    [incident_id] = engine.open_incident_ids()
    until = clock.now() + timedelta(hours=1)
    assert engine.silence_incident_outcome(incident_id, 3600, "slack:bob").changed
    changes = _recorded(engine)
    clock.advance(600)
    again = engine.silence_incident_outcome(incident_id, 3600, "slack:alice")
    assert not again.changed and again.already == f"already silenced until {rfc3339(until)} by slack:bob"
    assert len(engine.all_silences()) == 1 and changes == []
    clock.advance(30 * 60 + 1)  # less than half the hour asked for is left: pressing again extends it
    later = engine.silence_incident_outcome(incident_id, 3600, "slack:alice")
    assert later.changed and engine.silenced_until()[incident_id] == clock.now() + timedelta(hours=1)
    assert [e.kind for e in engine.store.get(incident_id).timeline].count("silenced") == 2
