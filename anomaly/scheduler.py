"""``fit_every`` / ``infer_every`` on APScheduler's ``BackgroundScheduler``.

The job functions are plain methods (``infer_job``, ``fit_job``, ``save_job``) so tests drive them with a
fake clock without waiting; the scheduler only decides when they run. Each job is a loop boundary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler

from anomaly.service import AnomalyService
from anomaly.snapshot import Snapshot, save_snapshot

logger = logging.getLogger(__name__)
_SKIPPED = "maximum number of running instances"
# Copies of the state made while ticks run, before one is made with the ticks held (``capture``): a tick lands
# in at most one of them at ``infer_every_seconds`` 30 s (a copy of 10,000 GPUs takes 0.6-3.4 s).
_COPIES_WHILE_TICKING = 3


class _NoSkipWarnings(logging.Filter):
    """Drops APScheduler's warning for each skipped run: ``AnomalyScheduler`` says when skipping starts
    and when it ends instead of once a tick for the whole of a slow read."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _SKIPPED not in str(record.msg)


class AnomalyScheduler:
    """Runs a service's infer and fit jobs on intervals; one tick at a time."""

    def __init__(
        self,
        service: AnomalyService,
        after_infer: Callable[[], object] | None = None,
        state_file: Path | None = None,
    ) -> None:
        """``after_infer`` runs after each tick, in the same job (the alert forwarder's flush); the state is
        saved to ``state_file`` every ``state_save_seconds`` and at ``shutdown`` (None: never)."""
        self.service = service
        self.after_infer = after_infer
        self.state_file = state_file
        self.saves = 0
        self._lock = threading.Lock()
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self.ticks = 0
        self.fits = 0
        self.failures = 0
        self.skipped = 0
        self._skipping = 0
        self._fitting = False  # a refit holds the lock: ticks due meanwhile wait for it, not for a read
        self._after = False  # the tick's ``after_infer`` runs (the alerts' post): a slow receiver, not a read
        self._changes = 0  # jobs begun that change the service (under the lock): a copy they missed is torn
        self.held_seconds = 0.0  # how long the last save held the ticks back (``capture``)
        self.copies = 0  # the copies of the state the last save made (more than one: a tick began during one)
        sched_logger = logging.getLogger("apscheduler.scheduler")
        if not any(isinstance(f, _NoSkipWarnings) for f in sched_logger.filters):
            sched_logger.addFilter(_NoSkipWarnings())

    def tick_skipped(self) -> None:
        """A tick was due while the last one still ran: one warning when ticks start being skipped."""
        self.skipped += 1
        self._skipping += 1
        if self._skipping == 1:
            if self._fitting:
                what = "the models' refit (fit_every_seconds) is still running"
            elif self._after:
                what = "the previous tick is still posting its alerts (a receiver slow to answer?)"
            else:
                what = "the previous tick is still running (a slow read?)"
            logger.warning("anomaly tick skipped: %s; skipping ticks until it ends", what)

    def tick_ran(self) -> None:
        """A tick ran: one line when it ends a run of skipped ticks."""
        if self._skipping:
            logger.warning("anomaly ticks resumed after %d skipped", self._skipping)
            self._skipping = 0

    def _on_event(self, event: JobEvent) -> None:
        if event.job_id != "infer":
            return
        if event.code == EVENT_JOB_MAX_INSTANCES:
            self.tick_skipped()
        else:
            self.tick_ran()

    def infer_job(self) -> None:
        """One scoring tick; never raises."""
        with self._lock:
            self._changes += 1
            try:
                self.service.infer()
                self.ticks += 1
                if self.after_infer is not None:
                    self._after = True
                    try:
                        self.after_infer()
                    finally:
                        self._after = False
            except Exception:  # loop boundary
                self.failures += 1
                logger.exception("anomaly tick failed")

    def fit_job(self) -> None:
        """Refit the models; never raises."""
        with self._lock:
            self._changes += 1
            self._fitting = True
            try:
                self.service.fit()
                self.fits += 1
            except Exception:  # loop boundary
                self.failures += 1
                logger.exception("anomaly fit failed")
            finally:
                self._fitting = False

    def save_job(self) -> None:
        """Save the service's state to ``state_file``; never raises. The ticks wait neither while the state
        is copied (``capture``) nor while it is written."""
        if self.state_file is None:
            return
        try:
            snapshot = self.capture()
            if save_snapshot(self.state_file, snapshot):
                self.saves += 1
        except Exception:  # loop boundary
            self.failures += 1
            logger.exception("anomaly state save failed", extra={"state_file": str(self.state_file)})

    def capture(self) -> Snapshot:
        """The service's state of one instant between ticks (``AnomalyService.snapshot``), copied while the
        ticks run: a copy that a tick or a refit began during is dropped and made again, and after
        ``_COPIES_WHILE_TICKING`` such copies one is made with the ticks held. Copied with the ticks held,
        10,000 GPUs' state held a tick back 0.6-3.7 s (benchmarks/bench_snapshot.py); ``held_seconds`` says
        how long this one held them."""
        self.held_seconds, self.copies = 0.0, 0
        for _ in range(_COPIES_WHILE_TICKING):
            self.copies += 1
            snapshot = self._copy_while_ticking()
            if snapshot is not None:
                return snapshot
        logger.info(
            "anomaly state copied with the ticks held: a tick began during each of the %d copies before",
            _COPIES_WHILE_TICKING,
        )
        self.copies += 1
        with self._holding():
            return self.service.snapshot()

    def _copy_while_ticking(self) -> Snapshot | None:
        """A copy of the service's state made without the lock; None when a job that changes the service
        began meanwhile (the copy may hold parts from before it and parts from after)."""
        with self._holding():  # a running tick ends first
            begun = self._changes
        try:
            snapshot = self.service.snapshot()
        except Exception:  # a structure a tick changed under the copy: torn, made again
            if self._changes == begun:
                raise
            return None
        with self._holding():  # a tick begun meanwhile has ended: ``_changes`` counts it
            return snapshot if self._changes == begun else None

    @contextmanager
    def _holding(self) -> Iterator[None]:
        """The lock, for a save: the time it is held is added to ``held_seconds``."""
        with self._lock:
            start = time.perf_counter()
            try:
                yield
            finally:
                self.held_seconds += time.perf_counter() - start

    def start(self) -> None:
        """Schedule the jobs (no overlap, missed runs coalesced, a late one run all the same; the first tick
        at once, the saves half a tick off the ticks) and start."""
        cfg = self.service.cfg
        jobs: list[tuple[Callable[[], None], str, float]] = [
            (self.infer_job, "infer", cfg.infer_every_seconds),
            (self.fit_job, "fit", cfg.fit_every_seconds),
        ]
        if self.state_file is not None:
            jobs.append((self.save_job, "save", cfg.state_save_seconds))
        # The saves half a tick off the ticks: a copy of the state that a tick begins during is made again
        # (``capture``), and saves every 300 s on the 30 s ticks' grid each began with one.
        now = datetime.now(UTC)
        save = timedelta(seconds=cfg.state_save_seconds + cfg.infer_every_seconds / 2)
        first = {"infer": now, "save": now + save}
        for job, name, seconds in jobs:
            when = {"next_run_time": first[name]} if name in first else {}
            # misfire_grace_time None: a run the scheduler's thread wakes for late (a busy machine, a long
            # garbage collection) still runs; APScheduler's default of 1 s dropped it with its own warning.
            self._scheduler.add_job(
                job,
                "interval",
                seconds=seconds,
                id=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                **when,
            )
        self._scheduler.add_listener(
            self._on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR
        )
        self._scheduler.start()

    def shutdown(self) -> None:
        """Stop the scheduler, waiting for a running job, then save the state a last time (a graceful stop
        loses nothing)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        self.save_job()
