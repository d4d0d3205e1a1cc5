from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

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


def _fire_times(scheduler: AnomalyScheduler, job_id: str, n: int) -> list[datetime]:
    """The next ``n`` times the job ``job_id`` is due."""
    trigger, at = (
        scheduler._scheduler.get_job(job_id).trigger,
        scheduler._scheduler.get_job(job_id).next_run_time,
    )
    times = [at]
    while len(times) < n:
        times.append(trigger.get_next_fire_time(times[-1], times[-1]))
    return times


def test_the_saves_are_due_half_a_tick_off_the_ticks(tmp_path):
    """A save copies the state while the ticks run and copies it again when a tick began meanwhile: saves
    every 300 s due with the 30 s ticks each had a tick beside their copy."""
    service = make(infer_every_seconds=30, state_save_seconds=300)
    scheduler = AnomalyScheduler(service, state_file=tmp_path / "anomaly.state.npz")
    scheduler.start()
    try:
        ticks, saves = _fire_times(scheduler, "infer", 120), _fire_times(scheduler, "save", 10)
    finally:
        scheduler.shutdown()
    apart = min(abs((save - tick).total_seconds()) for save in saves for tick in ticks)
    assert apart == pytest.approx(15, abs=1)


def test_a_tick_the_scheduler_woke_late_for_still_runs_not_dropped_as_missed():
    # APScheduler drops a run begun more than misfire_grace_time (1 s by default) after its time, with its
    # own "was missed by" warning: a tick due while the machine was busy was lost without a word of ours.
    service = make(infer_every_seconds=3600, fit_every_seconds=3600)
    scheduler = AnomalyScheduler(service)
    scheduler.start()
    try:
        deadline = time.monotonic() + 30
        while scheduler.ticks < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.ticks == 1
        late = datetime.now(UTC) - timedelta(seconds=5)  # the thread woke 5 s after the tick was due
        scheduler._scheduler.modify_job("infer", next_run_time=late)
        while scheduler.ticks < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.ticks == 2
    finally:
        scheduler.shutdown()
