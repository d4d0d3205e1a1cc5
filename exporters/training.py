"""Training-loop metrics: per-rank step time, throughput and progress, pushed to a Pushgateway or served.

A training loop uses it like this::

    metrics = TrainingMetrics(
        "llama-70b-pretrain", namespace="research", rank=rank, pushgateway="http://pushgateway:9091"
    )
    for batch in data:
        with metrics.step_timer() as step:
            loss = train_step(batch)  # forward + backward
            step.compute_done()       # optional: the rest of the step waits on the all-reduce
            metrics.report(samples=len(batch), tokens=batch.numel(), loss=float(loss))
        metrics.push()                # returns at once: a background thread pushes the latest state
    metrics.close()                   # one last push; or serve(rank, port) once for scrape-based setups

Setup and loop fail differently. Setup (the constructor, ``rank()``, ``serve()``) raises on anything wrong:
an unusable Pushgateway URL, a rank that is not an int >= 0 (``TypeError`` for a bool, float or string,
``ValueError`` for a negative one), a port in use. Declare every rank this process reports for there (the
``rank=`` of the constructor, or ``rank(r)``) and its type is checked before the first step. The loop
(``step_timer``, ``report``, ``record_step``, ``push``) never raises: a bad value (negative, NaN or infinite
samples, tokens or durations, one whose read raises as a tensor's does after a CUDA error, a rank that is
not an int >= 0, a step timer nested in an open one of the same rank) is dropped, logged (warning the first
time per rank and reason) and counted in ``gpuwarden_training_rejected_values_total{rank,reason}``; a failed
push is logged and counted in ``gpuwarden_training_push_failures_total``. A NaN or infinite loss is kept: a
diverging run is news.

In synchronous data-parallel training every rank's step takes as long as the slowest rank's, so a straggler
shows in ``gpuwarden_training_compute_seconds`` (its own compute is longer), and a hung rank stalls the whole
job: ``gpuwarden_training_last_progress_timestamp_seconds`` stops moving on every rank. A gauge has no
sample until its value is known (no step yet: no last-progress time), never a 0 that reads as 1970.
The Pushgateway keeps a group after its job ends, so ``close()`` marks a run that ended cleanly
(``gpuwarden_training_finished_timestamp_seconds``): leave finished ranks out of a stall or hang query with
``unless on (job, namespace, rank) gpuwarden_training_finished_timestamp_seconds``.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from exporters.training_export import (
    DEFAULT_PUSH_TIMEOUT_SECONDS,
    BackgroundPusher,
    PushStats,
    serve_registry,
)
from exporters.training_ranks import (
    INVALID_RANK,
    REJECT_REASONS,
    STEP_BUCKETS,
    VALUE_REASONS,
    RankMetrics,
    checked_rank,
)
from exporters.training_values import error_text, float_value, number_value, shown_value, whole_count
from gpuwarden.clock import Clock, SystemClock

logger = logging.getLogger(__name__)

# What other modules and the tests import from here, wherever it is defined.
__all__ = [
    "INVALID_RANK",
    "REJECT_REASONS",
    "STEP_BUCKETS",
    "VALUE_REASONS",
    "RankMetrics",
    "StepTimer",
    "TrainingMetrics",
    "checked_rank",
]


# Every TrainingMetrics, for a child forked from its process: no thread survives a fork (the pusher's,
# serve()'s), and a lock another thread held at that moment stays held in the child.
_LIVE: weakref.WeakSet[TrainingMetrics] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for metrics in list(_LIVE):
        metrics._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(slots=True)
class _Pending:
    samples: float = 0.0
    tokens: float = 0.0
    loss: float | None = None


@dataclass(slots=True)
class StepTimer:
    """One step in progress; ``compute_done()`` marks the end of this rank's own compute.

    ``refused`` is True for a timer that records nothing (nested in an open step of its rank, or with no
    valid rank): the block still runs.
    """

    rank: int | None
    started: float
    clock: Clock
    compute_seconds: float | None = None
    refused: bool = False
    pending: _Pending = field(default_factory=_Pending)

    def compute_done(self) -> None:
        """The rank's forward/backward is done; what follows is waiting on the collective."""
        self.compute_seconds = self.clock.monotonic() - self.started


class TrainingMetrics:
    """Per-rank training metrics of one job."""

    def __init__(
        self,
        job: str,
        *,
        namespace: str = "",
        rank: int | None = None,
        pushgateway: str | None = None,
        push_timeout: float = DEFAULT_PUSH_TIMEOUT_SECONDS,
        clock: Clock | None = None,
        push_stats: PushStats | None = None,
    ) -> None:
        if not isinstance(job, str) or not job.strip():  # " " made a group no query would think to name
            raise ValueError(f"job must name the training job (the Pushgateway's job label), got {job!r}")
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a string, got {type(namespace).__name__}")
        self.job = job
        self.namespace = namespace
        self.clock = clock or SystemClock()
        self.default_rank = None if rank is None else checked_rank(rank)
        self.rejected: Tally[str] = Tally()  # every drop, by reason, INVALID_RANK included
        self._ranks: dict[int, RankMetrics] = {}
        self._open: dict[int, StepTimer] = {}
        self._last_step: dict[int, float] = {}
        self._last_rank: int | None = self.default_rank
        # The rank of this thread's open or last step: a process that runs a thread per rank reports each
        # rank's samples inside its own step, where the last step begun by any thread is another rank's.
        self._thread_rank = threading.local()
        self._stepped: set[int] = set()  # ranks whose first step began (its start pushed at once)
        self._warned: set[tuple[int | None, str]] = set()
        self._stops: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._inherited: set[int] = set()  # in a forked child, the parent's ranks this process has not used
        self._pusher = (
            None
            if pushgateway is None
            else BackgroundPusher(
                pushgateway,
                job,
                self._groups,
                timeout=push_timeout,
                on_failure=self._push_failed,
                stats=push_stats,
            )
        )
        if self.default_rank is not None:
            self.rank(self.default_rank)
        _LIVE.add(self)

    def _after_fork(self) -> None:
        """In a child forked from this process: the parent's ranks stay the parent's to push and mark finished
        until the child uses one (its copy, pushed, set the parent's group back, and its close() marked a rank
        still running finished); the pusher starts its own thread; the parent's servers are left alone
        (stopping one from here waited for ever on a thread that is not in this process)."""
        self._lock = threading.Lock()
        for metrics in self._ranks.values():
            metrics.step_seconds.after_fork()
        self._inherited = set(self._ranks)
        self._open, self._stepped, self._stops = {}, set(), []
        if self._pusher is not None:
            self._pusher.after_fork()

    @property
    def pushgateway(self) -> str | None:
        """The Pushgateway URL pushes go to (normalised; a ``user:password@`` of the URL given is sent as an
        ``Authorization`` header instead), or None."""
        return None if self._pusher is None else self._pusher.gateway

    @property
    def push_failures(self) -> int:
        """Groups whose push failed so far."""
        return 0 if self._pusher is None else self._pusher.failures

    def rank(self, rank: int) -> RankMetrics:
        """The metrics of ``rank``, created on first use (setup: raises on a rank that is not an int >= 0)."""
        rank = checked_rank(rank)
        with self._lock:
            self._inherited.discard(rank)
            found = self._ranks.get(rank)
            if found is None:
                found = self._ranks[rank] = RankMetrics(rank)
            return found

    def ranks(self) -> list[int]:
        """Ranks seen so far."""
        with self._lock:
            return sorted(self._ranks)

    def _reject(self, rank: int | None, reason: str, what: str) -> None:
        reason, _, error = reason.partition(": ")  # "unreadable: RuntimeError: CUDA error: ..."
        what = f"{what}: {error}" if error else what
        self.rejected[reason] += 1
        # A call that names no valid rank is counted on the process's rank (its rank=, else the lowest it
        # has, e.g. serve()'s): its served or pushed group read 0 drops while every step was dropped.
        counted = rank if rank is not None else self.default_rank
        if counted is None:
            counted = min(self.ranks(), default=None)  # none yet: the log and self.rejected only
        if counted is not None:
            self.rank(counted).rejected[reason].inc()
        first = (rank, reason) not in self._warned
        self._warned.add((rank, reason))
        logger.log(
            logging.WARNING if first else logging.DEBUG,
            "training metrics dropped %s (%s)",
            what,
            reason,
            extra={"job": self.job, "rank": rank, "reason": reason},
        )

    def _loop_rank(self, rank: object, what: str) -> int | None:
        """The rank a loop call is about, or None (counted) when it names none or an invalid one."""
        if rank is None:
            if self.default_rank is None:
                self._reject(None, "no_rank", f"{what} without rank= (give TrainingMetrics a rank=)")
            return self.default_rank
        try:
            which = checked_rank(rank)
        except (TypeError, ValueError) as exc:
            self._reject(None, INVALID_RANK, f"{what}: {exc}")
            return None
        except Exception as exc:  # noqa: BLE001 - a tensor rank whose read failed: never kill the loop
            self._reject(
                None, INVALID_RANK, f"{what}: rank {shown_value(rank)} unreadable: {error_text(exc)}"
            )
            return None
        self.rank(which)
        return which

    @contextmanager
    def step_timer(self, *, rank: int | None = None) -> Iterator[StepTimer]:
        """Time one training step of ``rank`` (default: the job's rank); a step that raises is not progress.

        A rank's first step is pushed as it begins (with a Pushgateway): a rank hung in it shows as hung.

        A timer opened while the same rank has one open is refused: it records nothing, the outer step
        counts once.
        """
        which = self._loop_rank(rank, "step_timer")
        timer = StepTimer(which, self.clock.monotonic(), self.clock, refused=which is None)
        if which is not None:
            with self._lock:
                timer.refused = which in self._open
                if not timer.refused:
                    self._open[which] = timer
            if timer.refused:
                self._reject(which, "nested_step", f"a step_timer nested in rank {which}'s open step")
        if timer.refused or which is None:
            yield timer
            return
        self.rank(which).step_started.set(self.clock.time())
        self._last_rank = self._thread_rank.rank = which
        if self._pusher is not None and which not in self._stepped:
            # The loop pushes after its steps: a rank hung in its first one (the first all-reduce, NCCL's
            # set-up) had pushed nothing, no group on the gateway for the hung-step query to find.
            self._stepped.add(which)
            self._pusher.request()
        try:
            yield timer
        finally:
            with self._lock:
                self._open.pop(which, None)
        self.record_step(
            rank=which,
            seconds=self.clock.monotonic() - timer.started,
            end_time=self.clock.time(),
            compute_seconds=timer.compute_seconds,
        )
        self._apply(which, timer.pending)

    def record_step(
        self,
        *,
        rank: int | None = None,
        seconds: float,
        end_time: float,
        compute_seconds: float | None = None,
        steps: int = 1,
    ) -> bool:
        """Record ``steps`` finished steps of ``seconds`` each, the last ending at ``end_time``.

        False (and counted) when a value is unusable: the record is dropped whole.
        """
        which = self._loop_rank(rank, "record_step")
        if which is None:
            return False
        count, why = whole_count(steps)
        if count is None or count < 1:
            self._reject(which, why, f"record_step(steps={shown_value(steps)})")
            return False
        given = {"seconds": seconds, "end_time": end_time}
        if compute_seconds is not None:
            given["compute_seconds"] = compute_seconds
        checked: dict[str, float] = {}
        for name, raw in given.items():
            number, reason = number_value(raw, allow_inf=name == "compute_seconds")  # +Inf compute: hung
            if reason is not None:
                self._reject(which, reason, f"record_step({name}={shown_value(raw)})")
                return False
            checked[name] = number
        seconds, end_time = checked["seconds"], checked["end_time"]
        m = self.rank(which)
        m.step_seconds.observe(seconds, count)
        m.steps.inc(count)
        m.last_step_seconds.set(seconds)
        m.last_progress.set(end_time)
        m.step_started.set(end_time)  # the next step starts when this one ends, until step_timer says
        if "compute_seconds" in checked:
            m.compute_seconds.set(checked["compute_seconds"])
        self._last_step[which] = seconds * count  # reports after a catch-up cover all of them
        self._last_rank = self._thread_rank.rank = which
        return True

    def report(
        self,
        *,
        samples: float = 0,
        tokens: float = 0,
        loss: float | None = None,
        rank: int | None = None,
    ) -> None:
        """Samples, tokens and loss of the current step (inside ``step_timer``) or of the last one: this
        thread's, or where this thread has stepped none, the last step of any."""
        last = getattr(self._thread_rank, "rank", self._last_rank)
        if rank is None and last is None:
            self._reject(None, "no_rank", "report() before any step and without rank=")
            return
        which = last if rank is None else self._loop_rank(rank, "report")
        if which is None:
            return
        pending = _Pending()
        for name, given in (("samples", samples), ("tokens", tokens)):
            number, reason = number_value(given)
            if reason is not None:
                self._reject(which, reason, f"report({name}={shown_value(given)})")
            setattr(pending, name, number)
        if loss is not None:
            value, reason = float_value(loss)
            if reason is not None:
                self._reject(which, reason, f"report(loss={shown_value(loss)})")
            else:  # NaN, inf and negative losses are kept: a diverging run is worth seeing
                pending.loss = value
        with self._lock:
            open_step = self._open.get(which)
            if open_step is not None:
                open_step.pending.samples += pending.samples
                open_step.pending.tokens += pending.tokens
                if pending.loss is not None:
                    open_step.pending.loss = pending.loss
                return
        self._apply(which, pending)

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

    def _groups(self) -> list[tuple[dict[str, str], CollectorRegistry]]:
        with self._lock:
            return [
                (self.grouping_key(r), m.registry)
                for r, m in sorted(self._ranks.items())
                if r not in self._inherited
            ]

    def _push_failed(self, key: dict[str, str]) -> None:
        self.rank(int(key["rank"])).push_failures.inc()

    def push(self) -> bool:
        """Ask the background thread to push every rank's group; returns at once and never raises.

        False when no Pushgateway was configured, or after ``close()``, which made the run's last push
        (each logged once).
        """
        if self._pusher is None:
            self._warn_once("no_gateway", "training metrics push() without a pushgateway=")
            return False
        if not self._pusher.request():
            self._warn_once("closed", "training metrics push() after close(): not pushed, the run was closed")
            return False
        return True

    def _warn_once(self, what: str, message: str) -> None:
        if (None, what) not in self._warned:
            self._warned.add((None, what))
            logger.warning(message, extra={"job": self.job})

    def push_now(self) -> bool:
        """Push every rank's group in this thread (for callers that are not a training loop); never raises."""
        return False if self._pusher is None else self._pusher.push_now()

    def flush(self, timeout: float | None = None) -> bool:
        """Push now through the background thread and wait for it; True when that push succeeded."""
        if not self.push() or self._pusher is None:
            return False
        return self._pusher.wait_idle(timeout) and bool(self._pusher.last_ok)

    def close(self, timeout: float | None = None, *, finished: bool = True) -> bool:
        """One last push of what changed since the last one, then stop pushing and serving.

        ``finished`` marks every rank's run as ended (``gpuwarden_training_finished_timestamp_seconds``): the
        Pushgateway keeps a group after its job ends, and a finished run's last progress would otherwise
        read as a stall for ever. ``finished=False`` (or leaving ``with`` by an exception) leaves it out.
        Bounded by ``timeout`` (default: two push timeouts); False if the pusher did not finish in time.
        """
        if finished:
            now = self.clock.time()
            with self._lock:
                own = [m for r, m in self._ranks.items() if r not in self._inherited]
            for metrics in own:
                metrics.finished.set(now)
        done = True
        if self._pusher is not None:
            self._pusher.request()
            done = self._pusher.close(timeout)
        for stop in self._stops:
            stop()
        self._stops.clear()
        return done

    def __enter__(self) -> TrainingMetrics:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self.close(finished=kind is None)

    def serve(self, rank: int, port: int, addr: str = "127.0.0.1") -> int:
        """Serve one rank's metrics on ``addr:port`` from a daemon thread; returns the port (0: any free).

        Samples carry ``job`` (and ``namespace`` when set) besides ``rank``, as the Pushgateway groups
        do: scrape with ``honor_labels: true`` so one query covers both modes.
        """
        which = checked_rank(rank)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in 0-65535, got {port!r}")
        labels = {"job": self.job, **({"namespace": self.namespace} if self.namespace else {})}
        bound, stop = serve_registry(self.rank(which).registry, labels, port, addr)
        self._stops.append(stop)
        return bound
