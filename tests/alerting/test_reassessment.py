"""Open incidents assessed again when a Slurm or Kubernetes refresh changes the inventory: which workloads
that left the inventory hold a priority up, and how far unrelated churn may move it."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Engine, event

from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from alerting.notifiers.base import Notification
from alerting.outbox import Outbox
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, Priority, WorkloadKind, WorkloadRef
from tests.alerting.outbox_only import Quiet

BLIP = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "blip (6)", "c1")
XID = Alert({"alertname": "GpuXidError", "cluster": "c1", "node": "n1", "gpu": "1", "xid": "79"})


def job_on_n1(kept: int = 0, state: str = "running") -> WorkloadInfo:
    """blip (6) on n1's GPUs 0-3, running or kept after it stopped abnormally."""
    units = tuple(frozenset({("c1", "n1", i)}) for i in range(4))
    return WorkloadInfo(BLIP, units, aliases=("6", "blip"), state=state, kept=kept)


def cluster(*workloads: WorkloadInfo) -> StaticInventory:
    return StaticInventory([NodeInfo("n1", "c1", "r1", 8)], list(workloads), {"c1": 0})


def engine_with_xid_on_blip(sql: Engine, clock: FakeClock) -> tuple[IncidentEngine, str]:
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), cluster(job_on_n1()))
    engine.ingest([XID])
    ((row, _),) = engine.store.list_rows(None)
    assert row.priority == "P0" and "training job blip (6) stopped" in row.title
    return engine, row.id


def refresh(engine: IncidentEngine, clock: FakeClock, inv: StaticInventory, seconds: float = 60) -> None:
    clock.advance(seconds)
    engine.replace_inventory(inv)


def test_a_job_that_ended_normally_lets_its_incident_come_down(sql: Engine) -> None:
    # The reader knows blip ended on its own (COMPLETED: not kept): the fault stopped no job.
    clock = FakeClock()
    engine, incident_id = engine_with_xid_on_blip(sql, clock)
    refresh(engine, clock, cluster())
    refresh(engine, clock, cluster(), 600)
    incident = engine.store.get(incident_id)
    assert incident.priority is Priority.P2 and "blip" not in incident.title


def test_a_job_that_stopped_abnormally_holds_the_priority_after_its_keep_window(sql: Engine) -> None:
    clock = FakeClock()
    engine, incident_id = engine_with_xid_on_blip(sql, clock)
    refresh(engine, clock, cluster(job_on_n1(kept=4, state="failed")))  # the XID killed it: kept
    refresh(engine, clock, cluster(), 3600)  # its keep window passed: gone from the inventory
    grown = cluster()
    refresh(engine, clock, replace(grown, node_list=[*grown.node_list, NodeInfo("n2", "c1", "r1", 8)]), 600)
    incident = engine.store.get(incident_id)
    assert incident.priority is Priority.P0 and "training job blip (6) stopped" in incident.title


def busy_cluster(n2_free: int) -> StaticInventory:
    """llm holds all of n1; n2 has ``n2_free`` free GPUs (others' jobs start and end there)."""
    llm = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "llm (41)", "c1")
    units = tuple(frozenset({("c1", "n1", i)}) for i in range(8))
    nodes = [
        NodeInfo("n1", "c1", "r1", 8, free=0),
        NodeInfo("n2", "c1", "r1", 8, free=n2_free, idle=frozenset(range(n2_free))),
    ]
    return StaticInventory(nodes, [WorkloadInfo(llm, units, aliases=("41", "llm"))], {"c1": n2_free})


def test_unrelated_churn_escalates_at_most_once_and_lowers_only_after_the_settle_time(sql: Engine) -> None:
    # The probe's incident: an XID stopped llm; other jobs started and ended on n2, so spare came and went.
    clock = FakeClock()
    config = AlertingConfig(announce_delay_seconds=0)  # priority_settle_seconds: 300
    engine = IncidentEngine(sql, clock, config, busy_cluster(8))
    changes: list[str] = []
    engine.subscribe(lambda c: changes.append(c.kind.value))
    engine.ingest([replace(XID, labels={**XID.labels, "gpu": "0"})])
    ((row, _),) = engine.store.list_rows(None)
    assert row.priority == "P1"  # n2 is free: llm can start again
    started = clock.time()
    # P0 P1 P0 P1 P0 P1 P0 P1 in five minutes, as the probe saw it: the refresh's assessments
    for at, free in [(6, 0), (91, 8), (131, 0), (270, 8), (273, 0), (276, 8), (285, 0), (290, 8)]:
        clock.advance(started + at - clock.time())
        engine.replace_inventory(busy_cluster(free))
    incident = engine.store.get(row.id)
    moves = [(e.data["from"], e.data["to"]) for e in incident.timeline if e.kind == "priority"]
    assert moves == [(None, "P1"), ("P1", "P0")] and changes.count("priority_changed") == 1
    clock.advance(299)
    engine.replace_inventory(busy_cluster(8))
    assert engine.store.get(row.id).priority is Priority.P0  # spare for 299 s: not yet
    clock.advance(1)
    engine.replace_inventory(busy_cluster(8))  # spare held 300 s: llm can start again, P1
    incident = engine.store.get(row.id)
    assert incident.priority is Priority.P1 and changes.count("priority_changed") == 2


def test_the_incidents_own_alerts_change_its_priority_at_once(sql: Engine) -> None:
    clock = FakeClock()
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), busy_cluster(0))
    xid = Alert({"alertname": "GpuXidError", "cluster": "c1", "node": "n1", "gpu": "0", "xid": "79"})
    engine.ingest([xid])
    ((row, _),) = engine.store.list_rows(None)
    assert row.priority == "P0"
    clock.advance(60)
    engine.replace_inventory(busy_cluster(8))  # spare now: lowering waits
    assert engine.store.get(row.id).priority is Priority.P0
    clock.advance(10)
    heat = Alert({"alertname": "GpuThermalThrottling", "cluster": "c1", "node": "n1", "gpu": "0"})
    engine.ingest([heat])  # one of its own alerts: assessed now, with what the inventory says now
    assert engine.store.get(row.id).priority is Priority.P1


def test_a_refresh_that_only_retitles_an_incident_reaches_the_outbox_though_its_last_event_was_told(
    sql: Engine,
) -> None:
    # The refresh names the Slurm job the alerts carried by its id; its priority and root stay. Told with
    # the incident's last event ("alert GpuPowerHigh firing", told already as an update), the change had
    # that update's idempotency key: the outbox took it for a repeat, and Slack kept the old title.
    clock = FakeClock()
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), cluster())
    outbox = Outbox(sql, [Quiet()], clock)
    engine.subscribe(outbox)
    hot = {"alertname": "GpuTempHigh", "cluster": "c1", "node": "n1", "gpu": "1", "slurm_job": "6"}
    engine.ingest([Alert(hot)])
    clock.advance(1)
    engine.ingest([Alert({**hot, "alertname": "GpuPowerHigh"})])
    refresh(engine, clock, cluster(job_on_n1()))
    ((row, _),) = engine.store.list_rows(None)
    assert row.priority == "P3" and row.title == "gpu n1/1 GpuTempHigh (training job blip (6))"
    told = [Notification.model_validate_json(m.payload) for m in outbox.messages()]
    assert [(n.change.value, n.title) for n in told][-1] == ("updated", row.title)
    timeline = engine.store.get(row.id).timeline
    assert (timeline[-1].kind, timeline[-1].data) == (
        "retitled",
        {"from": "gpu n1/1 GpuTempHigh (training job 6)", "to": row.title},
    )


def test_a_refresh_reads_the_open_incidents_rows_a_chunk_at_a_time_not_one_query_each(sql: Engine) -> None:
    # The rows read in chunks (``grouping.incident_rows``, its result not kept) are the ones each incident's
    # reassessment gets from the session: one query for the 20, not one each (20 without the chunk read).
    clock = FakeClock()
    nodes = [NodeInfo(f"n{k:02d}", f"c{k:02d}", "r1", 8) for k in range(20)]  # one incident each
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), StaticInventory(nodes, []))
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": n.cluster, "node": n.name}) for n in nodes])
    assert len(engine.store.list_rows(None)) == len(nodes)
    reads: list[str] = []

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM incidents" in statement:
            reads.append(statement)

    event.listen(engine.store.engine, "before_cursor_execute", record)
    try:
        refresh(engine, clock, StaticInventory([*nodes, NodeInfo("n99", "c00", "r1", 8)], []))
    finally:
        event.remove(engine.store.engine, "before_cursor_execute", record)
    assert reads and len(reads) < len(nodes), reads
