"""The fault evaluation reading alerts against faults: resolved while the fault is on, re-raised, stuck,
clear after the repair."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

from anomaly.faulteval import (
    FAULT_CLASSES,
    EvalPlan,
    FaultEvalReport,
    Injection,
    _check_clear,
    _check_stuck,
    _reraised,
    _resolved_early,
    _summarise,
    merge_reports,
)
from gpuwarden.model import Alert, AlertStatus
from tests.anomaly.faulteval_faults import _alert


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


def test_a_repaired_fault_is_timed_to_the_tick_its_target_has_no_alert_raised_for_it_left():
    """What an operator waits for after a repair: every alert the fault raised on its GPU resolved. An alert
    raised before the fault (an earlier one's) or long after its repair (a false one) does not hold it; one
    on another GPU does not either, except for a node-wide fault, whose target is every GPU of its node."""
    runaway, down = _class_named("thermal_runaway"), _class_named("node_down")
    inj = Injection(runaway, "node-01", 2, 1000.0)
    node = Injection(down, "node-01", None, 1000.0)
    inj.repaired_at = node.repaired_at = 2000.0
    older, own = _alert("A", "2", 900.0), _alert("A", "2", 1060.0)
    beside, late = _alert("A", "3", 1060.0), _alert("A", "2", 2000.0 + 900.0 + 1.0)
    _check_clear([inj, node], _firing(older, own, beside, late), 2030.0, grace=900.0)
    assert (inj.clear_after, node.clear_after) == (None, None)
    _check_clear([inj, node], _firing(older, beside, late), 5000.0, grace=900.0)
    assert (inj.clear_after, node.clear_after) == (3000.0, None)
    _check_clear([inj, node], _firing(older, late), 9000.0, grace=900.0)
    assert (inj.clear_after, node.clear_after) == (3000.0, 7000.0)
    _check_clear([inj, node], _firing(), 9030.0, grace=900.0)  # timed once
    assert (inj.clear_after, node.clear_after) == (3000.0, 7000.0)
    result = _summarise([inj, node], EvalPlan(duration_seconds=3600))
    assert result["thermal_runaway"].to_json()["clear_after_repair_p50_s"] == 3000.0
    assert result["node_down"].to_json()["clear_after_repair_max_s"] == 7000.0


def test_a_fault_whose_target_another_fault_hits_before_it_is_clear_is_not_timed():
    """The later fault's alerts keep the target busy: that wait is not the first fault's."""
    runaway, straggler, down = (_class_named(n) for n in ("thermal_runaway", "straggler", "node_down"))
    first = Injection(runaway, "node-01", 2, 1000.0)
    first.repaired_at = 2000.0
    second = Injection(straggler, "node-01", 2, 2500.0)
    elsewhere = Injection(runaway, "node-01", 3, 1000.0)
    elsewhere.repaired_at = 2000.0
    outage = Injection(down, "node-01", None, 2600.0)  # reaches every GPU of node-01
    holding = _firing(_alert("A", "2", 1060.0), _alert("A", "3", 1060.0))
    _check_clear([first, second, elsewhere], holding, 2400.0, grace=900.0)
    assert not first.clear_interrupted and first.clear_after is None
    _check_clear([first, second, elsewhere], holding, 2500.0, grace=900.0)
    assert (first.clear_interrupted, elsewhere.clear_interrupted) == (True, False)
    _check_clear([first, second, elsewhere, outage], holding, 2600.0, grace=900.0)
    assert elsewhere.clear_interrupted
    _check_clear([first, second, elsewhere, outage], _firing(), 9000.0, grace=900.0)
    assert (first.clear_after, elsewhere.clear_after) == (None, None)
    merged = merge_reports(
        [FaultEvalReport(_summarise([first, elsewhere], EvalPlan(duration_seconds=3600)), 1.0, 0, [], 30.0)]
    )
    assert merged.classes["thermal_runaway"].to_json()["clear_interrupted"] == 2


def _class_named(name: str):
    return next(c for c in FAULT_CLASSES if c.name == name)
