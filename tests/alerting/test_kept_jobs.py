"""Slurm jobs kept after they stopped abnormally, in the store, across a serve restart."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from alerting.inventory import WorkloadInfo
from alerting.kept_jobs import KeptJobStore
from alerting.slurm_inventory import SlurmInventory
from alerting.store_models import KeptJobRow
from gpuwarden.clock import FakeClock
from gpuwarden.errors import SourceError
from tests.alerting.slurm_recorded import RecordedSlurm
from tests.alerting.store_scenarios import requeued_job_named_after_restart


def test_a_requeued_job_is_still_named_by_its_node_incident_after_serve_restarts(sql: Engine) -> None:
    requeued_job_named_after_restart(sql)


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

    def drop_others(self, cluster: str | None) -> list[str]:
        if self.down:
            raise SourceError("kept jobs cannot be deleted: connection refused", source="store")
        return self.store.drop_others(cluster)


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
