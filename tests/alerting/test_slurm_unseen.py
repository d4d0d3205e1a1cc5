"""Slurm jobs that ran when serve stopped and left squeue (``MinJobAge``) while it was down: judged at the
first read after it starts, by Slurm's accounting where there is one, else by the state of their nodes."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine

from alerting.engine import IncidentEngine
from alerting.kept_inventory import KeptInventoryStore
from alerting.kept_jobs import KeptJobStore
from alerting.slurm_inventory import SlurmInventory
from alerting.slurm_unseen import parse_sacct
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, Priority
from tests.alerting.fake_slurm import FakeSlurm, _job


def _reader(sql: Engine, slurm: FakeSlurm, clock: FakeClock) -> SlurmInventory:
    """What serve builds at its start for Slurm."""
    reader = SlurmInventory(clock, slurm, keep_ended_seconds=3600)
    reader.keep_in(KeptJobStore(sql), KeptInventoryStore(sql, "slurm"))
    return reader


def _ran_then_left_while_down(sql: Engine, n2: str = "down") -> tuple[FakeSlurm, FakeClock]:
    """Job 41 runs on n1 and n2 at serve's last read; serve stops; n2 is ``n2`` and the job has left squeue
    when it starts again, 20 minutes later."""
    slurm, clock = FakeSlurm(), FakeClock(1_800_000_000.0)
    slurm.jobs = [_job(41, "llm-70b", "RUNNING")]
    _reader(sql, slurm, clock).read()
    clock.advance(1200)
    slurm.jobs, slurm.states = [], {"n2": n2}
    return slurm, clock


def _sacct(state: str, end: float) -> list[str]:
    return [f"41|41|{state}|{datetime.fromtimestamp(end).isoformat(timespec='seconds')}"]


def test_a_job_that_left_squeue_while_serve_was_down_off_a_node_in_trouble_is_kept_and_named(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # Before, the restarted serve knew nothing of job 41: n2's incident said "node n2 is down", P2.
    slurm, clock = _ran_then_left_while_down(sql)
    inventory = _reader(sql, slurm, clock).read()
    (job,) = inventory.workload_list
    assert (job.ref.name, job.state, job.kept) == ("llm-70b (41)", "gone", 10)
    engine = IncidentEngine(sql, clock, inventory=inventory)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "n2"})])
    ((row, _),) = engine.store.list_rows(None)
    assert "llm-70b (41) stopped" in row.title and engine.store.get(row.id).priority is Priority.P0, row.title
    assert (
        "jobs running when gpuwarden last read Slurm left squeue while it was down: llm-70b (41): end"
        " unknown, kept (a node of it is in trouble or gone) (sacct could not say how they ended: slurm:"
        " sacct exited 1: Slurm accounting storage is disabled)" in caplog.text
    )


def test_a_job_that_left_squeue_while_serve_was_down_with_its_nodes_well_is_not_kept(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    slurm, clock = _ran_then_left_while_down(sql, n2="idle")
    assert _reader(sql, slurm, clock).read().workload_list == []
    assert "llm-70b (41): end unknown, not kept (its nodes are well)" in caplog.text


@pytest.mark.parametrize(
    ("state", "ago", "kept"),
    [
        ("NODE_FAIL", 300, "node_fail"),
        ("COMPLETED", 300, None),
        ("FAILED", 7200, None),
        ("FAILED", None, "failed"),
    ],
    ids=["node-fail", "completed-though-its-node-is-down", "failed-before-the-keep-window", "end-unknown"],
)
def test_slurms_accounting_says_how_a_job_that_left_squeue_while_serve_was_down_ended(
    sql: Engine, state: str, ago: float | None, kept: str | None
) -> None:
    slurm, clock = _ran_then_left_while_down(sql)
    slurm.accounting = _sacct(state, clock.time() - ago) if ago is not None else [f"41|41|{state}|Unknown"]
    reader = _reader(sql, slurm, clock)
    assert [(w.state, w.kept) for w in reader.read().workload_list] == ([(kept, 10)] if kept else [])
    if kept:
        clock.advance(3600 - (ago or 0) + 1)  # its hour from its end (from now, where not known) is over
        assert reader.read().workload_list == []


def test_a_job_still_running_or_requeued_at_the_first_read_is_judged_as_at_any_read(sql: Engine) -> None:
    # Requeued (PENDING, squeue names no node for it) off n2 that is down now: kept on the GPUs it ran on.
    slurm, clock = _ran_then_left_while_down(sql)
    slurm.jobs = [{**_job(41, "llm-70b", "PENDING"), "job_resources": {}, "gres_detail": []}]
    (job,) = _reader(sql, slurm, clock).read().workload_list
    assert (job.state, job.kept, len(job.gpus)) == ("pending", 10, 10)
    slurm.jobs, slurm.states = [_job(41, "llm-70b", "RUNNING")], {}
    (job,) = _reader(sql, slurm, clock).read().workload_list
    assert (job.state, job.kept) == ("running", 0)


def test_sacct_lines_give_each_jobs_state_and_end() -> None:
    text = "41|41|CANCELLED by 0|2027-01-15T08:00:00\n8|8+0|COMPLETED|Unknown\n9|8+1|NODE_FAIL|None\n"
    fates = parse_sacct(text)
    assert fates["41"] == ("CANCELLED", datetime(2027, 1, 15, 8).timestamp())
    assert fates["8"] == ("NODE_FAIL", 0.0) and fates["9"] == ("NODE_FAIL", 0.0)
