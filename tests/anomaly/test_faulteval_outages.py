"""The fault evaluation's long node outages: how they are drawn, and faults begun while a node is down."""

from __future__ import annotations

import pytest

from anomaly.faulteval import (
    FAULT_CLASSES,
    LONG_OUTAGE,
    LONG_OUTAGE_SECONDS,
    WHILE_DOWN_CLASSES,
    EvalPlan,
    Injection,
    _missed,
    _repair_due,
    _schedule,
    _summarise,
    _sympathetic,
    _Truth,
)
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.sim import build_fleet, parse_fault
from tests.anomaly.faulteval_faults import _raise


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
