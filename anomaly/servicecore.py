"""The anomaly service's state, and what its tick and its warm-up both do with it: read a source (one series
per GPU where MIG instances repeat a device-level metric), count not-available samples, refit the detectors,
and say how stale each source and query is (``_staleness``: a tick's reads, or the warm-up's after a
snapshot).

``AnomalyService`` (``anomaly.service``) is this class with the alert update (``anomaly.alertupdate``), the
snapshot take-up (``anomaly.takeup``), the warm-up (``anomaly.warmup``) and the tick on it: each a class of
its own module over this one, which holds every attribute they share, so each reads and types them as one
service's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from anomaly.collective import CollectiveMoves
from anomaly.dataranges import DataRanges
from anomaly.detectors import Detector, Findings, JudgedDetector
from anomaly.firing import _Firing
from anomaly.promql import selected_metric
from anomaly.registry import builtin_registry
from anomaly.series import CounterRates, EvidenceBuffer, SeriesIndex, View
from anomaly.serieskeys import SeriesKey
from anomaly.snapshot import State
from anomaly.sources import Frame, Source, SourceHealth
from anomaly.warmupretry import DeferredWarmUp
from anomaly.writeback import AnomalyCollector
from gpuwarden.clock import Clock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.mig import device_level, one_per_gpu
from gpuwarden.model import Alert, RecommendedAction

# The service's name: its log lines read as they did before it was split into modules (``anomaly run``
# logs the logger's name; an operator filters on it).
logger = logging.getLogger("anomaly.service")


@dataclass(frozen=True, slots=True)
class _Quiet:
    """What a source's reads after a snapshot left it (``ServiceCore._seen``): ``series`` and
    ``last_series`` as the uninterrupted run had them, while its own ``last_success`` is still ``read_at``
    (no read since the warm-up's) and its ``last_series`` still ``series_at`` (none since returned series)."""

    series: int
    last_series: float | None
    read_at: float | None
    series_at: float | None


class ServiceCore:
    """The state the service's parts share (see the module's docstring), and the reads that feed it."""

    def __init__(
        self,
        cfg: AnomalyConfig,
        sources: Sequence[Source],
        clock: Clock,
        detectors: Sequence[Detector] | None = None,
        on_alert: Callable[[Alert], None] | None = None,
        *,
        on_resend: Callable[[Alert], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.sources = list(sources)
        self.clock = clock
        self.detectors = (
            list(detectors) if detectors is not None else builtin_registry(cfg).create(cfg.detectors)
        )
        self.on_alert = on_alert
        # Where an alert the snapshot left firing goes when it is posted again after a restart (``on_alert``
        # when None): ``anomaly run``'s tick line tells it from one raised now.
        self.on_resend = on_resend
        self.index = SeriesIndex()
        self.counters = CounterRates()
        self.evidence = EvidenceBuffer()
        self.collector = AnomalyCollector()
        self.data_ranges = DataRanges(cfg)
        self.firing: dict[str, _Firing] = {}
        self.relabelled: set[str] = set()  # firing alerts whose GPU answers under new labels (``_rest``)
        self._pending: dict[str, tuple[int, str, str]] = {}  # key -> ticks agreed, detector, query
        # Queries seen returning series of several metrics (``{__name__=~"A|B"}``): their alerts keep its
        # name (``AlertUpdater._note_several_metrics``).
        self._several_metrics: set[str] = set()
        # This tick's firing alerts of those queries by detector, query and series (``_metric_kept``).
        self._metric_series: dict[tuple[str, str, SeriesKey], list[str]] | None = None
        # This tick's GPUs where a recovered fleet alert is not alone (``AlertUpdater._busy_gpus``).
        self._busy: frozenset[tuple[str, str]] = frozenset()
        self._recalled: dict[str, _Firing] = {}  # alerts the warm-up's history left firing (``warm_up``)
        self._recall_ends: dict[str, float] = {}  # when serve lets each recalled alert end (``warm_up``)
        # What the ticks a restart missed changed, told at the next (``_replay_resuming``).
        self._catch_up: list[Alert] = []
        # What the snapshot left firing and those ticks did not change: posted again at the next tick.
        self._resend: list[Alert] = []
        self.collective_suppressed = 0
        # The workloads' moves and the rows they hold (``anomaly.collective``).
        self.collective = CollectiveMoves()
        self.detector_errors: dict[str, int] = {}
        self.not_available: dict[str, int] = {}  # per query, samples read as not-available values (gaps)
        self.last_view = View(time=clock.time())
        # Where the reads fed to the detectors ended (a save's ``read_until``): a live tick's read end, or the
        # warm-up's, whose last replayed tick may end past it on the grid of a snapshot's ticks.
        self.read_until = clock.time()
        # State of parts outside the service kept in its snapshot, by component name (``anomaly run``'s alert
        # forwarder: the resolutions serve has not received). Taken up by their owner, not by the service.
        self.kept_with: dict[str, Callable[[], State]] = {}
        self._last_read: dict[str, float] = {}
        # Per query, the end of its last good read: a source that reads each query on from its own (PromQL)
        # reads a failed one again from there, and so does the warm-up after a snapshot (``_after``).
        self._query_read: dict[str, float] = {}
        self._held_over: list[Frame] = []  # read by the warm-up for the first tick (``warm_up``)
        # A warm-up whose history read failed for every query, read again at a later tick (``warm_up``).
        self.warm_up_retry: DeferredWarmUp | None = None
        self._query_source: dict[str, str] = {}
        self._exprs = {q.name: q.expr for q in cfg.queries}
        self._device_level: dict[str, bool] = {}
        # Per detector whose alerts are judged by several queries: which (by the alert's query). Found by
        # the method, not a list of classes: a detector that names its queries is never left out.
        self._judged: dict[str, Callable[[str], tuple[str, ...]]] = {
            d.name: d.judged_by for d in self.detectors if isinstance(d, JudgedDetector)
        }
        self._started = clock.time()
        # Per source and per query, when a process before this one last read it well (``last_success``,
        # ``clock.time()``: wall time, which a restart can compare, as it cannot the monotonic clock's), and
        # when the first process of the chain whose snapshots this one took up started: one none of them read
        # well is aged from there (``_succeeded``). A snapshot's, taken up (``restore``).
        self._source_success: dict[str, float] = {}
        self._query_success: dict[str, float] = {}
        self._chain_started = self._started
        # Per source, how many series its last read returned and when its last read with series ended, as
        # the process whose snapshot this one took up knew them (``restore``); and where the warm-up's read
        # after that snapshot returned none (``quiet_after``), what the service takes for them (``_seen``).
        # Judged on the warm-up's whole hour, a restart during a total exporter outage found series and never
        # raised ``GpuwardenSourceStale`` ("its targets are gone"), where the uninterrupted run did.
        self._series_kept: dict[str, tuple[int, float | None]] = {}
        self._quiet: dict[str, _Quiet] = {}
        # Per query, the series its last good read returned as that process knew them (``restore``), and as
        # the warm-up's read after it left them, with this process' last good read of it then: counted so
        # until it is read again (``_query_counts``).
        self._query_series: dict[str, int] = {}
        self._query_quiet: dict[str, tuple[int, float | None]] = {}
        self.ticks = 0
        self.last_tick_end: float | None = None  # clock.monotonic() when the last tick ended (/healthz)
        self.started_monotonic = clock.monotonic()

    def _read(self, source: Source, start: float, until: float) -> list[Frame]:
        """What ``source`` returns over ``(start, until]``, noting where it, and each query it returned, was
        read up to."""
        got = source.read(start, until)
        if source.health().up:
            self._last_read[source.name] = until
        for frame in got:
            self._query_source[frame.query] = source.name
            self._query_read[frame.query] = until
        return got

    def _succeeded(self, h: SourceHealth) -> tuple[float, dict[str, float]]:
        """When ``h``'s source, and each query of it, was last read well: by this process, else by the one
        whose snapshot it took up (that one's own, or its predecessor's), else when the first process of that
        chain started. A query failing through a restart was aged from the new process' start: its
        ``GpuwardenSourceStale`` resolved at the restart and was raised again only ``stale_after_seconds``
        later. After a crash it may be older than the true last good read, by the ticks the crash lost (at
        most ``state_save_seconds``): the last one any process kept."""
        source = h.last_success
        if source is None:
            source = self._source_success.get(h.name, self._chain_started)
        queries = {
            name: q.last_success
            if q.last_success is not None
            else self._query_success.get(name, self._chain_started)
            for name, q in h.queries.items()
        }
        return source, queries

    def health(self) -> list[SourceHealth]:
        """Each source's health as this service knows it: a last good read this process has not made yet
        (a query failing since before a restart) is the one its snapshot kept, as ``GpuwardenSourceStale``
        ages it; one no process read well stays unknown (None). ``gpuwarden_anomaly_*_last_success_*`` and
        ``/healthz`` showed none after a restart while the alert said how long the query had failed."""
        out = []
        for source in self.sources:
            h = source.health()
            counts = self._query_counts(h)
            queries = {
                name: replace(
                    q,
                    last_success=q.last_success
                    if q.last_success is not None
                    else self._query_success.get(name),
                    series=counts[name],
                )
                for name, q in h.queries.items()
            }
            last = h.last_success if h.last_success is not None else self._source_success.get(h.name)
            out.append(replace(self._seen(h), last_success=last, queries=queries))
        return out

    def _query_counts(self, h: SourceHealth) -> dict[str, int]:
        """Each query's series as the uninterrupted run counts them (its last good read's): this process' own
        where it read the query since its warm-up; as the warm-up's read after a snapshot left it where not
        (``quiet_after``: none where asked a step there, else the snapshot's); the snapshot's where this
        process never read it well (failing through the restart). One count per source, a query failing
        through a restart lost its series where the others read none: "its targets are gone" was raised."""
        noted = self._query_quiet
        counts = {}
        for name, q in h.queries.items():
            count = q.series
            if q.last_success is None:
                count = self._query_series.get(name, q.series)
            elif name in noted and noted[name][1] == q.last_success:
                count = noted[name][0]
            counts[name] = count
        return counts

    def _seen(self, h: SourceHealth) -> SourceHealth:
        """``h`` with what the reads since the snapshot this process took up returned (``_quiet``): where
        none returned series, the last read with series is the snapshot's until a read returns some, and
        the series are the snapshot's count (0 where the warm-up's read after it asked and found none) until
        the next read; for a source read query by query, the sum of its queries' (``_query_counts``), each
        standing until that query is read again."""
        if h.queries:  # the sum of its queries' (``_query_counts``)
            h = replace(h, series=sum(self._query_counts(h).values()))
        quiet = self._quiet.get(h.name)
        if quiet is None or h.last_series != quiet.series_at:  # a read since returned series
            return h
        if h.queries or h.last_success != quiet.read_at:  # counted per query, or read since
            return replace(h, last_series=quiet.last_series)
        return replace(h, series=quiet.series, last_series=quiet.last_series)

    def quiet_after(self, series: set[str], unasked: set[str], found: Mapping[str, int | None]) -> None:
        """Note, after the warm-up's read of the history after a snapshot, each source that returned no
        series there (not in ``series``) as the uninterrupted run left it (``_seen``): with none where each
        of its queries was asked a step there, else (``unasked``: a query not asked keeps its count; or the
        source down) the series the snapshot counted; and the snapshot's last read with series. ``found``:
        per query the warm-up read, the series it returned there (None: asked no step there, the snapshot's
        count kept), its count until this process reads it again (``_query_counts``), not the hour's."""
        self._query_quiet = {}
        for source in self.sources:
            for name, q in source.health().queries.items():
                if name in found and q.last_success is not None:
                    kept = found[name]
                    count = self._query_series.get(name, q.series) if kept is None else kept
                    self._query_quiet[name] = (count, q.last_success)
        self._quiet = {}
        for source in self.sources:
            h = source.health()
            if h.name in series:
                continue
            count, last = self._series_kept.get(h.name, (0, None))
            asked = h.up and h.name not in unasked
            self._quiet[h.name] = _Quiet(0 if asked else count, last, h.last_success, h.last_series)

    def _staleness(self, now: float) -> list[Findings]:
        """One row per source, and one per query of a source that is up but cannot read that query.

        A source that answers but has returned no series at all for ``absent_after_seconds`` (a Prometheus
        whose every exporter is gone) is stale too: the presence detector leaves such a mass loss to it.
        """
        out = []
        for source in self.sources:
            h = self._seen(source.health())
            succeeded, query_succeeded = self._succeeded(h)  # a snapshot's where this process read none well
            # At least 0: a read stamps its success when it ends, after ``now`` (a stale score read -0.0017).
            age = max(0.0, now - succeeded)
            # The server names which Prometheus an operator must look at (the alert's title says it).
            labels = [{"source": h.name, **({"server": h.server} if h.server else {})}]
            ages, scores = [age], [age / self.cfg.stale_after_seconds]
            summaries = [f"no successful read of {h.name} for {age:.0f}s: {h.last_error}"]
            if h.empty and h.last_series is not None:
                ages[0] = max(0.0, now - h.last_series)
                scores[0] = ages[0] / self.cfg.absent_after_seconds
                summaries[0] = f"{h.name} has returned no series for {ages[0]:.0f}s: its targets are gone"
            for query, q in h.queries.items():
                failing = h.up and not q.up  # a source that is down is one alert, not one per query
                q_age = max(0.0, now - query_succeeded[query])
                labels.append({**labels[0], "query": query})
                ages.append(q_age if failing else 0.0)
                scores.append(ages[-1] / self.cfg.stale_after_seconds)
                summaries.append(f"query {query} of {h.name} failed for {q_age:.0f}s: {q.last_error}")
            out.append(
                Findings(
                    detector="source",
                    query="source_staleness",
                    labels=labels,
                    score=np.array(scores),
                    value=np.array(ages),
                    action=RecommendedAction.INVESTIGATE,
                    summary=summaries,
                    alert_labels={"alertname": "GpuwardenSourceStale"},
                    immediate=True,
                )
            )
        return out

    def _unread(self) -> Callable[[str], bool] | None:
        """Which queries the last read could not read (``SeriesIndex.expire``): failed, or of a source down;
        while one is down, a query no read of this process named too (a restart's first ticks, Prometheus
        down). A tick's read, or the warm-up's, whose replayed ticks hold none of such a query's samples: its
        series were forgotten there (a query failing through a restart longer than forget_after_seconds)
        where the uninterrupted run, whose ticks held them, kept them."""
        down = {s.name for s in self.sources if not s.health().up}
        failing = {q for s in self.sources for q, h in s.health().queries.items() if not h.up}
        if not down and not failing:
            return None
        unknown = bool(down)
        return lambda q: (
            q in failing or self._query_source.get(q) in down or (unknown and q not in self._query_source)
        )

    def _expire(self, view: View, until: float, unread: Callable[[str], bool] | None) -> None:
        """Forget the series unseen for ``forget_after_seconds`` up to ``until``, but those of the ``unread``
        queries (``view.forgotten``: their ids go to the next new series), in what the service keeps by
        series id, the detectors aside: the evidence, the counters (a recycled id must not diff against the
        old series) and the workloads' moves (a move would judge the new series as the old rank, held as
        its job's or kept out)."""
        view.forgotten = self.index.expire(until, self.cfg.forget_after_seconds, unread)
        self.evidence.reset(view.forgotten)
        self.counters.reset(view.forgotten)
        self.collective.forget(view.forgotten)

    def _per_gpu(self, frame: Frame) -> Frame:
        """The frame with one series per GPU when its metric is device-level and MIG instances repeat it
        (``gpuwarden.mig.one_per_gpu``): a hot MIG GPU is one alert and one fleet peer, not one per instance.
        The metric is the query's name, else its expression's when that is a bare selector."""
        device = self._device_level.get(frame.query)
        if device is None:
            expr = self._exprs.get(frame.query, "")
            named = selected_metric(expr) or ""
            device = self._device_level[frame.query] = device_level(frame.query) or device_level(named)
        if not device:
            return frame
        kept = one_per_gpu(frame.labels)
        if kept is None:
            return frame
        rows, labels = kept
        return frame.rows(rows, labels)

    def _count_not_available(self, view: View) -> None:
        """Add up the view's not-available samples per query; the first of a query is logged."""
        for query, count in view.not_available.items():
            if query not in self.not_available:
                logger.warning(
                    "query %s read %d sample%s holding an NVML/DCGM not-available value (4294967295, a DCGM"
                    " blank, ...) or an infinite one (+Inf: a division by 0, histogram_quantile past its"
                    " highest bucket): read as missing data, not scored; counted in"
                    " gpuwarden_anomaly_not_available_samples_total",
                    query,
                    count,
                    "" if count == 1 else "s",
                    extra={"query": query},
                )
            self.not_available[query] = self.not_available.get(query, 0) + count

    def fit(self) -> None:
        """Refit every detector on the last view."""
        for detector in self.detectors:
            try:
                detector.fit(self.last_view)
            except Exception:  # loop boundary
                logger.exception("detector fit failed", extra={"detector": detector.name})
                self.detector_errors[detector.name] = self.detector_errors.get(detector.name, 0) + 1
