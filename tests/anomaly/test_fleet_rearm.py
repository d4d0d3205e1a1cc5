"""A fleet alert held after its GPU's repair (``fleet_hold_ticks``) and a new fault on that GPU: resolved once
the GPU has been back among its peers ``fleet_rearm_ticks`` with nothing else open on it (``_Firing.rests``),
or raised again after that calm (``_Firing.escalates``); a lemon's shorter returns, and a fault's waves
beside its other alerts, stay one."""

from __future__ import annotations

import numpy as np

from anomaly.firing import _Firing
from anomaly.service import AnomalyService
from gpuwarden.model import Alert
from tests.anomaly.service_ticks import GPUS, setup, tick

POWER = "DCGM_FI_DEV_POWER_USAGE"
THROTTLE = "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"
HW_SLOWDOWN = 0x8
JOB = [{**g, "slurm_job": "7"} for g in GPUS]


def _run(
    phases: list[tuple[float | None, int]], *, slowed: bool = False, **cfg
) -> tuple[AnomalyService, list[list]]:
    """Tick a fleet-detector service (and the signatures, with ``slowed``: GPU 5's clock slowed by hardware
    throughout, an alert of another kind open on it) over ``phases``: (GPU 5's power below its peers, or None
    for GPU 5 not read at all, its node down; ticks). Per tick, GPU 5's fleet alerts raised and resolved."""
    rng = np.random.default_rng(11)
    detectors = ["fleet", "signatures"] if slowed else ["fleet"]
    clock, col, service = setup(detectors=detectors, fleet_queries=[POWER], adaptive_metrics=[], **cfg)
    changes = []
    for below, ticks in [(0.0, 10), *phases]:
        for _ in range(ticks):
            vals = 500 + rng.normal(0, 3, len(JOB))
            vals[5] -= below or 0.0
            rows = list(zip(JOB, vals.tolist(), strict=True))
            col.set(POWER, rows if below is not None else rows[:5] + rows[6:])
            if slowed:
                col.set(THROTTLE, [(g, float(HW_SLOWDOWN if g["gpu"] == "5" else 0)) for g in JOB])
            result = tick(clock, service)
            changes.append([_fleet_on_5(result.raised), _fleet_on_5(result.resolved)])
    return service, changes


def _fleet_on_5(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.labels.get("model") == "fleet" and a.labels.get("gpu") == "5"]


def _raised_at(changes: list[list]) -> list[int]:
    return [t for t, (raised, _) in enumerate(changes) if raised]


def _resolved_at(changes: list[list]) -> list[int]:
    return [t for t, (_, resolved) in enumerate(changes) if resolved]


def test_back_among_its_peers_fleet_rearm_ticks_alone_the_fleet_alert_resolves_and_a_new_fault_is_new() -> (
    None
):
    # An hour-long fault, repaired; 70 reads (35 minutes) back among its peers; then a straggler's deficit.
    # The alert resolves at its 60th quiet read (not its 240th, 2 hours after the repair: its incident stayed
    # open that long), and the straggler raises a new one.
    service, changes = _run([(200.0, 120), (0.0, 70), (120.0, 20)])
    raised, resolved = _raised_at(changes), _resolved_at(changes)
    assert len(raised) == 2 and len(resolved) == 1, (raised, resolved)
    first, again = raised
    assert 10 <= first < 20  # the fault's: its 3 reads in a row
    back, new_fault = 10 + 120, 10 + 120 + 70
    assert back + 60 <= resolved[0] <= back + 66  # the peers' hysteresis, then 60 quiet reads
    assert new_fault <= again <= new_fault + 5
    assert "reescalated" not in changes[again][0][0].annotations
    assert service.cfg.fleet_rearm_ticks == 60 and service.cfg.fleet_hold_ticks == 240
    # The setting moves the bound.
    _, sooner = _run([(200.0, 120), (0.0, 70)], fleet_rearm_ticks=40)
    assert back + 40 <= _resolved_at(sooner)[0] <= back + 46


def test_read_out_past_its_peers_other_side_the_alert_is_held_and_raised_again_after_the_calm() -> None:
    # After the repair GPU 5 draws 80 W over its peers: read out on the other side, never a quiet read, so its
    # alert is not resolved; once the calm since its recovery (reads back from the side it was raised on) is
    # fleet_rearm_ticks long, that departure re-raises it (``_Firing.escalates``), as before the early
    # resolve.
    _, changes = _run([(200.0, 120), (-80.0, 70)])
    raised, back = _raised_at(changes), 10 + 120
    assert len(raised) == 2 and back + 60 <= raised[1] <= back + 66, raised
    again = raised[1]
    assert _resolved_at(changes) == [again]  # its old activity resolved in the same tick: a re-raise
    assert "reescalated" in changes[again][0][0].annotations


def test_back_among_its_peers_for_fewer_reads_than_fleet_rearm_ticks_it_stays_one_alert() -> None:
    # The same, back 45 reads: what a lemon drifting in and out does (and within the 2-hour hold).
    _, changes = _run([(200.0, 120), (0.0, 45), (120.0, 20)])
    assert len(_raised_at(changes)) == 1
    # The setting moves the bound: rearmed after 40 reads, it is raised again.
    _, sooner = _run([(200.0, 120), (0.0, 45), (120.0, 20)], fleet_rearm_ticks=40)
    assert len(_raised_at(sooner)) == 2


def test_reads_without_the_gpu_its_node_down_count_as_time_back_among_its_peers() -> None:
    # Seed 1649: 45 reads back after the repair, then its node down 15 minutes, and it came back a straggler.
    _, changes = _run([(200.0, 120), (0.0, 40), (None, 30), (120.0, 20)])
    raised = _raised_at(changes)
    assert len(raised) == 2 and 10 + 120 + 40 + 30 <= raised[1] <= 10 + 120 + 40 + 30 + 5, raised
    # Its 60th quiet read fell in the outage: resolved then, and raised anew on its return.
    (resolved,) = _resolved_at(changes)
    assert 10 + 120 + 40 < resolved < 10 + 120 + 40 + 30
    assert "reescalated" not in changes[raised[1]][0][0].annotations


def test_with_another_alert_open_on_its_gpu_the_fleet_alert_is_not_raised_again_within_its_hold() -> None:
    # A hardware slowdown alerting on GPU 5 throughout: the GPU is not healthy by every other measure, so a
    # departure after the calm is told as the fault still going on (a thermal runaway's waves), not anew.
    service, changes = _run([(200.0, 120), (0.0, 70), (120.0, 20)], slowed=True)
    assert len(_raised_at(changes)) == 1
    assert not _resolved_at(changes)  # nor resolved after 60 quiet reads: held its 240
    assert any(
        f.detector == "signatures" and f.alert.labels.get("gpu") == "5" for f in service.firing.values()
    )


def test_a_snapshot_keeps_the_reads_since_the_recovery_and_the_rearm_bound() -> None:
    service, _ = _run([(200.0, 120), (0.0, 50)])
    (held,) = [s for s in service.firing.values() if s.detector == "fleet"]
    assert held.recovered and 40 <= held.calm < 50 and held.rearm_after == 60
    again = _Firing.restored(held.state())
    assert (again.calm, again.rearm_after, again.reads) == (held.calm, 60, held.reads)


def test_an_alert_the_warm_up_recalled_on_its_gpu_keeps_the_fleet_alert_from_re_raising_early() -> None:
    """After a restart without a state file the warm-up recalls what was firing (held at serve, not raised
    again yet): such an alert of another detector is open on the GPU as it was in the process before, so
    the fleet alert is not alone there, as it would not have been without the restart."""
    _, _, service = setup(detectors=["fleet"], fleet_queries=[POWER], adaptive_metrics=[])
    gpu5 = {"UUID": "GPU-5", "gpu": "5", "Hostname": "n1"}
    fleet = _Firing(Alert(labels={**gpu5, "for": POWER}), 240, POWER, "fleet", peak=6.8, rearm_after=60)
    fleet.recovered, fleet.calm, fleet.reads = True, 70, 190
    other = _Firing(Alert(labels={**gpu5, "alertname": "GpuClockSlowdown"}), 4, THROTTLE, "signatures")
    service.firing, service._recalled = {"f": fleet}, {"o": other}
    service._busy = service._busy_gpus()  # as the tick takes it, at its start
    assert service._busy == {("GPU-5", "")}
    assert not service._alone(fleet, fleet.alert)
    service._recalled = {}
    service._busy = service._busy_gpus()
    assert service._alone(fleet, fleet.alert)
