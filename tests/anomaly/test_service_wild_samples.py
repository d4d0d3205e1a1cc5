"""Samples no GPU could give (NVML's not-available value, a utilisation outside its query's ``data_range``,
live or in the warm-up's history) teach the anomaly service nothing: they raise nothing and hold no alert
open."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import AlertStatus
from tests.anomaly.service_ticks import GPUS, TEMP, HistorySource, setup, temps, tick, warmed


def test_one_not_available_sample_raises_nothing_and_hides_no_fault_that_starts_after_it(caplog):
    # Issue 4: one read of NVML's 0xFFFFFFFF on a GPU, scored as a sample, kept an adaptive alert open for
    # about 190 ticks (1.5 h), and a real fault starting 10 minutes later raised nothing inside it.
    rng = np.random.default_rng(0)
    clock, col, service = warmed(rng, 60)
    raised: list[tuple[int, str]] = []
    for t in range(40):
        vals = temps(rng)
        if t == 0:
            vals[3] = (GPUS[3], float(0xFFFFFFFF))
        elif t >= 20:  # the fault: GPU 3 runs 15 C hotter from here on
            vals[3] = (GPUS[3], vals[3][1] + 15)
        col.set(TEMP, vals)
        raised += [
            (t, a.labels["gpu"]) for a in tick(clock, service).raised if a.labels["model"] == "adaptive"
        ]
    assert [gpu for _, gpu in raised] == ["3"]
    assert 20 <= raised[0][0] < 20 + service.cfg.pending_ticks + 1
    registry = CollectorRegistry()
    registry.register(service.collector)
    assert registry.get_sample_value("gpuwarden_anomaly_not_available_samples_total", {"query": TEMP}) == 1
    assert (
        f"query {TEMP} read 1 sample holding an NVML/DCGM not-available value" in caplog.text
    )  # "1 samples"


UTIL = "DCGM_FI_DEV_GPU_UTIL"


WILD = 808334905.0  # dcgm-exporter served this for a utilisation (its issue 418): no NVML/DCGM sentinel


def busy_gpus(rng):
    return list(zip(GPUS, (80 + rng.normal(0, 2, len(GPUS))).tolist(), strict=True))


def run_wild_utilisation(data_range, ticks, fault_at=None, wild_ticks=1):
    """Eight GPUs' utilisation (``data_range`` on its query) for 60 ticks, then ``wild_ticks`` of ``WILD`` on
    GPU 3 (from tick 0), then normal ticks up to tick ``ticks``, GPU 3 at 20 % from ``fault_at`` on; the
    adaptive alerts raised and resolved, with their tick."""
    rng = np.random.default_rng(0)
    query = {"name": UTIL, "expr": UTIL, "data_range": data_range}
    clock, col, service = setup(queries=[query], adaptive_metrics=[UTIL])
    for _ in range(60):
        col.set(UTIL, busy_gpus(rng))
        assert tick(clock, service).raised == []
    events = []
    for t in range(ticks + 1):
        vals = busy_gpus(rng)
        if t < wild_ticks:
            vals[3] = (GPUS[3], WILD)
        elif fault_at is not None and t >= fault_at:
            vals[3] = (GPUS[3], 20 + rng.normal(0, 2))
        col.set(UTIL, vals)
        result = tick(clock, service)
        events += [(t, a) for a in (*result.raised, *result.resolved)]
    return service, [(t, a) for t, a in events if a.labels["model"] == "adaptive"]


def test_one_out_of_range_sample_teaches_nothing_so_it_holds_no_alert_open():
    # Issue 4: one utilisation of 808,334,905 (not a sentinel, outside [0, 100]) taught the adaptive fast
    # error, which kept GPU 3's alert open from tick 2 to tick 172 (85 minutes).
    _, events = run_wild_utilisation([0, 100], ticks=2 * alert_ticks())
    assert events == []  # one tick is a blip: learned findings wait pending_ticks, and the next is normal


def test_a_real_fault_after_an_out_of_range_sample_raises_its_own_alert_quickly():
    # On main the fault at tick 20 raised nothing: the glitch's alert, still open, swallowed it.
    service, events = run_wild_utilisation([0, 100], ticks=40, fault_at=20)
    assert [(a.status, a.labels["gpu"], a.labels.get("deviation")) for _, a in events] == [
        (AlertStatus.FIRING, "3", "down")
    ]
    assert 20 <= events[0][0] < 20 + service.cfg.pending_ticks + 1


def test_an_alert_on_out_of_range_values_resolves_its_quiet_ticks_after_they_end():
    cfg = AnomalyConfig()
    _, events = run_wild_utilisation([0, 100], ticks=2 * alert_ticks(), wild_ticks=cfg.pending_ticks)
    raised_at = cfg.pending_ticks - 1  # the last out-of-range tick
    assert [(t, a.status, a.labels["deviation"]) for t, a in events] == [
        (raised_at, AlertStatus.FIRING, "up"),
        (raised_at + cfg.thresholds.resolve_after, AlertStatus.RESOLVED, "up"),
    ]  # main resolved it ~170 ticks later


def test_without_a_data_range_one_wild_sample_is_a_lone_spike_and_raises_nothing():
    # Nothing tells an unbounded query's wild value from a real one (set data_range), but one alone is a
    # spike: it scores its own read, and since fix/sparse its pull on the fast error is that of a sample at
    # the band, so the reads after it, back to normal, do not make the pending_ticks an alert needs.
    _, events = run_wild_utilisation(None, ticks=alert_ticks())
    assert events == []


def test_without_a_data_range_wild_samples_in_a_row_are_samples_and_hold_the_alert_open():
    # Documented limit: a run of them is a fault as any other (set data_range).
    cfg = AnomalyConfig()
    _, events = run_wild_utilisation(None, ticks=alert_ticks(), wild_ticks=cfg.pending_ticks)
    assert [(a.status, a.labels["gpu"]) for _, a in events] == [(AlertStatus.FIRING, "3")]


def alert_ticks():
    """The ticks an alert of a one-tick glitch would take to raise and resolve (27), were the glitch gone at
    once; main held it 170."""
    cfg = AnomalyConfig()
    return cfg.pending_ticks + cfg.thresholds.resolve_after


def test_an_out_of_range_sample_in_the_warm_up_history_teaches_nothing_either():
    rng = np.random.default_rng(2)
    clock = FakeClock()
    glitch = clock.time() - 600  # ten minutes before the restart

    def util(t):
        vals = 80 + rng.normal(0, 2, len(GPUS))
        vals[3] = WILD if t == glitch else vals[3]
        return vals

    query = {"name": UTIL, "expr": UTIL, "data_range": [0, 100]}
    cfg = AnomalyConfig(queries=[query], adaptive_metrics=[UTIL], detectors=["adaptive"])
    service = AnomalyService(cfg, [HistorySource({UTIL: util})], clock)
    assert service.warm_up() > 0
    raised = [a for _ in range(cfg.pending_ticks + 2) for a in tick(clock, service).raised]
    assert raised == []  # the history's glitch held GPU 3's alert open past the restart
