"""Scores and bands written back as metrics in vmanomaly's shape, plus the service's own health.

``gpuwarden_anomaly_score`` (>1 means anomalous), ``gpuwarden_anomaly_yhat``, ``gpuwarden_anomaly_yhat_lower``
and ``gpuwarden_anomaly_yhat_upper`` keep the input series' labels and add ``for="<query name>"`` and
``model="<detector>"`` (``model_alias`` when the input has a ``model`` label), so Grafana can draw a series
with its band. The input's ``instance`` and ``job`` survive the scrape only with ``honor_labels: true``
(``deploy/prometheus.example.yml``); otherwise Prometheus renames them ``exported_instance``/``exported_job``.
The collector renders the last tick's cache; a scrape never triggers scoring.

``render_bands`` writes the four families for ``/metrics`` as the scrape's encoder writes them, without a
prometheus_client sample per series (``anomaly.exposition``), once a tick for the content type scraped last;
``collect`` still gives them as samples to any other reader of the registry, and ``status`` collects the rest.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

from anomaly import exposition
from anomaly.detectors import Findings
from anomaly.sources import SourceHealth
from gpuwarden.jsonload import collector_paused
from gpuwarden.model import ANOMALY_SCORE, ANOMALY_YHAT, ANOMALY_YHAT_LOWER, ANOMALY_YHAT_UPPER

SCORE = ANOMALY_SCORE
YHAT = ANOMALY_YHAT
YHAT_LOWER = ANOMALY_YHAT_LOWER
YHAT_UPPER = ANOMALY_YHAT_UPPER
SCORE_CAP = 10.0
"""Highest score exported (``gpuwarden_anomaly_score``, an alert's ``score``). A series that was flat
until then (a counter's first increase) has a band near zero wide, and scored 43199998 for one ECC DBE
error, which flattened every other score on a Grafana panel; vmanomaly's scores stay within 0..a few. The
detectors decide on the raw score (above 1: anomalous), so the cap changes no decision."""


def exported_score(score: float) -> float:
    """``score`` as exported: at most ``SCORE_CAP`` (NaN stays NaN)."""
    return score if not score > SCORE_CAP else SCORE_CAP


def output_labels(labels: Mapping[str, str], query: str, detector: str) -> dict[str, str]:
    """Input labels (without ``__name__``) plus ``for`` and the detector in ``model`` (``model_alias`` when
    the input has a ``model`` label of its own, an inference server's: overwriting it would merge series)."""
    out = {k: v for k, v in labels.items() if k != "__name__"}
    out["for"] = query
    out["model_alias" if "model" in out else "model"] = detector
    return out


@dataclass(slots=True)
class TickStats:
    """Numbers about the last tick that the service exports about itself."""

    series: int = 0
    alerts_firing: int = 0
    tick_seconds: float = 0.0
    detector_errors: dict[str, int] = field(default_factory=dict)
    fleet_uncompared: dict[str, int] = field(default_factory=dict)  # per fleet query, series with no peers
    not_available: dict[str, int] = field(default_factory=dict)  # per query, not-available samples so far
    # The failed reads of a deferred warm-up's history (``anomaly.warmupretry``); None: none deferred.
    warm_up_deferred: int | None = None


_BANDS = (
    (SCORE, "Anomaly score; above 1 means anomalous."),
    (YHAT, "Expected value."),
    (YHAT_LOWER, "Lower edge of the normal band."),
    (YHAT_UPPER, "Upper edge of the normal band."),
)


_Rendered = tuple[Sequence[Findings], str, exposition.Chunks, exposition.Chunks | None]


class AnomalyCollector:
    """A prometheus_client collector over the last tick's findings and the source health."""

    def __init__(self) -> None:
        self._findings: Sequence[Findings] = ()
        self._health: Sequence[SourceHealth] = ()
        self._stats = TickStats()
        # This tick's bands as last written: for which findings and content type, the body, and gzipped.
        self._rendered: _Rendered | None = None
        self._lock = threading.Lock()  # the cache's fields, each held for an instant
        self._render_lock = threading.Lock()  # scrapes only: one renders, a second waits for its body
        self.status = _StatusCollector(self)

    def update(self, findings: Sequence[Findings], health: Sequence[SourceHealth], stats: TickStats) -> None:
        """Replace the cache (called by the service after each tick; a render under way does not hold it)."""
        with self._lock:
            self._findings = tuple(findings)
            self._health = tuple(health)
            self._stats = stats
            self._rendered = None

    def describe(self) -> list[Metric]:
        """Families without samples, so registering does not render anything."""
        return [Metric(name, "", "gauge") for name, _ in _BANDS]

    def collect(self) -> Iterable[Metric]:
        """Fresh families from the cache: the four bands, then ``status``'s."""
        families = [Metric(name, doc, "gauge") for name, doc in _BANDS]
        score, yhat, lower, upper = families
        for value, f, i, _, _ in exposition.chosen(self._findings):
            out = output_labels(f.labels[i], f.query, f.detector)
            score.add_sample(SCORE, out, exported_score(value))
            for family, arr in ((yhat, f.yhat), (lower, f.lower), (upper, f.upper)):
                if arr is not None and math.isfinite(arr[i]):
                    family.add_sample(family.name, out, float(arr[i]))
        return [*families, *self._status_families()]

    def render_bands(
        self, encoder: exposition.Encoder, content_type: str, *, gzipped: bool = False
    ) -> exposition.Chunks:
        """The four bands as ``encoder`` writes them (``collect``'s first four families, byte for byte, but
        an OpenMetrics ``# EOF``: the rest of the exposition follows), a chunk a family; ``gzipped``: those
        bytes as one gzip member (level 1: 170 MB in 0.5 s to 18 MB; the rest follows as a member of its own,
        which a gzip reader reads on into). Rendered, and compressed, once a tick for the content type
        scraped last (a Prometheus pair scrapes alike)."""
        with self._render_lock:
            with self._lock:
                findings, rendered = self._findings, self._rendered
                if rendered is None or rendered[0] is not findings or rendered[1] != content_type:
                    rendered = self._rendered = None  # the other format's body let go before this one is made
            if rendered is None:
                with collector_paused():  # tuples and strings per series, none in a cycle
                    rows = exposition.chosen(findings)
                    plain, zipped = exposition.render(encoder, rows, _BANDS, SCORE_CAP), None
                    del rows  # a tuple per series: not held while the body is gzipped
            else:
                plain, zipped = rendered[2], rendered[3]
            if gzipped and zipped is None:
                zipped = exposition.gzip_member(plain)
            with self._lock:
                if self._findings is findings:  # else a tick ended meanwhile: its scrape renders it
                    self._rendered = (findings, content_type, plain, zipped)
            return zipped if gzipped and zipped is not None else plain

    def _status_families(self) -> list[Metric]:
        """Every family but the bands: the service's own numbers and its sources' health."""
        series = Metric(
            "gpuwarden_anomaly_series", "Series tracked (seen within forget_after_seconds).", "gauge"
        )
        series.add_sample(series.name, {}, float(self._stats.series))
        firing = Metric("gpuwarden_anomaly_alerts_firing", "Anomaly alerts firing now.", "gauge")
        firing.add_sample(firing.name, {}, float(self._stats.alerts_firing))
        tick = Metric("gpuwarden_anomaly_tick_seconds", "Duration of the last scoring tick.", "gauge")
        tick.add_sample(tick.name, {}, self._stats.tick_seconds)
        det = Metric("gpuwarden_anomaly_detector_errors", "Detector failures caught by the loop.", "counter")
        for name, count in self._stats.detector_errors.items():
            det.add_sample(det.name + "_total", {"detector": name}, float(count))
        lone = Metric(
            "gpuwarden_anomaly_fleet_uncompared_series",
            "Series of a fleet query compared with no peer (no slurm_job/pod label, or under 4 peers).",
            "gauge",
        )
        for query, count in self._stats.fleet_uncompared.items():
            lone.add_sample(lone.name, {"query": query}, float(count))
        blank = Metric(
            "gpuwarden_anomaly_not_available_samples",
            "Samples holding an NVML/DCGM not-available value (4294967295, a DCGM blank) or +/-Inf, read as"
            " missing.",
            "counter",
        )
        for query, count in self._stats.not_available.items():
            blank.add_sample(blank.name + "_total", {"query": query}, float(count))
        deferred = Metric(
            "gpuwarden_anomaly_warmup_deferred",
            "1 while the warm-up's history read, failed for every query (Prometheus down at start), waits to"
            " be read again: nothing is scored until it is read.",
            "gauge",
        )
        deferred.add_sample(deferred.name, {}, 0.0 if self._stats.warm_up_deferred is None else 1.0)
        failures = Metric(
            "gpuwarden_anomaly_warmup_read_failures",
            "Failed reads of the deferred warm-up's history; absent while none is deferred.",
            "gauge",
        )
        if self._stats.warm_up_deferred is not None:
            failures.add_sample(failures.name, {}, float(self._stats.warm_up_deferred))
        return [*self._health_families(), series, firing, tick, det, lone, blank, deferred, failures]

    def _health_families(self) -> list[Metric]:
        """The sources' and their queries' health."""
        up = Metric("gpuwarden_anomaly_source_up", "1 when the last read of the source succeeded.", "gauge")
        errors = Metric("gpuwarden_anomaly_source_errors", "Failed reads of the source.", "counter")
        last = Metric(
            "gpuwarden_anomaly_source_last_success_timestamp_seconds", "Time of the last good read.", "gauge"
        )
        source_series = Metric(
            "gpuwarden_anomaly_source_series", "Series the last good read returned.", "gauge"
        )
        query_up = Metric(
            "gpuwarden_anomaly_query_up", "1 when the last read of the query succeeded.", "gauge"
        )
        query_errors = Metric("gpuwarden_anomaly_query_errors", "Failed reads of the query.", "counter")
        query_series = Metric(
            "gpuwarden_anomaly_query_series", "Series the last good read of the query returned.", "gauge"
        )
        # Since when a query fails while its source reads well: the source's own time says nothing of it.
        query_last = Metric(
            "gpuwarden_anomaly_query_last_success_timestamp_seconds",
            "Time of the last good read of the query; absent while it has never read well.",
            "gauge",
        )
        answer_step = Metric(
            "gpuwarden_anomaly_query_answer_step_seconds",
            "The step a query's answers come on, where coarser than its step_seconds (downsampled data, a"
            " recording rule's interval): the points between are not read. Absent otherwise.",
            "gauge",
        )
        part_steps = Metric(
            "gpuwarden_anomaly_query_part_steps",
            "The most steps one query_range request of a query asks, where its server refused more (a query"
            " limit, a query timeout): its reads are made in parts of this many, tried twice as long after 30"
            " clean reads. Absent otherwise.",
            "gauge",
        )
        for h in self._health:
            up.add_sample(up.name, {"source": h.name}, 1.0 if h.up else 0.0)
            errors.add_sample(errors.name + "_total", {"source": h.name}, float(h.errors_total))
            if h.last_success is not None:
                last.add_sample(last.name, {"source": h.name}, h.last_success)
            source_series.add_sample(source_series.name, {"source": h.name}, float(h.series))
            for query, q in h.queries.items():
                labels = {"source": h.name, "query": query}
                query_up.add_sample(query_up.name, labels, 1.0 if q.up else 0.0)
                query_errors.add_sample(query_errors.name + "_total", labels, float(q.errors_total))
                query_series.add_sample(query_series.name, labels, float(q.series))
                if q.last_success is not None:
                    query_last.add_sample(query_last.name, labels, q.last_success)
                if q.answer_step is not None:
                    answer_step.add_sample(answer_step.name, labels, q.answer_step)
                if q.part_steps is not None:
                    part_steps.add_sample(part_steps.name, labels, float(q.part_steps))
        return [
            up,
            errors,
            last,
            source_series,
            query_up,
            query_errors,
            query_series,
            query_last,
            answer_step,
            part_steps,
        ]


class _StatusCollector:
    """The collector's families but the bands (``anomaly run``'s ``/metrics`` renders those itself)."""

    def __init__(self, owner: AnomalyCollector) -> None:
        self._owner = owner

    def collect(self) -> Iterable[Metric]:
        """The service's own numbers and its sources' health."""
        return self._owner._status_families()
