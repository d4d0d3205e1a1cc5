"""Training-loop metrics: per-rank step time, throughput and progress, pushed to a Pushgateway or served.

A training loop uses it like this::

    metrics = TrainingMetrics("llama-70b-pretrain", namespace="research")
    for batch in data:
        with metrics.step_timer(rank=rank) as step:
            loss = train_step(batch)  # forward + backward
            step.compute_done()       # optional: the rest of the step waits on the all-reduce
            metrics.report(samples=len(batch), tokens=batch.numel(), loss=float(loss))
        metrics.push("http://pushgateway:9091")   # or metrics.serve(rank, port) once

In synchronous data-parallel training every rank's step takes as long as the slowest rank's, so a straggler
shows in ``gpuwarden_training_compute_seconds`` (its own compute is longer), and a hung rank stalls the whole
job: ``gpuwarden_training_last_progress_timestamp_seconds`` stops moving on every rank.

``SimTrainingAdapter`` makes the simulated fleet's training jobs emit the same metrics through the same API.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, push_to_gateway, start_http_server

from gpuwarden.clock import Clock, SystemClock
from gpuwarden.sim import Fleet

logger = logging.getLogger(__name__)

STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class RankMetrics:
    """The metrics of one rank, in a registry of their own so each rank pushes its own group."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.registry = CollectorRegistry()
        r, labels = self.registry, ["rank"]
        value = str(rank)
        self.step_seconds = Histogram(
            "gpuwarden_training_step_duration_seconds",
            "Wall time of training steps.",
            labels,
            buckets=STEP_BUCKETS,
            registry=r,
        ).labels(value)
        self.last_step_seconds = Gauge(
            "gpuwarden_training_last_step_duration_seconds", "Wall time of the last step.", labels, registry=r
        ).labels(value)
        self.compute_seconds = Gauge(
            "gpuwarden_training_compute_seconds",
            "Compute time of this rank in its last step (before waiting on the others); +Inf while hung.",
            labels,
            registry=r,
        ).labels(value)
        self.steps = Counter("gpuwarden_training_steps", "Steps completed.", labels, registry=r).labels(value)
        self.samples = Counter("gpuwarden_training_samples", "Samples processed.", labels, registry=r).labels(
            value
        )
        self.tokens = Counter("gpuwarden_training_tokens", "Tokens processed.", labels, registry=r).labels(
            value
        )
        self.samples_per_second = Gauge(
            "gpuwarden_training_samples_per_second",
            "Samples per second in the last step.",
            labels,
            registry=r,
        ).labels(value)
        self.tokens_per_second = Gauge(
            "gpuwarden_training_tokens_per_second", "Tokens per second in the last step.", labels, registry=r
        ).labels(value)
        self.loss = Gauge(
            "gpuwarden_training_loss", "Loss reported for the last step.", labels, registry=r
        ).labels(value)
        self.last_progress = Gauge(
            "gpuwarden_training_last_progress_timestamp_seconds",
            "When this rank last finished a step.",
            labels,
            registry=r,
        ).labels(value)
        self.step_started = Gauge(
            "gpuwarden_training_step_started_timestamp_seconds",
            "When this rank began its current step.",
            labels,
            registry=r,
        ).labels(value)


@dataclass(slots=True)
class _Pending:
    samples: float = 0.0
    tokens: float = 0.0
    loss: float | None = None


@dataclass(slots=True)
class StepTimer:
    """One step in progress; ``compute_done()`` marks the end of this rank's own compute."""

    rank: int
    started: float
    clock: Clock
    compute_seconds: float | None = None
    pending: _Pending = field(default_factory=_Pending)

    def compute_done(self) -> None:
        """The rank's forward/backward is done; what follows is waiting on the collective."""
        self.compute_seconds = self.clock.monotonic() - self.started


class TrainingMetrics:
    """Per-rank training metrics of one job."""

    def __init__(self, job: str, *, namespace: str = "", clock: Clock | None = None) -> None:
        if not job:
            raise ValueError("a training job needs a name")
        self.job = job
        self.namespace = namespace
        self.clock = clock or SystemClock()
        self.push_failures = 0
        self._ranks: dict[int, RankMetrics] = {}
        self._open: dict[int, StepTimer] = {}
        self._last_step: dict[int, float] = {}
        self._last_rank: int | None = None
        self._lock = threading.Lock()

    def rank(self, rank: int) -> RankMetrics:
        """The metrics of ``rank``, created on first use."""
        if rank < 0:
            raise ValueError(f"rank must be >= 0, got {rank}")
        with self._lock:
            found = self._ranks.get(rank)
            if found is None:
                found = self._ranks[rank] = RankMetrics(rank)
            return found

    def ranks(self) -> list[int]:
        """Ranks seen so far."""
        with self._lock:
            return sorted(self._ranks)

    @contextmanager
    def step_timer(self, *, rank: int) -> Iterator[StepTimer]:
        """Time one training step of ``rank``; a step that raises is not counted as progress."""
        m = self.rank(rank)
        timer = StepTimer(rank, self.clock.monotonic(), self.clock)
        m.step_started.set(self.clock.time())
        self._open[rank] = timer
        self._last_rank = rank
        try:
            yield timer
        finally:
            self._open.pop(rank, None)
        self.record_step(
            rank=rank,
            seconds=self.clock.monotonic() - timer.started,
            end_time=self.clock.time(),
            compute_seconds=timer.compute_seconds,
        )
        self._apply(rank, timer.pending)

    def record_step(
        self,
        *,
        rank: int,
        seconds: float,
        end_time: float,
        compute_seconds: float | None = None,
        steps: int = 1,
    ) -> None:
        """Record ``steps`` finished steps of ``seconds`` each, the last ending at ``end_time``."""
        m = self.rank(rank)
        for _ in range(steps):
            m.step_seconds.observe(seconds)
        m.steps.inc(steps)
        m.last_step_seconds.set(seconds)
        m.last_progress.set(end_time)
        if compute_seconds is not None:
            m.compute_seconds.set(compute_seconds)
        self._last_step[rank] = seconds * steps  # reports after a catch-up cover all of them
        self._last_rank = rank

    def report(
        self, *, samples: float = 0, tokens: float = 0, loss: float | None = None, rank: int | None = None
    ) -> None:
        """Samples, tokens and loss of the current step (inside ``step_timer``) or of the last one."""
        which = self._last_rank if rank is None else rank
        if which is None:
            raise ValueError("report() before any step: pass rank= or call it inside step_timer")
        open_step = self._open.get(which)
        if open_step is not None:
            open_step.pending.samples += samples
            open_step.pending.tokens += tokens
            if loss is not None:
                open_step.pending.loss = loss
            return
        self._apply(which, _Pending(samples, tokens, loss))

    def _apply(self, rank: int, pending: _Pending) -> None:
        m = self.rank(rank)
        seconds = self._last_step.get(rank, 0.0)
        if pending.samples:
            m.samples.inc(pending.samples)
            if seconds > 0:
                m.samples_per_second.set(pending.samples / seconds)
        if pending.tokens:
            m.tokens.inc(pending.tokens)
            if seconds > 0:
                m.tokens_per_second.set(pending.tokens / seconds)
        if pending.loss is not None:
            m.loss.set(pending.loss)

    def grouping_key(self, rank: int) -> dict[str, str]:
        """The Pushgateway group of one rank (the job name is the ``job`` label)."""
        key = {"rank": str(rank)}
        if self.namespace:
            key["namespace"] = self.namespace
        return key

    def push(self, gateway: str, *, timeout: float = 5.0) -> bool:
        """Push every rank's group to a Pushgateway; a failure is logged and counted, never raised.

        A training loop must not die because the metrics sink is down.
        """
        ok = True
        for rank in self.ranks():
            try:
                push_to_gateway(
                    gateway,
                    job=self.job,
                    registry=self.rank(rank).registry,
                    grouping_key=self.grouping_key(rank),
                    timeout=timeout,
                )
            except OSError as exc:  # URLError and HTTPError are OSErrors
                ok = False
                self.push_failures += 1
                logger.warning(
                    "training metrics push failed", extra={"job": self.job, "rank": rank, "error": str(exc)}
                )
        return ok

    def serve(self, rank: int, port: int, addr: str = "127.0.0.1") -> None:
        """Serve one rank's metrics on ``addr:port`` (for scrape-based setups) from a daemon thread."""
        start_http_server(port, addr=addr, registry=self.rank(rank).registry)


class SimTrainingAdapter:
    """Makes the simulated fleet's training jobs report through ``TrainingMetrics``, as real loops do."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.jobs: dict[str, TrainingMetrics] = {}
        self._steps_seen: dict[str, int] = {}

    def sync(self) -> None:
        """Bring every job's metrics up to the fleet's present state."""
        for job in self.fleet.training_jobs():
            metrics = self.jobs.get(job.name)
            if metrics is None:
                metrics = self.jobs[job.name] = TrainingMetrics(
                    job.name, namespace=job.namespace, clock=self.fleet.clock
                )
                for rank in job.ranks:
                    metrics.rank(rank).last_progress.set(job.last_progress_time(rank))
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

    def push(self, gateway: str, *, timeout: float = 5.0) -> bool:
        """Push every job; True when all pushes succeeded."""
        results = [m.push(gateway, timeout=timeout) for m in self.jobs.values()]
        return all(results)
