"""A few simulated hours of the GPU-fault evaluation; the multi-day run is benchmarks/eval_gpu_faults.py."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from anomaly.faulteval import (
    FAULT_CLASSES,
    LONG_OUTAGE,
    LONG_OUTAGE_SECONDS,
    WHILE_DOWN_CLASSES,
    EvalPlan,
    FaultClass,
    FaultEvalReport,
    Injection,
    _attribute,
    _check_stuck,
    _inject,
    _missed,
    _repair_due,
    _reraised,
    _resolved_early,
    _schedule,
    _summarise,
    _sympathetic,
    _Tally,
    _Truth,
    merge_reports,
    run_fault_eval,
)
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from exporters.simulated import sim_collectors
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import Alert, AlertStatus
from gpuwarden.sim import build_fleet, parse_fault
from gpuwarden.sim.faults import ACTION_KINDS, FAULT_KINDS


@pytest.fixture(scope="module")
def report():
    logging.getLogger("exporters").setLevel(logging.ERROR)
    clock = FakeClock()
    # Four nodes of 4 GPUs, not 8: every class is still drawn and injected (the first test says so), at a
    # third less time; each of the four tests below still fails when its claim is broken.
    fleet = build_fleet(4, 4, seed=3, clock=clock)
    nvml = sim_collectors(fleet, clock)
    service = AnomalyService(AnomalyConfig(), [CollectorSource(nvml.collectors, clock)], clock)
    plan = EvalPlan(duration_seconds=5 * 3600, spacing_seconds=900, warmup_seconds=3600, seed=3)
    return run_fault_eval(fleet, service, clock, plan, before_tick=nvml.pump_xids)


def test_every_fault_class_was_injected(report):
    injected = {name for name, c in report.classes.items() if c.injected}
    assert injected >= {c.name for c in FAULT_CLASSES} | {LONG_OUTAGE.name}


def test_hard_faults_are_all_detected_within_one_collection_interval(report):
    for c in report.classes.values():
        if c.hard:
            assert c.within_deadline == c.injected, c.to_json()
            assert max(c.latencies) <= report.interval_seconds


def test_soft_faults_are_detected_within_five_minutes(report):
    for c in report.classes.values():
        if not c.hard:
            assert c.within_deadline == c.injected, c.to_json()


def test_no_alert_is_raised_on_healthy_gpus(report):
    assert report.false_alerts == 0, report.false_alert_examples
    assert report.gpu_days == pytest.approx(16 * 4 / 24)


def test_a_gpu_fault_due_for_repair_on_a_node_that_is_down_waits_for_the_reboot():
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    gpu_class = next(c for c in FAULT_CLASSES if not c.node_level)
    gpu_fault = Injection(gpu_class, "node-01", 2, clock.now().timestamp())
    gpu_fault.fault_id = fleet.inject(parse_fault({"kind": "thermal_runaway", "node": "node-01", "gpu": 2}))
    fleet.inject(parse_fault({"kind": "node_down", "node": "node-01"}))
    _repair_due(fleet, [gpu_fault], clock.now().timestamp() + 600, hold=600)  # no "reboot it first" error
    assert gpu_fault.repaired_at is not None


def test_every_fault_the_simulator_injects_is_a_class_of_the_evaluation():
    """ "Every fault class detected" silently left out ecc_sbe_storm, which nothing detected."""
    evaluated = {c.payload["kind"] for c in FAULT_CLASSES}
    assert sorted(set(FAULT_KINDS) - set(ACTION_KINDS) - evaluated) == []


def _alert(name: str, gpu: str, at: float) -> Alert:
    labels = {"alertname": name, "model": "thermal", "Hostname": "node-01", "gpu": gpu}
    return Alert(labels=labels, starts_at=datetime.fromtimestamp(at, UTC))


def _firing(*alerts: Alert) -> SimpleNamespace:
    return SimpleNamespace(firing={str(i): SimpleNamespace(alert=a) for i, a in enumerate(alerts)})


def test_an_alert_resolved_while_its_fault_is_active_is_counted_and_so_is_its_target_going_quiet():
    """The demo's thermal alert resolved while the GPU was still hot, and the evaluation counted nothing."""
    runaway = next(c for c in FAULT_CLASSES if c.name == "thermal_runaway")
    early, late, other = (Injection(runaway, "node-01", gpu, 1000.0) for gpu in (2, 3, 4))
    late.repaired_at = 1500.0
    fleet_alert = _alert("GpuwardenAnomaly", "2", 1100.0)
    _resolved_early(_alert("GpuwardenAnomaly", "2", 1060.0), 1900.0, [early], _firing(fleet_alert))
    _resolved_early(_alert("GpuwardenAnomaly", "3", 1060.0), 1900.0, [late], _firing())  # after its repair
    _resolved_early(_alert("GpuwardenAnomaly", "4", 900.0), 1900.0, [other], _firing())  # raised before it
    result = _summarise([early, late, other], EvalPlan(duration_seconds=3600))["thermal_runaway"]
    assert (result.resolved_while_active, result.quiet_while_active) == (1, 0)
    assert result.resolved_early_by == {"GpuwardenAnomaly:thermal": 1}
    _resolved_early(fleet_alert, 2000.0, [early], _firing())  # the last one: its incident would resolve
    assert _summarise([early], EvalPlan(duration_seconds=3600))["thermal_runaway"].quiet_while_active == 1


def test_a_re_raised_alert_is_told_apart_as_for_a_new_fault_or_mid_fault():
    """`anomaly.reescalate_alerts` re-raised a runaway's alert mid-fault: the report names such re-raises."""
    runaway, straggler = (
        next(c for c in FAULT_CLASSES if c.name == n) for n in ("thermal_runaway", "straggler")
    )
    hot, slow = Injection(runaway, "node-01", 2, 1000.0), Injection(straggler, "node-01", 3, 2000.0)
    old2, old3, lone = _alert("A", "2", 1100.0), _alert("A", "3", 1100.0), _alert("A", "4", 1100.0)
    raised = [replace(a, starts_at=datetime.fromtimestamp(2100.0, UTC)) for a in (old2, old3)]
    resolved = [replace(a, status=AlertStatus.RESOLVED) for a in (old2, old3)]
    got = _reraised([*raised, lone], resolved, 2100.0, [hot, slow], rise=60.0, grace=900.0)
    assert [(r["gpu"], r["new_fault"]) for r in got] == [(2, None), (3, "straggler")]
    report = merge_reports([FaultEvalReport({}, 1.0, 0, [], 30.0, reraised=got)]).to_json()
    assert (report["reraised"], report["reraised_for_new_fault"]) == (2, 1)
    assert [r["gpu"] for r in report["reraised_mid_fault"]] == [2]


def test_a_re_raise_is_for_a_new_fault_only_where_that_fault_was_on_when_the_climb_began():
    """A fault repaired long before, or one that began with the re-raise's last read, raised nothing: the
    re-raise is the open fault told twice (mid-fault), not one for a new fault."""
    runaway, straggler = (
        next(c for c in FAULT_CLASSES if c.name == n) for n in ("thermal_runaway", "straggler")
    )
    under = [Injection(runaway, "node-01", gpu, 1000.0) for gpu in (2, 3, 4)]
    over = replace(Injection(straggler, "node-01", 2, 1200.0), repaired_at=1500.0)
    starting = Injection(straggler, "node-01", 3, 9000.0)  # drawn at the very tick of the re-raise
    climbing = Injection(straggler, "node-01", 4, 8900.0)  # on for the whole climb: 3 reads, 30 s apart
    old = [_alert("A", gpu, 1100.0) for gpu in ("2", "3", "4")]
    raised = [replace(a, starts_at=datetime.fromtimestamp(9000.0, UTC)) for a in old]
    resolved = [replace(a, status=AlertStatus.RESOLVED) for a in old]
    got = _reraised(raised, resolved, 9000.0, [*under, over, starting, climbing], rise=60.0, grace=900.0)
    assert [(r["gpu"], r["new_fault"]) for r in got] == [(2, None), (3, None), (4, "straggler")]


def test_an_alert_still_firing_hours_after_its_fault_was_repaired_is_counted_stuck():
    runaway = next(c for c in FAULT_CLASSES if c.name == "thermal_runaway")
    stuck, cleared = Injection(runaway, "node-01", 2, 1000.0), Injection(runaway, "node-01", 3, 1000.0)
    stuck.repaired_at = cleared.repaired_at = 2000.0
    service = _firing(_alert("GpuwardenAnomaly", "2", 1060.0))
    _check_stuck([stuck, cleared], service, 2000.0 + 3600.0, after=3 * 3600.0, grace=900.0)  # not yet due
    assert stuck.stuck is None
    _check_stuck([stuck, cleared], service, 2000.0 + 3 * 3600.0, after=3 * 3600.0, grace=900.0)
    assert (stuck.stuck, cleared.stuck) == (True, False)
    assert (
        _summarise([stuck, cleared], EvalPlan(duration_seconds=3600))["thermal_runaway"].stuck_after_repair
        == 1
    )


def test_an_alert_raised_on_the_target_long_after_the_repair_is_not_counted_stuck_for_that_fault():
    """Any alert on the target raised after the fault's start counted, so one raised two hours after the
    repair (no longer the fault's: a false alert, counted as such) made the fault "stuck after repair"."""
    runaway = next(c for c in FAULT_CLASSES if c.name == "thermal_runaway")
    inj = Injection(runaway, "node-01", 2, 1000.0)
    inj.repaired_at = 2000.0
    plan = EvalPlan(duration_seconds=3600)
    service = _firing(_alert("GpuwardenAnomaly", "2", inj.repaired_at + plan.grace_seconds + 3600.0))
    _check_stuck(
        [inj], service, inj.repaired_at + plan.stuck_seconds, plan.stuck_seconds, grace=plan.grace_seconds
    )
    assert inj.stuck is False


def _class(name: str):
    return next(c for c in FAULT_CLASSES if c.name == name)


def test_a_fault_drawn_where_the_same_fault_is_still_active_is_not_injected_nor_scored():
    """Seed 905 drew a second cooling failure for node-01 GPU 6 47 minutes into the first (held an hour): the
    fleet ran the same effect on, the thermal alert raised for the first fired throughout (score ~10), and the
    second counted "detected after 2,340 s" when an alert was next raised, a late detection of nothing new."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    first, second = (Injection(_class("thermal_runaway"), "node-01", 6, clock.time()) for _ in range(2))
    other = Injection(_class("straggler"), "node-01", 6, clock.time())
    quiet = SimpleNamespace(firing={})
    assert [_inject(fleet, quiet, inj) for inj in (first, second, other)] == [True, False, True]
    assert len(fleet.active_faults()) == 2
    result = _summarise([first, other], EvalPlan(duration_seconds=3600), [second])["thermal_runaway"]
    assert (result.injected, result.not_injected_already_active) == (1, 1)
    assert result.to_json()["not_injected_already_active"] == 1


def test_a_miss_that_began_inside_alerts_still_open_from_an_earlier_fault_says_so():
    """Seed 905's straggler on node-05 GPU 5 began 472 s after a power brake there was repaired, while the
    alerts raised for the brake still fired: scored 5.2 (adaptive SM clock) from its first tick, nothing new
    was raised. The report told only "missed"."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    brake = Injection(_class("power_brake"), "node-01", 5, clock.time() - 1076.0)
    brake.repaired_at = clock.time() - 472.0
    straggler = Injection(_class("straggler"), "node-01", 5, clock.time())
    open_alert = SimpleNamespace(
        alert=_alert("GpuwardenAnomaly", "5", clock.time() - 1000.0), detector="adaptive", query="SM"
    )
    elsewhere = SimpleNamespace(alert=_alert("GpuwardenAnomaly", "4", 0.0), detector="fleet", query="P")
    assert _inject(fleet, SimpleNamespace(firing={"a": open_alert, "b": elsewhere}), straggler)
    truth = SimpleNamespace(injections=[brake, straggler], workload=lambda node, gpu: None)
    missed = _missed(straggler, truth)
    assert missed["open_alerts_at_start"] == ["adaptive:SM"]
    assert missed["previous"] == "power_brake, repaired 472 s before"
    summary = _summarise([brake, straggler], EvalPlan(duration_seconds=3600))
    assert summary["straggler"].began_inside_open_alerts == 1
    assert summary["power_brake"].began_inside_open_alerts == 0


def _quiet_run(monkeypatch, first: tuple[str, float], second: tuple[str, float], duration: float):
    """A run with no alert: fault class ``first[0]`` at ``first[1]`` seconds, then ``second`` on its GPU."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    node, gpu = next((g.node, g.index) for g in fleet.gpu_refs() if fleet.workload_on(g.node, g.index))
    a, b = (Injection(_class(name), node, gpu, clock.time() + at) for name, at in (first, second))
    monkeypatch.setattr("anomaly.faulteval._schedule", lambda plan, fleet, start: [a, b])
    report = run_fault_eval(fleet, _quiet(), clock, EvalPlan(duration_seconds=duration, warmup_seconds=0.0))
    (rec,) = [r for r in fleet.fault_log if r.id == b.fault_id] if b.fault_id else [None]
    return fleet, report, rec


def _quiet() -> SimpleNamespace:
    """An anomaly service that raises nothing: the harness's own timing alone."""
    return SimpleNamespace(
        infer=lambda: SimpleNamespace(raised=[], resolved=[]),
        fit=lambda: None,
        cfg=SimpleNamespace(fit_every_seconds=3600.0, pending_ticks=3),
        firing={},
    )


def test_a_straggler_begun_while_another_rank_hangs_its_job_is_timed_from_when_the_job_runs(monkeypatch):
    """Seed 906's straggler begun on node-04 GPU 0 while the node was down counted 480 s late: its node
    came back at 22,020 s with pretrain-01 still hung on node-02 GPU 0 until 22,380 s, every rank idle (0 %,
    345 MHz, 70 W, the straggler with them: fleet z 0), and the fleet detector raised 120 s after the job
    ran again. A slower GPU shows only while it works: it is timed from the job's resumption. A job stalled
    by the straggler's own node being down is its outage (timed from its return), not counted so."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, hung_gpu), (_, slow), (_, later) = _ranks_of_one_job_on(fleet, 3)
    other = next(n for n in sorted({g.node for g in fleet.gpu_refs()}) if n != node)
    (_, behind), *_ = _ranks_of_one_job_on(fleet, 1, other)
    t0 = clock.time()
    hang = Injection(_class("hung"), node, hung_gpu, t0 + 100.0)
    straggler = Injection(_class("straggler"), node, slow, t0 + 160.0)
    running = Injection(_class("straggler"), node, later, t0 + 1000.0)  # after the hang's repair
    outage = Injection(LONG_OUTAGE, other, None, t0 + 1200.0, hold_seconds=1300.0)  # stalls running's job
    down = Injection(WHILE_DOWN_CLASSES[1], other, behind, t0 + 1300.0, hidden_until=t0 + 2500.0)
    drawn = [hang, straggler, running, outage, down]
    monkeypatch.setattr("anomaly.faulteval._schedule", lambda plan, fleet, start: list(drawn))
    plan = EvalPlan(duration_seconds=3600.0, warmup_seconds=0.0)
    run_fault_eval(fleet, _quiet(), clock, plan)
    assert hang.repaired_at is not None and hang.repaired_at >= t0 + 700.0
    assert straggler.seen_from() == hang.repaired_at  # its last stalled tick; the job ran from then on
    assert (running.stalled_until, running.seen_from()) == (None, t0 + 1000.0)
    assert (down.stalled_until, down.seen_from()) == (None, outage.repaired_at)
    straggler.detected_at = hang.repaired_at + 120.0
    result = _summarise(drawn, plan)["straggler"]
    assert (result.within_deadline, result.latencies, result.job_stalled_at_start) == (1, [120.0], 1)
    assert _summarise(drawn, plan)["straggler_while_down"].job_stalled_at_start == 0
    merged = merge_reports([FaultEvalReport({"straggler": result}, 1.0, 0, [], 30.0)] * 2).to_json()
    assert merged["classes"]["straggler"]["job_stalled_at_start"] == 2


def _raising_once(clock: FakeClock, alert: Alert, when) -> SimpleNamespace:
    """A quiet service that raises ``alert`` at its first tick at or after ``when()`` (None: not yet)."""
    told: list[Alert] = []

    def infer() -> SimpleNamespace:
        at = when()
        due = not told and at is not None and clock.time() >= at
        told.extend([alert] if due else [])
        return SimpleNamespace(raised=[alert] if due else [], resolved=[])

    return SimpleNamespace(**{**vars(_quiet()), "infer": infer})


def test_a_straggler_whose_job_was_stalled_for_most_of_its_hold_is_held_its_hold_from_when_it_shows(
    monkeypatch,
):
    """Seed 1200's straggler on node-04 GPU 1 began 557 s before the end of a long outage of another node
    of its job: timed from the job's resumption, it was repaired some 40 s later (600 s after its start), so
    no detector had its 5 minutes and it counted as a miss. Held its hold from when it could first be seen,
    an alert 120 s after the job ran again is its detection in time; the fleet runs the straggler that long
    too."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, hung_gpu), (_, slow) = _ranks_of_one_job_on(fleet, 2)
    t0 = clock.time()
    hang = Injection(_class("hung"), node, hung_gpu, t0 + 100.0)
    straggler = Injection(_class("straggler"), node, slow, t0 + 160.0)
    monkeypatch.setattr("anomaly.faulteval._schedule", lambda plan, fleet, start: [hang, straggler])
    alert = _raise(node, slow)
    service = _raising_once(clock, alert, lambda: hang.repaired_at and hang.repaired_at + 120.0)
    plan = EvalPlan(duration_seconds=2400.0, warmup_seconds=0.0)
    report = run_fault_eval(fleet, service, clock, plan)
    seen = straggler.seen_from()
    assert hang.repaired_at is not None and seen == hang.repaired_at
    assert straggler.repaired_at is not None and straggler.repaired_at >= seen + plan.hold_seconds
    (rec,) = [r for r in fleet.fault_log if r.id == straggler.fault_id]
    assert rec.ended_at is not None and rec.ended_at >= seen + plan.hold_seconds
    assert straggler.latency() == 120.0
    assert report.classes["straggler"].within_deadline == 1
    assert [m for m in report.missed if m["class"] == "straggler"] == []


def test_a_straggler_begun_while_its_node_was_down_keeps_its_class_hold_when_a_hang_stalls_its_job(
    monkeypatch,
):
    """``Injection.held_from`` (fix/evalhunt) counted every hold from the last tick a slowdown's job was
    stalled, also a ``straggler_while_down``'s, whose class hold (2400 s) counts from its start to outlast
    the outage: one whose job another rank's hang stalled when its node came back was held 2400 s from the
    hang's repair, here 1770 s past its class's hold (18-33 minutes in the schedules of seeds 0-299 x 2 days,
    20 of 563 such stragglers on a training job), past the window the plan keeps its node free. It keeps its
    class hold, and stays at least the plan's hold after it can first be seen."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (down_node, slow), *_ = _ranks_of_one_job_on(fleet, 1, "node-02")
    (node, hung_gpu), *_ = _ranks_of_one_job_on(fleet, 1, "node-01")  # the same job: pretrain-01
    t0 = clock.time()
    outage = Injection(LONG_OUTAGE, down_node, None, t0, hold_seconds=1500.0)
    down = Injection(WHILE_DOWN_CLASSES[1], down_node, slow, t0 + 300.0, hidden_until=t0 + 1500.0)
    hang = Injection(_class("hung"), node, hung_gpu, t0 + 1450.0)  # its job stays stalled past the return
    drawn = [outage, down, hang]
    monkeypatch.setattr("anomaly.faulteval._schedule", lambda plan, fleet, start: list(drawn))
    plan = EvalPlan(duration_seconds=6000.0, warmup_seconds=0.0)
    run_fault_eval(fleet, _quiet(), clock, plan)
    assert hang.repaired_at is not None and down.seen_from() == hang.repaired_at  # timed from the resumption
    due = max(down.started_at + down.hold(plan.hold_seconds), down.seen_from() + plan.hold_seconds)
    assert down.repaired_at is not None and due <= down.repaired_at < due + plan.interval_seconds


def _ranks_of_one_job_on(fleet, count: int, node: str | None = None) -> list[tuple[str, int]]:
    """``count`` GPUs of one node (the first with a training job, or ``node``) that run a training job."""
    ranks = [
        (g.node, g.index) for g in fleet.gpu_refs() if hasattr(fleet.workload_on(g.node, g.index), "ranks")
    ]
    node = node or ranks[0][0]
    return [r for r in ranks if r[0] == node][:count]


def test_a_fault_drawn_after_the_same_one_was_due_for_repair_is_injected(monkeypatch):
    """The straggler due for repair 10 s before a second one on its GPU began was still active when the
    second was checked (repairs ran after the tick's injections), so the second, a new fault on a GPU
    repaired by then, was counted not_injected_already_active and left out of recall."""
    # The first is due for repair at 700 s; the second begins at 710 s, inside the same 30 s tick.
    fleet, report, _ = _quiet_run(monkeypatch, ("straggler", 100.0), ("straggler", 710.0), 1800.0)
    assert report.classes["straggler"].not_injected_already_active == 0
    assert report.classes["straggler"].injected == 2
    assert sum(r.spec.kind == "straggler" for r in fleet.fault_log) == 2


def test_a_fault_drawn_just_after_another_was_due_for_repair_on_its_gpu_runs_its_hold(monkeypatch):
    """The earlier straggler's repair, run after the tick's injections, reset the GPU and so ended a hang
    injected on it the same instant: counted injected, it never ran."""
    _, report, rec = _quiet_run(monkeypatch, ("straggler", 100.0), ("hung", 710.0), 1800.0)
    assert rec.ended_at is not None and rec.ended_at - rec.started_at >= 600.0
    assert report.classes["hung"].injected == 1


def test_a_fault_begun_on_a_gpu_whose_cooler_is_failed_runs_its_hold_past_the_coolers_repair(monkeypatch):
    """The failed cooler's repair (after its hour) reset the GPU, which ended a hang begun there 5 minutes
    before: the harness held the hang 5 more minutes (alerts resolving then read as premature, a detection
    then as of a fault that had ended)."""
    _, report, rec = _quiet_run(monkeypatch, ("thermal_runaway", 100.0), ("hung", 3400.0), 5400.0)
    assert rec.ended_at is not None and rec.ended_at - rec.started_at >= 600.0, rec
    assert report.classes["hung"].injected == 1


def _plan_and_fleet(**given):
    clock = FakeClock()
    fleet = build_fleet(8, 8, seed=900, clock=clock)
    return EvalPlan(duration_seconds=86400.0, seed=900, **given), fleet, clock.time()


def _outage_end(inj: Injection) -> float:
    return inj.started_at + inj.hold(EvalPlan(duration_seconds=0.0).hold_seconds)


def _key(inj: Injection) -> tuple[str, str, int | None, float]:
    return (inj.fault_class.name, inj.node, inj.gpu, inj.started_at)


def test_long_outages_leave_the_other_classes_draws_as_they_were_and_repeat_per_seed():
    """Earlier seeds' results stay comparable: the long outages come from their own random stream."""
    plan, fleet, start = _plan_and_fleet()
    old, _, _ = _plan_and_fleet(long_outages=False)
    drawn = _schedule(plan, fleet, start)
    assert [_key(i) for i in drawn if i.fault_class in FAULT_CLASSES] == [
        _key(i) for i in _schedule(old, fleet, start)
    ]
    assert [_key(i) for i in drawn] == [_key(i) for i in _schedule(plan, fleet, start)]
    assert [i.started_at for i in drawn] == sorted(i.started_at for i in drawn)


def test_a_long_outage_outlasts_forget_after_on_a_node_no_other_fault_touches():
    """The node_down class lasted 10 minutes, under ``forget_after_seconds`` (900 s): the eval never had the
    service forget a node's series and take them up again."""
    plan, fleet, start = _plan_and_fleet()
    drawn = _schedule(plan, fleet, start)
    outages = [i for i in drawn if i.fault_class is LONG_OUTAGE]
    assert len(outages) >= 4
    for out in outages:
        assert LONG_OUTAGE_SECONDS[0] <= out.hold(plan.hold_seconds) <= LONG_OUTAGE_SECONDS[1]
        assert out.hold(plan.hold_seconds) > AnomalyConfig().forget_after_seconds
        end = out.started_at + out.hold(plan.hold_seconds) + plan.grace_seconds
        others = [i for i in drawn if i.node == out.node and i is not out and i.fault_class in FAULT_CLASSES]
        assert all(
            i.started_at > end
            or i.started_at + i.hold(plan.hold_seconds) + plan.grace_seconds < out.started_at
            for i in others
        )
    companions = [i for i in drawn if i.fault_class in WHILE_DOWN_CLASSES]
    assert {c.fault_class.name for c in companions} == {c.name for c in WHILE_DOWN_CLASSES}
    for c in companions:
        (out,) = [o for o in outages if o.node == c.node and o.started_at < c.started_at < _outage_end(o)]
        assert c.hidden_until == pytest.approx(_outage_end(out))


def test_a_fault_begun_while_its_node_is_down_is_timed_from_the_nodes_return():
    """Nothing can see a GPU of a node that is down: its detection is timed from when the node came back."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    t0 = clock.time()
    outage = Injection(LONG_OUTAGE, "node-01", None, t0, hold_seconds=1500.0)
    hot = Injection(WHILE_DOWN_CLASSES[0], "node-01", 3, t0 + 300.0, hidden_until=t0 + 1500.0)
    outage.fault_id = fleet.inject(parse_fault({"kind": "node_down", "node": "node-01"}))
    hot.fault_id = fleet.inject(parse_fault({"kind": "thermal_runaway", "node": "node-01", "gpu": 3}))
    _repair_due(fleet, [outage, hot], t0 + 1530.0, hold=600.0)  # the tick that repairs it, 30 s late
    assert (outage.repaired_at, hot.repaired_at, hot.hidden_until) == (t0 + 1530.0, None, t0 + 1530.0)
    assert fleet.node("node-01").up
    hot.detected_at = t0 + 1530.0 + 120.0
    result = _summarise([outage, hot], EvalPlan(duration_seconds=3600))["thermal_runaway_while_down"]
    assert (result.within_deadline, result.latencies) == (1, [120.0])
    assert _sympathetic(_raise("node-01", 4), t0 + 1530.0 + 400.0, hot)["delay_s"] == 400  # not 1,630


def _job_mates(fleet) -> tuple[tuple[str, int], tuple[str, int], tuple[str, int]]:
    """Two GPUs on one node that run the same job, and a third that does not."""
    by_job: dict[int, list[tuple[str, int]]] = {}
    for g in fleet.gpu_refs():
        work = fleet.workload_on(g.node, g.index)
        if work is not None:
            by_job.setdefault(id(work), []).append((g.node, g.index))
    mates = next(v for v in by_job.values() if len({n for n, _ in v}) < len(v))
    a, b = next((x, y) for x in mates for y in mates if x != y and x[0] == y[0])
    other = next(
        (g.node, g.index) for g in fleet.gpu_refs() if g.node == a[0] and (g.node, g.index) not in mates
    )
    return a, b, other


def _raise(node: str, gpu: int, model: str = "adaptive") -> Alert:
    labels = {"alertname": "GpuwardenAnomaly", "model": model, "Hostname": node, "gpu": str(gpu)}
    return Alert(labels=labels)


def test_alerts_on_a_faulted_jobs_other_gpus_are_counted_sympathetic_with_their_delay():
    """A rank alert 37 minutes into a runaway on another GPU of its job counted as the runaway's own, never
    seen: the eval now lists it apart, late past the soft deadline, and still not false."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, gpu), (_, mate), _ = _job_mates(fleet)
    truth = _Truth(fleet, grace=900.0)
    runaway = Injection(_class("thermal_runaway"), node, gpu, 1000.0)
    truth.injections.append(runaway)
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(node, gpu), 1060.0, truth, tally)  # its own alert: the detection
    _attribute(_raise(node, mate), 1120.0, truth, tally)  # a rank, 2 minutes in
    _attribute(_raise(node, mate, "fleet"), 1000.0 + 37 * 60, truth, tally)  # a rank, 37 minutes in
    assert runaway.detected_at == 1060.0
    assert tally.false_alerts == []
    assert [(a["gpu"], a["model"], a["delay_s"]) for a in tally.sympathetic] == [
        (mate, "adaptive", 120),
        (mate, "fleet", 2220),
    ]
    report = FaultEvalReport({}, 1.0, 0, [], 30.0, sympathetic=tally.sympathetic)
    merged = merge_reports([report, report]).to_json()
    assert (merged["sympathetic_alerts"], merged["late_sympathetic"]) == (4, 2)
    assert merged["sympathetic_by_detector"]["GpuwardenAnomaly:fleet:"] == {
        "alerts": 2,
        "late": 2,
        "max_delay_s": 2220,
    }
    (late, _) = merged["late_sympathetic_examples"]
    assert (late["Hostname"], late["gpu"], late["fault"]) == (node, mate, f"thermal_runaway {node} GPU {gpu}")


def test_an_alert_on_a_stragglers_gpu_while_another_rank_stalls_its_job_is_the_stalls_not_its_detection():
    """Every rank of a job a hang stalls idles, the straggler's GPU with them: an alert there then is the
    hang's, sympathetic. It was taken as the straggler's detection, timed from the stall's last tick (0 s
    late), so a straggler never told apart from its idle job counted detected in time."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, slow), (_, mate), _ = _job_mates(fleet)
    truth = _Truth(fleet, grace=900.0)
    hang = Injection(_class("hung"), node, mate, 1000.0, repaired_at=1300.0)
    straggler = Injection(_class("straggler"), node, slow, 1100.0, stalled_until=1260.0)
    truth.injections += [hang, straggler]
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(node, slow, "fleet"), 1260.0, truth, tally)  # the job still stalled
    assert straggler.detected_at is None
    assert [(a["gpu"], a["fault"]) for a in tally.sympathetic] == [(slow, f"hung {node} GPU {mate}")]
    _attribute(_raise(node, slow), 1380.0, truth, tally)  # the job ran from 1260 s: the straggler seen
    assert (straggler.detected_at, straggler.latency()) == (1380.0, 120.0)
    assert tally.false_alerts == []


def _false_report(tally: _Tally) -> FaultEvalReport:
    """A report of ``tally``'s false alerts, as ``run_fault_eval`` makes it."""
    return FaultEvalReport(
        {},
        1.0,
        len(tally.false_alerts),
        tally.false_alerts,
        30.0,
        beside_faults=tally.beside_faults,
        on_hidden_faults=tally.on_hidden_faults,
    )


GPU_CLASSES = [c for c in FAULT_CLASSES if not c.node_level]


@pytest.mark.parametrize("fault_class", GPU_CLASSES, ids=[c.name for c in GPU_CLASSES])
def test_an_alert_on_a_neighbour_gpu_of_a_gpu_fault_is_false_and_names_the_fault_beside_it(fault_class):
    """No GPU fault of the simulator reaches another GPU of its node (``gpuwarden.sim.faults.reaches``): an
    alert on one that runs no job with the fault's GPU is false. The eval took any alert on a faulted node
    as the fault's: a straggler on GPU 3 would hide an adaptive alert on GPU 5's memory for the fault's 10
    minutes and 15 of grace. The false alert names the fault beside it, and the report counts those apart."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, gpu), _, (_, neighbour) = _job_mates(fleet)
    truth = _Truth(fleet, grace=900.0)
    truth.injections.append(Injection(fault_class, node, gpu, 1000.0, repaired_at=1600.0))
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(node, neighbour), 1200.0, truth, tally)  # while it is on
    _attribute(_raise(node, neighbour, "fleet"), 1600.0 + 900.0, truth, tally)  # the last second of its grace
    assert tally.sympathetic == []
    assert [(a["gpu"], a["beside"]) for a in tally.false_alerts] == [
        (str(neighbour), f"{fault_class.name} GPU {gpu}"),
        (str(neighbour), f"{fault_class.name} GPU {gpu}"),
    ]
    report = _false_report(tally).to_json()
    assert report["false_alerts_beside_a_fault"] == 2
    assert report["false_alerts_beside_faults"] == {
        f"GpuwardenAnomaly:adaptive: beside {fault_class.name}": 1,
        f"GpuwardenAnomaly:fleet: beside {fault_class.name}": 1,
    }


def test_an_alert_on_any_gpu_of_a_node_wide_fault_is_the_faults_and_names_nothing_beside():
    """A node down (or a node's power brake) acts on every GPU of the node: alerts there are its own, not
    false, and a false alert elsewhere names no fault beside it."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    truth = _Truth(fleet, grace=900.0)
    truth.injections.append(Injection(_class("node_down"), "node-01", None, 1000.0, repaired_at=1600.0))
    tally = _Tally(counted_from=0.0)
    for index in range(8):
        _attribute(_raise("node-01", index), 1700.0, truth, tally)
    served = next(i for i in range(8) if not hasattr(fleet.workload_on("node-02", i), "ranks"))
    _attribute(_raise("node-02", served), 1700.0, truth, tally)  # no rank of a job node-01 runs
    assert [(a["Hostname"], "beside" in a) for a in tally.false_alerts] == [("node-02", False)]


def test_an_alert_on_a_job_mate_after_the_faults_grace_is_false():
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, gpu), (_, mate), _ = _job_mates(fleet)
    truth = _Truth(fleet, grace=900.0)
    straggler = replace(Injection(_class("straggler"), node, gpu, 1000.0), repaired_at=1600.0)
    truth.injections.append(straggler)
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(node, mate), 1600.0 + 901.0, truth, tally)
    assert (len(tally.false_alerts), tally.sympathetic) == (1, [])


def _replicas(fleet) -> tuple[tuple[str, int], tuple[str, int]]:
    """Two GPUs on different nodes that serve the same inference service (one replica each)."""
    by_service: dict[int, list[tuple[str, int]]] = {}
    for g in fleet.gpu_refs():
        work = fleet.workload_on(g.node, g.index)
        if work is not None and not hasattr(work, "ranks"):
            by_service.setdefault(id(work), []).append((g.node, g.index))
    replicas = next(v for v in by_service.values() if len({n for n, _ in v}) > 1)
    a = replicas[0]
    return a, next(r for r in replicas if r[0] != a[0])


def test_an_alert_on_another_replica_of_a_faulted_inference_service_is_false():
    """A service's replicas do not wait for each other as a training job's ranks do: a hang on one replica
    leaves the others' traffic as it was (the simulator draws each replica's load on its own), so an alert on
    another replica, on another node, is no sympathy with the fault. Counted as the fault's, a false alert on
    any of the 16 GPUs serving llm-chat was hidden for the 25 minutes of each fault on one of them, and every
    serving GPU of the cluster for each node outage."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, gpu), (other_node, replica) = _replicas(fleet)
    truth = _Truth(fleet, grace=900.0)
    truth.injections.append(Injection(_class("hung"), node, gpu, 1000.0))
    truth.injections.append(Injection(_class("node_down"), node, None, 1100.0))
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(other_node, replica), 1200.0, truth, tally)
    assert (len(tally.false_alerts), tally.sympathetic) == (1, [])


def test_a_rank_alert_while_a_fault_begun_on_a_down_node_is_unseen_is_the_outages():
    """A straggler begun on a GPU of a node that is down shows nothing until the node is back: a rank of its
    job alerted on another node meanwhile is the outage's (it stalled the job), late by the outage's start,
    not the straggler's, 'raised' before it could be seen (a negative delay, never late)."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, gpu), (mate_node, mate) = next(
        (a, b) for a, b in _ranks_across_nodes(fleet) if fleet.workload_on(*a) is fleet.workload_on(*b)
    )
    truth = _Truth(fleet, grace=900.0)
    outage = Injection(LONG_OUTAGE, node, None, 1000.0, hold_seconds=1500.0)
    straggler = Injection(WHILE_DOWN_CLASSES[1], node, gpu, 1300.0, hidden_until=2500.0)
    truth.injections += [outage, straggler]
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(mate_node, mate), 1000.0 + 400.0, truth, tally)  # down, the straggler unseen
    _attribute(_raise(mate_node, mate, "fleet"), 2500.0 + 60.0, truth, tally)  # back, the straggler seen
    assert [(a["fault"], a["delay_s"]) for a in tally.sympathetic] == [
        (f"node_down_long {node}", 400),
        (f"straggler_while_down {node} GPU {gpu}", 60),
    ]
    assert len(tally.false_alerts) == 0


def _ranks_across_nodes(fleet):
    """Pairs of training GPUs on different nodes."""
    ranks = [
        (g.node, g.index) for g in fleet.gpu_refs() if hasattr(fleet.workload_on(g.node, g.index), "ranks")
    ]
    return [(a, b) for a in ranks for b in ranks if a[0] != b[0]]


def test_a_late_detection_of_a_fault_begun_while_its_node_was_down_is_listed_by_its_delay_from_the_return():
    """Its recall and latency are timed from the node's return; the list of misses said how long after its
    start (hidden for most of the outage), so a detection 400 s after the return read 1,600 s late."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    truth = _Truth(fleet, grace=900.0)
    hot = Injection(WHILE_DOWN_CLASSES[0], "node-01", 3, 1000.0, hidden_until=2200.0, detected_at=2600.0)
    truth.injections.append(hot)
    assert _missed(hot, truth)["detected_after_s"] == 400


def test_seed_900_draws_the_14_classes_as_it_did_before_the_long_outages():
    """Compared with the plan left without long outages, a change to how the 14 classes are drawn would go
    unseen: the draws as the code before them (bc2b7d3) made them, 68 over the day, pinned."""
    plan, fleet, start = _plan_and_fleet()
    drawn = [i for i in _schedule(plan, fleet, start) if i.fault_class in FAULT_CLASSES]
    assert len(drawn) == 68
    assert [(i.fault_class.name, i.node, i.gpu, round(i.started_at - start)) for i in drawn[:8]] == [
        ("nvlink_crc_burst", "node-05", 4, 4131),
        ("dbe_contained_xid_94", "node-04", 6, 5140),
        ("power_brake", "node-08", 2, 6318),
        ("xid_48_double_bit_ecc", "node-06", 4, 7231),
        ("nvlink_down", "node-04", 2, 8447),
        ("hung", "node-08", 5, 9709),
        ("memory_leak", "node-04", 0, 10873),
        ("xid_79_fell_off_bus", "node-08", 0, 12218),
    ]


def test_false_alerts_beside_faults_are_grouped_by_the_classes_whatever_their_names():
    """The grouping read the classes back out of the ``beside`` text, cut at ", " and " GPU ": a class whose
    name holds either (an ``EvalPlan`` scores any classes it is given) was cut into classes that do not
    exist."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, gpu), _, (_, neighbour) = _job_mates(fleet)
    odd = FaultClass("hbm, GPU 0 row remap", False, {"kind": "ecc_sbe_storm"})
    truth = _Truth(fleet, grace=900.0)
    truth.injections.append(Injection(odd, node, gpu, 1000.0))
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(node, neighbour), 1200.0, truth, tally)
    report = _false_report(tally).to_json()
    assert report["false_alerts_beside_faults"] == {
        "GpuwardenAnomaly:adaptive: beside hbm, GPU 0 row remap": 1
    }


def test_a_false_alert_on_a_stalled_stragglers_own_gpu_names_it_on_that_gpu_not_beside():
    """A straggler's GPU idles with its stalled job (``Injection.shows_at``): an alert there then is not its
    detection, and where no fault elsewhere on the job is open to explain the stall (``_Truth.shares_job``),
    not sympathetic either: a false alert. It named the straggler "beside" itself, as if on another GPU of
    its node; it names it ``on`` its GPU, not shown yet, and only faults on other GPUs beside it."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, slow), _, (_, neighbour) = _job_mates(fleet)
    truth = _Truth(fleet, grace=900.0)
    straggler = Injection(_class("straggler"), node, slow, 1100.0, stalled_until=1260.0)
    truth.injections += [straggler, Injection(_class("hung"), node, neighbour, 1000.0)]
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(node, slow), 1260.0, truth, tally)
    assert (straggler.detected_at, tally.sympathetic) == (None, [])
    assert [(a["gpu"], a.get("on"), a.get("beside")) for a in tally.false_alerts] == [
        (str(slow), f"straggler GPU {slow} (not shown yet: its job stalled)", f"hung GPU {neighbour}")
    ]
    report = _false_report(tally).to_json()
    assert report["false_alerts_beside_faults"] == {"GpuwardenAnomaly:adaptive: beside hung": 1}
    assert (report["false_alerts_beside_a_fault"], report["false_alerts_on_a_hidden_fault"]) == (1, 1)
    merged = merge_reports([_false_report(tally), _false_report(tally)]).to_json()
    assert merged["false_alerts_beside_faults"] == {"GpuwardenAnomaly:adaptive: beside hung": 2}
    assert (merged["false_alerts_beside_a_fault"], merged["false_alerts_on_a_hidden_fault"]) == (2, 2)
