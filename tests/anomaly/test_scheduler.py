from __future__ import annotations

import threading
import time

from anomaly.scheduler import AnomalyScheduler
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.fakes import TableCollector


class CountingService(AnomalyService):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.infers = 0
        self.fits = 0
        self.both = threading.Event()
        self.explode = False

    def infer(self):
        if self.explode:
            raise RuntimeError("tick broke")
        self.infers += 1
        if self.infers >= 2 and self.fits >= 1:
            self.both.set()
        return super().infer()

    def fit(self):
        self.fits += 1
        return super().fit()


def make(**cfg) -> CountingService:
    clock = FakeClock()
    col = TableCollector()
    col.set("DCGM_FI_DEV_GPU_TEMP", [({"UUID": "GPU-0"}, 60.0)])
    return CountingService(AnomalyConfig(**cfg), [CollectorSource([col], clock)], clock)


def test_the_jobs_run_the_service_and_a_failing_tick_is_counted_not_raised():
    service = make()
    scheduler = AnomalyScheduler(service)
    scheduler.infer_job()
    scheduler.fit_job()
    assert (scheduler.ticks, scheduler.fits, service.infers) == (1, 1, 1)
    service.explode = True
    scheduler.infer_job()
    assert scheduler.failures == 1


def test_the_background_scheduler_runs_infer_and_fit_on_their_intervals():
    service = make(infer_every_seconds=0.05, fit_every_seconds=0.1)
    scheduler = AnomalyScheduler(service)
    scheduler.start()
    try:
        assert service.both.wait(timeout=30)
    finally:
        scheduler.shutdown()
    ticks = scheduler.ticks
    time.sleep(0.2)
    assert scheduler.ticks == ticks  # nothing runs after shutdown
