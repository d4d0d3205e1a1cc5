"""Slurm jobs kept after they stopped abnormally, in the store, across a serve restart."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from alerting.engine import IncidentEngine
from alerting.inventory import WorkloadInfo
from alerting.kept_jobs import KeptJobStore
from alerting.slurm_inventory import SlurmInventory
from alerting.store_models import KeptJobRow
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.errors import SourceError
from gpuwarden.model import Alert
from tests.alerting.slurm_recorded import RecordedSlurm

CONFIG = AlertingConfig(announce_delay_seconds=0, priority_settle_seconds=0)


def serve(sql: Engine, clock: FakeClock, slurm: RecordedSlurm) -> tuple[IncidentEngine, SlurmInventory]:
    """What ``serve`` builds at its start: a Slurm reader that keeps stopped jobs in the store; the engine."""
    reader = SlurmInventory(clock, slurm)
    reader.keep_in(KeptJobStore(sql))
    return IncidentEngine(sql, clock, CONFIG, reader.read()), reader


def test_a_requeued_job_is_still_named_by_its_node_incident_after_serve_restarts(sql: Engine) -> None:
    requeued_job_named_after_restart(sql)


def requeued_job_named_after_restart(sql: Engine) -> None:
    """The scenario, on any migrated store (the PostgreSQL integration test runs it too)."""
    # llm ran on node-01,02; node-01 went DOWN and Slurm requeued it: PENDING, no nodes in squeue.
    slurm, clock = RecordedSlurm("D-running"), FakeClock()
    gw, reader = serve(sql, clock, slurm)
    gw.ingest([Alert({"alertname": "NodeDown", "cluster": "cap", "node": "node-01"})])
    slurm.capture = "D-requeued"
    clock.advance(30)
    gw.replace_inventory(reader.read())
    ((row, _),) = gw.store.list_rows(None)
    assert row.priority == "P0" and "training job llm (14) stopped" in row.title
    # serve restarts: a new reader, which never saw llm run, and a new engine on the same store.
    clock.advance(60)
    again, reader = serve(sql, clock, slurm)
    clock.advance(60)
    again.replace_inventory(reader.read())
    again.ingest([Alert({"alertname": "NodeDown", "cluster": "cap", "node": "node-01", "again": "1"})])
    incident = again.store.get(row.id)
    assert (incident.priority.value, "training job llm (14) stopped" in incident.title) == ("P0", True)
    (kept,) = reader.read().workload_list
    assert (kept.ref.name, kept.state, kept.held) == ("llm (14)", "pending", 8)
    # --gres=gpu:4 on each of its 2 nodes (-N2: at least 2), read back from the store
    assert (kept.per_node, kept.min_nodes) == (4, 2)
    # kept an hour from when it stopped, as without the restart
    clock.advance(3600)
    assert reader.read().workload_list == []
    assert KeptJobStore(sql).load("cap") == {}


class BrokenStore:
    """A store that cannot be reached (PostgreSQL restarting), then can."""

    def __init__(self, store: KeptJobStore) -> None:
        self.store, self.down = store, True

    def load(self, cluster: str) -> dict[str, tuple[float, WorkloadInfo]]:
        if self.down:
            raise SourceError("kept jobs of cluster cap cannot be read: connection refused", source="store")
        return self.store.load(cluster)

    def save(self, cluster: str, kept: Mapping[str, tuple[float, WorkloadInfo]]) -> None:
        if self.down:
            raise SourceError("kept jobs of cluster cap cannot be saved: connection refused", source="store")
        self.store.save(cluster, kept)


def test_a_store_that_cannot_be_reached_leaves_the_inventory_read_and_is_caught_up_later(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    slurm, clock = RecordedSlurm("D-running"), FakeClock()
    KeptJobStore(sql).save("cap", {})
    broken = BrokenStore(KeptJobStore(sql))
    reader = SlurmInventory(clock, slurm)
    reader.keep_in(broken)
    assert [w.ref.name for w in reader.read().workload_list] == ["llm (14)"]
    slurm.capture = "D-requeued"
    clock.advance(30)
    assert [w.kept for w in reader.read().workload_list] == [8]  # read though the store is down
    assert "cannot be read: connection refused; asking again at the next read" in caplog.text
    broken.down = False
    clock.advance(30)
    reader.read()
    assert [info.ref.name for _, info in KeptJobStore(sql).load("cap").values()] == ["llm (14)"]


def test_a_kept_job_saved_before_gpus_per_node_were_kept_reads_as_counting_gpus(sql: Engine) -> None:
    # A row an earlier release wrote: no per_node.
    old = {
        "kind": "training_job",
        "namespace": "",
        "name": "llm (14)",
        "cluster": "cap",
        "units": [["node-01:0"]],
    }
    with Session(sql) as session, session.begin():
        session.add(KeptJobRow(cluster="cap", job_id="14", since=1.0, workload=old))
    ((since, info),) = KeptJobStore(sql).load("cap").values()
    assert (since, info.ref.name, info.per_node) == (1.0, "llm (14)", 0)
