"""A restart of ``serve`` changes nothing: an engine rebuilt from the store carries on as the live one would.

Each test runs one sequence twice on its own store, straight through and with a new engine (and outbox) on
the same store at one point, and compares what users see. The cases came from a seeded fuzz of such
sequences, each shrunk to the few steps that show it.
"""

from __future__ import annotations

from pathlib import Path

from alerting import scenarios as sc
from alerting.notifiers.base import Notification
from gpuwarden.model import Alert
from tests.alerting.restart_serves import _DOWN, Serve, _both, _resolved


def _gpu(node: str, gpu: int, name: str) -> Alert:
    return Alert({"cluster": sc.CLUSTER, "alertname": name, "Hostname": node, "gpu": str(gpu)})


def _stall(rank: int) -> Alert:
    labels = {"alertname": "TrainingJobStalled", "slurm_job": "llm-70b", "rank": str(rank)}
    return Alert({"cluster": sc.CLUSTER, **labels})


def test_a_stalled_rank_joins_the_fault_on_its_jobs_gpus_after_a_restart_as_before_it(tmp_path: Path) -> None:
    # The thermal alert names no job: its incident knows llm-70b from the inventory (its last assessment).
    # A restarted serve knew only the jobs its alerts' labels name, and opened the stall a P0 of its own.
    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([_gpu("r08-n03", 0, "GPUTemperatureHigh")])
        if restart:
            serve.restart()
        serve.clock.advance(30)
        serve.engine.ingest([_stall(70)])

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    assert live.incidents() == [("thermal", "gpu r08-n03/0 thermal: training job llm-70b stopped", "P0", 2)]
    assert restarted.incidents() == live.incidents()


def test_an_incident_held_at_a_restart_and_resolved_before_its_announcement_is_never_told(
    tmp_path: Path,
) -> None:
    # serve stopped during the announce delay of an incident whose alerts had resolved; the next serve held
    # it to announce again, found it resolved by the quiet period, and told its end to a channel that never
    # heard of it.
    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([_DOWN])
        serve.clock.advance(5)
        serve.engine.ingest([_resolved(_DOWN)])
        serve.clock.advance(20)
        if restart:
            serve.restart()
        serve.clock.advance(300)
        serve.engine.tick()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=10, quiet_period_seconds=60)
    assert [r.state for r, _ in live.engine.store.list_rows()] == ["resolved"]
    assert live.told() == []
    assert restarted.told() == live.told()


def test_a_restart_does_not_announce_as_opened_an_incident_whose_reopening_was_told(tmp_path: Path) -> None:
    # Resolved before its announcement, then fired again: its reopening is told at once (never held). A
    # restarted serve took it for one held at the stop and announced it "opened" after its "reopened".
    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([_DOWN])
        serve.clock.advance(5)
        serve.engine.ingest([_resolved(_DOWN)])
        serve.clock.advance(61)
        serve.engine.tick()
        serve.clock.advance(60)
        serve.engine.ingest([_DOWN])
        if restart:
            serve.restart()
        serve.clock.advance(5)
        serve.engine.tick()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=10, quiet_period_seconds=60)
    assert live.told() == ["reopened"]
    assert restarted.told() == live.told()


def test_a_lower_priority_an_inventory_brought_settles_in_the_same_time_across_a_restart(
    tmp_path: Path,
) -> None:
    # A refresh found spare GPUs for the stopped job: the lower priority waits priority_settle_seconds. A
    # restarted serve forgot since when it waited and started waiting again: P0 stayed past the settle time.
    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([Alert({**_gpu("r07-n01", 3, "GPUXid").labels, "xid": "79"})])
        serve.refresh(sc.fleet_inventory(spare_gpus=64))  # lower: waits
        if restart:
            serve.restart()
        serve.clock.advance(130)
        serve.refresh(sc.fleet_inventory(spare_gpus=64))  # held 130 s: lowered

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0, priority_settle_seconds=120)
    assert [p for _, _, p, _ in live.incidents()] == ["P1"]
    assert restarted.incidents() == live.incidents()


def test_a_job_a_failure_stopped_that_left_the_inventory_keeps_its_incidents_priority_across_a_restart(
    tmp_path: Path,
) -> None:
    # The job was listed as stopped by a failure, then left the inventory (its keep window over): live keeps
    # the priority. A restarted serve no longer knew the job had been listed so and lowered it.
    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([Alert({**_gpu("r07-n01", 3, "GPUXid").labels, "xid": "79"})])
        serve.refresh(sc.fleet_inventory(job="kept"))
        serve.refresh(sc.fleet_inventory(job="gone"))
        if restart:
            serve.restart()
        serve.clock.advance(5)
        serve.refresh(sc.fleet_inventory(job="gone"))

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0, priority_settle_seconds=0)
    assert [p for _, _, p, _ in live.incidents()] == ["P0"]
    assert restarted.incidents() == live.incidents()


def test_incidents_resolved_in_one_tick_are_told_in_the_same_order_after_a_restart(tmp_path: Path) -> None:
    # Live keeps open incidents in the order they (re)opened: the later-reopened node's end is told last. A
    # restarted serve read them in the store's order and told the reopened one's end first.
    def steps(serve: Serve, restart: bool) -> None:
        first, second = (
            Alert({"cluster": sc.CLUSTER, "alertname": "NodeDown", "node": node})
            for node in ("r03-n01", "r02-n02")
        )
        serve.engine.ingest([first])
        serve.engine.ingest([second])
        serve.engine.ingest([_resolved(first)])
        serve.clock.advance(61)
        serve.engine.tick()  # the first resolved
        serve.engine.ingest([first])  # and reopened: now after the second
        serve.engine.ingest([_resolved(a) for a in (first, second)])
        if restart:
            serve.restart()
        serve.clock.advance(61)
        serve.engine.tick()  # both resolved

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0, quiet_period_seconds=60)
    ends = [
        [n.title for n in map(Notification.model_validate_json, (m.payload for m in s.outbox.messages()))]
        for s in (live, restarted)
    ]
    assert ends[0][-2:] == [ends[0][1], ends[0][0]]  # the second node, then the first
    assert ends[1] == ends[0]
