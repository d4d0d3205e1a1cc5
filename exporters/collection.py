"""The background collection loop: collectors run on worker threads with a deadline; scrapes read a cache.

Each collector (one per NVML instance, so one per simulated node) has its own daemon worker thread. A
tick hands every idle worker a collection and waits up to ``deadline`` seconds of real time (a hung
NVML call blocks a thread, and no Python code can interrupt it). A collector that overruns keeps its
previous values in the exposition, reads ``gpuwarden_exporter_stale 1`` and counts the overrun under the
NVML function it was inside; its worker gets no new work until the hung call returns, so threads never
pile up. Those previous values are served for one tick only (they are then one interval old, as a scrape
between two collections reads them anyway); from the second tick the hang lasts, the host's GPU series are
left out, as for a host where NVML answers nothing, and only its host-wide series and its XIDs (read from
the watcher's ledger, which the hang does not block) stay: a GPU that hangs NVML (one falling off the bus
often does) must not read as healthy at its last temperature, and its XID 79 must show. The other
collectors keep reporting. Timestamps come from the ``Clock``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import Metric
from prometheus_client.samples import Sample

from exporters import fields as fams
from exporters.exposition import EMPTY, Exposition, LabelTexts, merge
from gpuwarden.clock import Clock
from gpuwarden.limits import MAX_INTERVAL_SECONDS as CONFIGURED_MAX_INTERVAL_SECONDS

logger = logging.getLogger(__name__)

# The longest collection interval (and NVML call deadline) the loop takes is the one the configuration and
# --interval take (a week, which the README promises); a longer one is clamped with a warning.
MAX_INTERVAL_SECONDS = CONFIGURED_MAX_INTERVAL_SECONDS
# /healthz reports a stalled loop when no tick ended for this many intervals (plus one deadline).
STALL_INTERVALS = 3
# Ticks a hung collection's previous GPU values are still served: the tick it overran on, no more.
HUNG_TICKS_SERVED = 1


class Collector(Protocol):
    """What the loop runs: ``NvmlCollector`` or anything with the same shape."""

    hostname: str
    current_call: str | None
    # False after a collection in which not one NVML call answered (driver unloaded, node going down).
    nvml_answered: bool

    def collect(self) -> list[Metric]:
        """One full pass; never raises."""
        ...


@dataclass(frozen=True, slots=True)
class _Result:
    families: list[Metric]
    wall: float
    cpu: float
    finished_at: float
    answered: bool = True


class _Worker:
    """A daemon thread running one job at a time (a hung job must not block interpreter exit)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], _Result], Future[_Result]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], _Result]) -> Future[_Result]:
        future: Future[_Result] = Future()
        self._jobs.put((job, future))
        return future

    def _run(self) -> None:
        while True:
            job, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # noqa: BLE001 - handed to the loop, which logs and counts it
                future.set_exception(exc)


@dataclass
class _Source:
    collector: Collector
    worker: _Worker
    families: list[Metric] = field(default_factory=list)
    pending: Future[_Result] | None = None
    overran: bool = False
    hung_ticks: int = 0  # consecutive ticks that found its collection still running past the deadline
    stale: bool = False
    blind: bool = False  # the last collection got not one answer from NVML
    last_success: float | None = None
    wall: float | None = None
    cpu: float | None = None
    overruns: dict[str, int] = field(default_factory=dict)
    failures: int = 0


class CollectionLoop:
    """Runs collectors every ``interval`` seconds (of ``clock``) and keeps the rendered exposition."""

    def __init__(
        self, collectors: Sequence[Collector], *, clock: Clock, interval: float, deadline: float
    ) -> None:
        self._clock = clock
        if not interval <= MAX_INTERVAL_SECONDS:  # also NaN: a sleep that long overflows and kills the thread
            logger.warning("collection interval %s s is clamped to %s s", interval, MAX_INTERVAL_SECONDS)
            interval = MAX_INTERVAL_SECONDS
        self.interval = interval
        self.deadline = min(deadline, MAX_INTERVAL_SECONDS)
        self._sources = [_Source(c, _Worker(f"collect-{c.hostname}")) for c in collectors]
        self._exposition = EMPTY
        self._label_texts = LabelTexts()  # label texts kept from one collection's render to the next
        # More families rendered with every collection (the simulated training pusher's); never raise.
        self.extra_families: list[Callable[[], list[Metric]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.last_tick: float | None = None  # clock.monotonic() at the end of the last tick

    @property
    def exposition(self) -> Exposition:
        """The latest rendered snapshot (what ``/metrics`` serves)."""
        return self._exposition

    def stale_hosts(self) -> list[str]:
        """Hosts whose values are not from the current collection (it overran, failed, or NVML was silent)."""
        return [s.collector.hostname for s in self._sources if s.stale]

    def blind_hosts(self) -> list[str]:
        """Hosts whose last collection got not one answer from NVML."""
        return [s.collector.hostname for s in self._sources if s.blind]

    def stalled_for(self) -> float | None:
        """Seconds since the last tick when that is more than a few intervals (a dead loop), else None."""
        if self.last_tick is None:
            return None
        age = self._clock.monotonic() - self.last_tick
        return age if age > STALL_INTERVALS * self.interval + self.deadline else None

    def _job(self, collector: Collector) -> Callable[[], _Result]:
        def run() -> _Result:
            cpu0, wall0 = time.thread_time(), self._clock.monotonic()
            families = collector.collect()
            return _Result(
                families,
                self._clock.monotonic() - wall0,
                time.thread_time() - cpu0,
                self._clock.time(),
                getattr(collector, "nvml_answered", True),
            )

        return run

    def run_once(self) -> None:
        """One tick: start idle collectors, wait up to the deadline, publish what is known."""
        for src in self._sources:
            if src.pending is None:
                src.pending = src.worker.submit(self._job(src.collector))
                src.overran = False
        pending = [s.pending for s in self._sources if s.pending is not None]
        wait(pending, timeout=self.deadline)
        for src in self._sources:
            self._settle(src)
        self.ticks += 1
        self.last_tick = self._clock.monotonic()
        self._publish()

    def _settle(self, src: _Source) -> None:
        future = src.pending
        if future is None:
            return
        if not future.done():
            src.stale = True
            src.hung_ticks += 1
            if not src.overran:
                src.overran = True
                function = src.collector.current_call or "unknown"
                src.overruns[function] = src.overruns.get(function, 0) + 1
                logger.warning(
                    "collection overran its deadline host=%s function=%s deadline=%s",
                    src.collector.hostname,
                    function,
                    self.deadline,
                )
            return
        src.pending, src.hung_ticks = None, 0
        try:
            result = future.result()
        except Exception:  # the loop boundary: a bug in a collector must not stop the exporter
            logger.exception("collection failed host=%s", src.collector.hostname)
            src.failures += 1
            src.stale = True
            return
        src.families, src.wall, src.cpu = result.families, result.wall, result.cpu
        src.blind = not result.answered
        if src.blind:
            # Nothing was collected: the GPU series are gone (the errors say why), and the host must not
            # read as fresh. The last success stays where it was, so time() - last_success grows.
            src.stale = True
            return
        src.last_success, src.stale = result.finished_at, False

    def _health(self) -> list[Metric]:
        metrics = {f.name: Metric(f.name, f.help, f.kind.value) for f in _HEALTH}
        for src in self._sources:
            host = {"Hostname": src.collector.hostname}

            def add(family: fams.Family, value: float, labels: dict[str, str] = host) -> None:
                metrics[family.name].samples.append(Sample(family.sample_name, labels, value))

            add(fams.STALE, 1.0 if src.stale else 0.0)
            add(fams.COLLECTION_FAILURES, src.failures)
            # 0 until the first collection completes ("never", as the Pushgateway's push_failure_time_seconds
            # reads before any failure): absent, ``time() - ... > 60`` never fired for an exporter whose
            # first collection hung, the very case it is for.
            add(fams.LAST_SUCCESS, src.last_success if src.last_success is not None else 0.0)
            if src.wall is not None and src.cpu is not None:
                add(fams.COLLECTION_DURATION, src.wall)
                add(fams.COLLECTION_CPU, src.cpu)
            for function, count in sorted(src.overruns.items()):
                add(fams.OVERRUNS, count, {**host, "function": function})
        return list(metrics.values())

    def _publish(self) -> None:
        extra = [families() for families in self.extra_families]
        served = [_served(s) for s in self._sources if s.families]
        families = merge([*served, self._health(), *extra])
        self._exposition = Exposition.build(families, self._label_texts)

    def run_forever(self, first_after: float = 0.0) -> None:
        """Tick every ``interval`` until ``stop()``, the first tick ``first_after`` seconds from now."""
        if first_after > 0:
            self._clock.sleep(first_after)
        while not self._stop.is_set():
            started = self._clock.monotonic()
            try:
                self.run_once()
                self._clock.sleep(max(0.0, self.interval - (self._clock.monotonic() - started)))
            except Exception:  # the loop boundary: a failing tick (or sleep) must not end the thread
                logger.exception("collection tick failed")
                self._stop.wait(1.0)

    def start(self, first_after: float = 0.0) -> None:
        """Run the loop on a daemon thread, its first tick ``first_after`` seconds from now."""
        self._thread = threading.Thread(
            target=self.run_forever, args=(first_after,), name="collection-loop", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current tick (the thread is a daemon; a hung NVML call cannot hold the exit)."""
        self._stop.set()


def _served(src: _Source) -> list[Metric]:
    """What a host's last collection contributes now: all of it, or while its collection has hung past
    ``HUNG_TICKS_SERVED`` ticks only its host-wide series (NVML errors, XID watcher) and its XID families,
    read afresh from the XID ledger; no GPU's values."""
    if src.hung_ticks <= HUNG_TICKS_SERVED:
        return src.families
    xids = getattr(src.collector, "xid_families", None)
    kept = list(xids()) if xids is not None else []  # XIDs come from the watcher, which does not hang
    for metric in src.families:
        errors = metric.name == fams.NVML_CALL_ERRORS.name  # counts, not GPU values: a GPU's stay
        host_wide = [s for s in metric.samples if errors or "gpu" not in s.labels]
        if host_wide:
            copy = Metric(metric.name, metric.documentation, metric.type)
            copy.samples = host_wide
            kept.append(copy)
    return kept


_HEALTH = (
    fams.STALE,
    fams.LAST_SUCCESS,
    fams.COLLECTION_DURATION,
    fams.COLLECTION_CPU,
    fams.OVERRUNS,
    fams.COLLECTION_FAILURES,
)
