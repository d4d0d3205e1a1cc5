"""Open incidents assessed again when a Slurm or Kubernetes refresh changes the inventory: which workloads
that left the inventory hold a priority up, and how far unrelated churn may move it."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Engine

from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, Priority, WorkloadKind, WorkloadRef

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
