"""What one rank of a training job exports (``RankMetrics``, in a registry of its own: each rank is one
Pushgateway group) and what a rank is (``checked_rank``)."""

from __future__ import annotations

import bisect
import math
import operator
import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# Why a value was dropped: the label values of gpuwarden_training_rejected_values_total.
INVALID_RANK = "invalid_rank"
UNREADABLE = "unreadable"  # reading the value raised: a torch tensor's float() after a CUDA error
VALUE_REASONS = ("negative", "not_finite", "not_a_number", UNREADABLE, "bad_steps", "nested_step")
REJECT_REASONS = (*VALUE_REASONS, "no_rank", INVALID_RANK)  # and calls that named no valid rank


def checked_rank(rank: object) -> int:
    """``rank`` as an int >= 0; ``TypeError`` for a bool, float, string or None, ``ValueError`` if < 0."""
    if isinstance(rank, bool):
        raise TypeError(f"rank must be an int >= 0, got the bool {rank!r}")
    try:
        value = operator.index(rank)  # type: ignore[arg-type]  # int, numpy ints; not 1.5 or "3"
    except TypeError:
        raise TypeError(f"rank must be an int >= 0, got {type(rank).__name__} {rank!r}") from None
    if value < 0:
        raise ValueError(f"rank must be >= 0, got {value}")
    return value


class StepHistogram(Collector):
    """``gpuwarden_training_step_duration_seconds`` of one rank, taking many steps of one duration at once.

    prometheus_client's ``Histogram`` observes one value per call: ``record_step(steps=n)`` looped ``n``
    times, and a loop that passed its global step (a million) instead of the steps since its last record was
    held 4 s per call, hours for larger counts, in a call that must never hold a step."""

    NAME = "gpuwarden_training_step_duration_seconds"
    DOC = "Wall time of training steps."

    def __init__(self, rank: str) -> None:
        self._rank = rank
        self._lock = threading.Lock()
        self._counts = [0] * (len(STEP_BUCKETS) + 1)  # steps per bucket (not cumulative), +Inf's last
        self._sum = 0.0

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's pusher may have held this one at the fork)."""
        self._lock = threading.Lock()

    def observe(self, seconds: float, count: int = 1) -> None:
        """``count`` steps of ``seconds`` each (a finite number >= 0: the caller checks it)."""
        where = bisect.bisect_left(STEP_BUCKETS, seconds)  # the first bucket whose bound is >= seconds
        with self._lock:
            self._counts[where] += count
            self._sum += seconds * count

    def describe(self) -> Iterator[HistogramMetricFamily]:
        """The family, without its samples: registering reads no state."""
        yield HistogramMetricFamily(self.NAME, self.DOC, labels=["rank"])

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """The rank's buckets (cumulative, as the exposition has them), sum and count."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        buckets: list[tuple[str, float]] = []
        seen = 0
        for bound, count in zip((*STEP_BUCKETS, math.inf), counts, strict=True):
            seen += count
            buckets.append(("+Inf" if math.isinf(bound) else repr(bound), seen))  # le as Histogram writes it
        family = HistogramMetricFamily(self.NAME, self.DOC, labels=["rank"])
        family.add_metric([self._rank], buckets, total)
        yield family


class _LazyGauge:
    """One rank's child of a gauge, exported only once set: an unknown value is absent, never 0."""

    __slots__ = ("_parent", "_rank")

    def __init__(self, parent: Gauge, rank: str) -> None:
        self._parent = parent
        self._rank = rank

    def set(self, value: float) -> None:
        """Set (and from now on export) the value."""
        self._parent.labels(self._rank).set(value)


class RankMetrics:
    """The metrics of one rank, in a registry of their own so each rank pushes its own group."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.registry = CollectorRegistry()
        r, labels, value = self.registry, ["rank"], str(rank)

        def gauge(name: str, doc: str) -> _LazyGauge:
            return _LazyGauge(Gauge(f"gpuwarden_training_{name}", doc, labels, registry=r), value)

        def counter(name: str, doc: str) -> Counter:
            return Counter(f"gpuwarden_training_{name}", doc, labels, registry=r).labels(value)

        self.step_seconds = StepHistogram(value)
        r.register(self.step_seconds)
        self.steps = counter("steps", "Steps completed.")
        self.samples = counter("samples", "Samples processed.")
        self.tokens = counter("tokens", "Tokens processed.")
        self.push_failures = counter("push_failures", "Pushes of this rank's group that failed.")
        rejected = Counter(
            "gpuwarden_training_rejected_values",
            "Values the training loop reported that were dropped, by reason.",
            ["rank", "reason"],
            registry=r,
        )
        self.rejected = {reason: rejected.labels(value, reason) for reason in REJECT_REASONS}
        self.last_step_seconds = gauge("last_step_duration_seconds", "Wall time of the last step.")
        self.compute_seconds = gauge(
            "compute_seconds",
            "Compute time of this rank in its last step (before waiting on the others); +Inf: reported hung.",
        )
        self.samples_per_second = gauge("samples_per_second", "Samples per second in the last step.")
        self.tokens_per_second = gauge("tokens_per_second", "Tokens per second in the last step.")
        self.loss = gauge("loss", "Loss reported for the last step.")
        self.last_progress = gauge("last_progress_timestamp_seconds", "When this rank last finished a step.")
        self.step_started = gauge(
            "step_started_timestamp_seconds",
            "When this rank began its current step (the end of its last step until the next one begins).",
        )
        self.finished = gauge(
            "finished_timestamp_seconds", "When this rank's run ended cleanly (close()): no stall, no hang."
        )
