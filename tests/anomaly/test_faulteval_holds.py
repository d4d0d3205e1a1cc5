"""Which faults the fault evaluation injects, and from when it holds and times each."""

from __future__ import annotations

from types import SimpleNamespace

from anomaly.faulteval import (
    LONG_OUTAGE,
    WHILE_DOWN_CLASSES,
    EvalPlan,
    FaultEvalReport,
    Injection,
    _inject,
    _missed,
    _summarise,
    merge_reports,
    run_fault_eval,
)
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert
from gpuwarden.sim import build_fleet
from tests.anomaly.faulteval_faults import _alert, _class, _raise


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


def test_a_straggler_read_at_fewer_ticks_than_an_alert_needs_before_its_job_stalls_is_timed_from_after(
    monkeypatch,
):
    """Eval seed 1701's straggler was read at two ticks, then another node's outage stalled its job past its
    hold: every rank idled, and it was counted a miss, though no learned detector raises before
    ``pending_ticks`` (3) reads in a row. Shown fewer reads than that before the stall, it is timed, and
    held, from when its job runs again; shown that many, it stays timed from its start."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, hung_gpu), (_, slow) = _ranks_of_one_job_on(fleet, 2)
    t0 = clock.time()
    straggler = Injection(_class("straggler"), node, slow, t0 + 100.0)  # read at t0 + 120 and t0 + 150
    hang = Injection(_class("hung"), node, hung_gpu, t0 + 155.0)  # its job stalled from the next tick on
    monkeypatch.setattr("anomaly.faulteval._schedule", lambda plan, fleet, start: [straggler, hang])
    service = _raising_once(clock, _raise(node, slow), lambda: hang.repaired_at and hang.repaired_at + 120.0)
    plan = EvalPlan(duration_seconds=2400.0, warmup_seconds=0.0)
    report = run_fault_eval(fleet, service, clock, plan)
    assert hang.repaired_at is not None and straggler.seen_from() == hang.repaired_at
    assert straggler.repaired_at is not None and straggler.repaired_at >= hang.repaired_at + plan.hold_seconds
    assert straggler.latency() == 120.0
    assert report.classes["straggler"].within_deadline == 1
    # Read at three ticks before the stall: an alert could have been raised, so its start stays its time.
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    t0 = clock.time()
    shown = Injection(_class("straggler"), node, slow, t0 + 70.0)  # read at t0 + 90, 120 and 150
    hang = Injection(_class("hung"), node, hung_gpu, t0 + 155.0)
    monkeypatch.setattr("anomaly.faulteval._schedule", lambda plan, fleet, start: [shown, hang])
    run_fault_eval(fleet, _quiet(), clock, plan)
    assert shown.stalled_until is None and shown.seen_from() == shown.started_at


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


def test_a_straggler_drawn_where_another_fault_holds_its_gpu_slower_already_is_not_injected():
    """Eval seed 1792's straggler on node-05 GPU 0 began 17 minutes into a thermal runaway there, the GPU at
    100 C and its SM clock held at half its maximum by its thermal slowdown: with the straggler's 0.6 it ran
    cooler and about as slow as before (950 MHz against 990), every alert it could raise already firing for
    the runaway. It was counted a miss."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, gpu), (_, mate) = _ranks_of_one_job_on(fleet, 2)
    quiet = SimpleNamespace(firing={})
    assert _inject(fleet, quiet, Injection(_class("thermal_runaway"), node, gpu, clock.time()))
    sim = fleet.gpu(node, gpu)
    slower = 0.6 * sim.model.sm_clock_max  # the straggler's clock
    for _ in range(120):  # the runaway heats the GPU into its thermal slowdown within the hour
        clock.advance(30.0)
        fleet.advance()
        if sim.state.sm_clock <= slower:
            break
    assert sim.model.sm_clock_idle < sim.state.sm_clock <= slower
    late = Injection(_class("straggler"), node, gpu, clock.time())
    assert not _inject(fleet, quiet, late)
    assert [r.spec.kind for r in fleet.active_faults()] == ["thermal_runaway"]
    skipped = _summarise([], EvalPlan(duration_seconds=3600), [late])["straggler"]
    assert skipped.not_injected_already_active == 1
    beside = Injection(_class("straggler"), node, mate, clock.time())  # a rank at its clock: injected
    assert _inject(fleet, quiet, beside)
