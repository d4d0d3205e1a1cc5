"""The simulated fleet's training jobs reporting through ``TrainingMetrics``, as real training loops do.

``SimTrainingAdapter`` turns the fleet's state into per-rank step records; ``SimTrainingPublisher`` syncs
and pushes it every ``tracing.push_interval_seconds`` from a daemon thread of the process that runs the
fleet (``gpuwarden exporter --simulate`` with ``tracing.pushgateway_url`` set). A straggler GPU then shows
on the Pushgateway as one rank with a long ``gpuwarden_training_compute_seconds``, a hung GPU as a job whose
``gpuwarden_training_last_progress_timestamp_seconds`` stops on every rank.
"""

from __future__ import annotations

import logging
import math
import threading

from prometheus_client import Metric

from exporters import fields as fams
from exporters.collected import FamilyBuilder
from exporters.training import TrainingMetrics
from exporters.training_export import (
    DEFAULT_PUSH_TIMEOUT_SECONDS,
    MAX_BACKOFF_SECONDS,
    PushStats,
    pushgateway_url,
)
from gpuwarden.sim import Fleet

logger = logging.getLogger(__name__)


class SimTrainingAdapter:
    """Makes the simulated fleet's training jobs report through ``TrainingMetrics``, as real loops do."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        pushgateway: str | None = None,
        push_timeout: float = DEFAULT_PUSH_TIMEOUT_SECONDS,
    ) -> None:
        self.fleet = fleet
        self.pushgateway = None if pushgateway is None else pushgateway_url(pushgateway)  # checked once
        self.push_timeout = push_timeout
        self.stats = PushStats(fleet.clock.time)  # every job's pushes, for the exporter's own /metrics
        self.jobs: dict[str, TrainingMetrics] = {}
        self._steps_seen: dict[str, int] = {}

    def sync(self) -> None:
        """Bring every job's metrics up to the fleet's present state."""
        for job in self.fleet.training_jobs():
            metrics = self.jobs.get(job.name)
            if metrics is None:
                metrics = self.jobs[job.name] = TrainingMetrics(
                    job.name,
                    namespace=job.namespace,
                    clock=self.fleet.clock,
                    pushgateway=self.pushgateway,
                    push_timeout=self.push_timeout,
                    push_stats=self.stats,
                )
                for rank in job.ranks:
                    started = job.last_progress_time(rank)  # the job's start: its first step begins
                    metrics.rank(rank).last_progress.set(started)
                    metrics.rank(rank).step_started.set(started)
            done = job.steps_completed
            new = done - self._steps_seen.get(job.name, 0)
            self._steps_seen[job.name] = done
            world = len(job.ranks)
            for rank in job.ranks:
                compute = job.compute_seconds(rank)
                if new > 0:
                    seconds = job.step_seconds(rank)
                    seconds = job.base_step_seconds if math.isinf(seconds) else seconds
                    metrics.record_step(
                        rank=rank,
                        seconds=seconds,
                        end_time=job.last_progress_time(rank),
                        compute_seconds=compute,
                        steps=new,
                    )
                    metrics.report(
                        rank=rank,
                        samples=job.samples_per_step * new / world,
                        tokens=job.tokens_per_step * new / world,
                    )
                elif math.isinf(compute):
                    metrics.rank(rank).compute_seconds.set(compute)

    def push(self) -> bool:
        """Push every job now, in this thread; True when all pushes succeeded (False without a gateway)."""
        results = [m.push_now() for m in self.jobs.values()]
        return bool(results) and all(results)


class SimTrainingPublisher:
    """Syncs a simulated fleet's training jobs and pushes them every ``interval`` seconds, in a thread.

    After a failed push it waits longer (doubling, up to ``MAX_BACKOFF_SECONDS``) before the next try.
    """

    def __init__(
        self,
        fleet: Fleet,
        pushgateway: str,
        *,
        interval: float,
        push_timeout: float = DEFAULT_PUSH_TIMEOUT_SECONDS,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"push interval must be > 0 seconds, got {interval}")
        # Built here so that a bad URL is an error before anything starts.
        self.adapter = SimTrainingAdapter(fleet, pushgateway=pushgateway, push_timeout=push_timeout)
        self.adapter.sync()
        self.interval = interval
        self.rounds = 0
        self.failed_rounds = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool:
        """Sync and push once; True when every push succeeded. Never raises."""
        try:
            self.adapter.sync()
            ok = self.adapter.push()
        except Exception:  # a loop boundary: the next round tries again
            logger.exception("simulated training metrics round failed")
            ok = False
        self.rounds += 1
        self.failed_rounds += 0 if ok else 1
        return ok

    def families(self) -> list[Metric]:
        """The pushes as the exporter's own families: a push that never arrives shows nowhere else."""
        pushes, failures, last_success = self.adapter.stats.snapshot()
        out = FamilyBuilder()
        out.add(fams.TRAINING_PUSHES, {}, pushes)
        for reason, count in sorted(failures.items()):
            out.add(fams.TRAINING_PUSH_FAILURES, {"reason": reason}, count)
        if last_success is not None:
            out.add(fams.TRAINING_LAST_PUSH_SUCCESS, {}, last_success)
        return out.families()

    def next_delay(self, ok: bool, previous: float) -> float:
        """Seconds until the next round: the interval, or a doubling wait after failures."""
        if ok:
            return self.interval
        return min(max(MAX_BACKOFF_SECONDS, self.interval), max(self.interval, previous * 2))

    def _run(self) -> None:
        delay = self.interval
        while not self._stop.is_set():
            delay = self.next_delay(self.run_once(), delay)
            self._stop.wait(delay)

    def start(self) -> None:
        """Push from a daemon thread until ``stop()``."""
        self._thread = threading.Thread(target=self._run, name="sim-training-push", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the round in progress (bounded by the push timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.adapter.push_timeout * 2)
