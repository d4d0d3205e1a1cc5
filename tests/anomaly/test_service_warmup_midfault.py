"""``anomaly run`` started without a state snapshot while a fault goes on (a first start, a lost state file):
the warm-up's history must hold enough samples from before the fault for the adaptive bands to be as settled
as a service's that ran through it, else the fault widens the young band and its alert resolves mid-fault."""

from __future__ import annotations

import numpy as np

from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.service_ticks import GPUS, HistorySource, tick

CLOCK = "DCGM_FI_DEV_SM_CLOCK"
EVERY = 30.0


def clock_alert_open(lookback: float, into: int, lasting: int) -> list[bool]:
    """Whether GPU 2's SM clock alert is firing at each live tick of a service started ``into`` ticks into
    its clock's cut to 900 MHz (from 1400 MHz), up to the fault's end ``lasting`` ticks after it began."""
    now = FakeClock().time()
    began = now - into * EVERY

    def clocks(t: float) -> np.ndarray:
        values = 1400.0 + np.random.default_rng(int(t)).normal(0, 14, len(GPUS))
        if began <= t < began + lasting * EVERY:
            values[2] = 900.0
        return values

    clock = FakeClock()
    cfg = AnomalyConfig(detectors=["adaptive"], adaptive_metrics=["*"], max_lookback_seconds=lookback)
    service = AnomalyService(cfg, [HistorySource({CLOCK: clocks})], clock)
    service.warm_up()
    open_ = []
    for _ in range(lasting - into):
        tick(clock, service, EVERY)
        open_.append(any(a.labels.get("UUID") == "GPU-2" for a in (s.alert for s in service.firing.values())))
    return open_


def test_a_start_26_minutes_into_a_fault_keeps_its_alert_open_to_the_faults_end_given_the_history():
    """Started 52 ticks into a 130-tick fault with ``max_lookback_seconds`` at 3 hours: the warm-up replays
    320 ticks (the band's 200 settling samples and the hour), and the alert raised again stays open to the
    fault's end. Before, the warm-up read 120 ticks whatever the lookback: the band had learnt from 68
    samples when the fault began, learnt the fault's error at 1/70 a sample instead of 1/200, and the alert
    resolved 11 minutes before the fault ended, 24 minutes earlier than a service that ran through it."""
    open_ = clock_alert_open(lookback=3 * 3600.0, into=52, lasting=130)
    assert open_[3] and all(open_[3:]), open_
