"""Where chart series come from: a PromQL range query per fault kind, filled in from the root-cause target.

Queries are ``string.Template`` strings over the root-cause target's fields: ``$node``, ``$gpu`` (index),
``$uuid``, ``$rack``, ``$cluster``, ``$namespace``, ``$name``. A fault kind without a query, or a query
naming a field the target lacks, draws no chart. Values are escaped for PromQL string literals; inside a
regular expression (``=~``) a field is written ``$node_re``, its value's metacharacters escaped as well, so
that a name such as ``n07|.+`` reads that node alone. The Slack notifier asks at delivery time, off the
incident engine's path.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from string import Template
from typing import Any

import httpx

from alerting.notifiers.base import ChartSeries, Notification
from gpuwarden.clock import Clock
from gpuwarden.config import SlackConfig
from gpuwarden.errors import SourceError
from gpuwarden.mig import device_level, one_per_gpu
from gpuwarden.model import ANOMALY_YHAT_LOWER, ANOMALY_YHAT_UPPER, FaultKind

logger = logging.getLogger(__name__)

_GPU = 'Hostname="$node",gpu="$gpu"'
DEFAULT_QUERIES: Mapping[FaultKind, str] = {
    FaultKind.THERMAL: f"DCGM_FI_DEV_GPU_TEMP{{{_GPU}}}",
    FaultKind.POWER_BRAKE: f"DCGM_FI_DEV_POWER_USAGE{{{_GPU}}}",
    FaultKind.ECC_SBE_STORM: f"rate(DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{{{_GPU}}}[5m])",
    FaultKind.MEMORY_LEAK: f"DCGM_FI_DEV_FB_USED{{{_GPU}}}",
    FaultKind.HUNG_GPU: f"DCGM_FI_DEV_GPU_UTIL{{{_GPU}}}",
    FaultKind.NODE_DOWN: 'up{instance=~"${node_re}(:[0-9]+)?"}',
}
MAX_SERIES = 5
AFTER_EVENT_SECONDS = 300.0


_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def render_query(template: str, fields: Mapping[str, str]) -> str | None:
    """The PromQL for a target's fields, or None when the template needs a field the target lacks."""
    given = {k: v for k, v in fields.items() if v}
    literal = {k: _escape(v) for k, v in given.items()}
    regex = {f"{k}_re": _escape(_RE2_SPECIAL.sub(r"\\\1", v)) for k, v in given.items()}
    try:
        return Template(template).substitute({**literal, **regex})
    except KeyError:
        return None


def _series_name(metric: Mapping[str, str]) -> str:
    name = metric.get("__name__", "")
    labels = ",".join(
        f"{k}={v}" for k, v in sorted(metric.items()) if k in ("Hostname", "gpu", "instance", "UUID")
    )
    return f"{name}{{{labels}}}" if labels else name or "series"


Matrix = list[tuple[dict[str, str], list[tuple[float, float]]]]
_DCGM_NAME = re.compile(r"\bDCGM_FI_[A-Z0-9_]+\b")


def _matrix(body: Any, limit: int | None) -> Matrix:
    """Prometheus' ``query_range`` answer as (labels, points) pairs; ``SourceError`` unless a matrix."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error", "unknown error") if isinstance(body, dict) else "not JSON"
        raise SourceError(f"query failed: {error}", source="prometheus")
    data = body.get("data") or {}
    if data.get("resultType") != "matrix":
        raise SourceError(f"expected a matrix, got {data.get('resultType')!r}", source="prometheus")
    out = []
    for result in data.get("result", [])[:limit]:
        points = [(float(t), float(v)) for t, v in result.get("values", [])]
        if points:
            out.append((dict(result.get("metric", {})), points))
    return out


def one_line_per_gpu(found: Matrix, query: str) -> Matrix:
    """``found`` with one line per GPU of a device-level metric (``gpuwarden.mig.one_per_gpu``): a MIG
    GPU's temperature comes again on each instance's series, and the chart drew it once per instance (its
    five lines, all alike, hid the other GPUs'). A series without ``__name__`` (a ``rate()``) is of the one
    DCGM metric its query names, if one."""
    named = set(_DCGM_NAME.findall(query))
    fallback = named.pop() if len(named) == 1 else ""
    by_metric: dict[str, list[int]] = {}
    for i, (metric, _) in enumerate(found):
        by_metric.setdefault(metric.get("__name__", fallback), []).append(i)
    dropped: set[int] = set()
    relabelled: dict[int, Mapping[str, str]] = {}
    for name, rows in by_metric.items():
        kept = one_per_gpu([found[i][0] for i in rows]) if device_level(name) else None
        if kept is not None:
            relabelled.update((rows[k], labels) for k, labels in zip(*kept, strict=True))
            dropped.update(set(rows) - {rows[k] for k in kept[0]})
    if not dropped and not relabelled:
        return found
    return [(dict(relabelled.get(i, m)), p) for i, (m, p) in enumerate(found) if i not in dropped]


def _chart_series(metric: Mapping[str, str], points: Sequence[tuple[float, float]]) -> ChartSeries:
    return ChartSeries(
        name=_series_name(metric),
        times=tuple(datetime.fromtimestamp(t, UTC) for t, _ in points),
        values=tuple(v for _, v in points),
    )


def parse_matrix(body: Any, limit: int = MAX_SERIES) -> list[ChartSeries]:
    """Prometheus' ``query_range`` answer as chart series; ``SourceError`` when it is not a matrix."""
    return [_chart_series(metric, points) for metric, points in _matrix(body, limit)]


def band_queries(metric: Mapping[str, str]) -> tuple[str, str] | None:
    """PromQL for the expected band the anomaly service wrote back for one GPU series (``for`` is the
    metric's name, as the service's queries are named): the lowest lower bound and the highest upper bound
    of its detectors. None for a series that is not one GPU's metric (a ``rate()``, a node's ``up``)."""
    name, node, gpu = metric.get("__name__"), metric.get("Hostname"), metric.get("gpu")
    if not (name and node and gpu):
        return None
    selector = f'{{for="{_escape(name)}",Hostname="{_escape(node)}",gpu="{_escape(gpu)}"}}'
    return f"min({ANOMALY_YHAT_LOWER}{selector})", f"max({ANOMALY_YHAT_UPPER}{selector})"


def _aligned(points: Sequence[tuple[float, float]], times: Sequence[float]) -> tuple[float, ...]:
    """Band values at the series' timestamps; NaN where the band has no point."""
    at = dict(points)
    return tuple(at.get(t, math.nan) for t in times)


class PromQLSeriesSource:
    """Reads the series behind an incident from Prometheus' ``/api/v1/query_range``."""

    def __init__(
        self,
        base_url: str,
        clock: Clock,
        *,
        queries: Mapping[FaultKind, str] | None = None,
        window_seconds: float = 3600.0,
        step_seconds: float = 30.0,
        latency_offset_seconds: float = 0.0,
        client: httpx.Client | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + "/api/v1/query_range"
        self._clock = clock
        self._queries = dict(DEFAULT_QUERIES if queries is None else queries)
        self._window = window_seconds
        self._step = step_seconds
        self._offset = latency_offset_seconds
        self._bands_reachable = True
        self._client = client or httpx.Client(timeout=10.0)

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def series_for(self, notification: Notification) -> Sequence[ChartSeries]:
        """``window_seconds`` of the fault kind's query up to the event (plus a little, never past now, nor
        into the store's latency offset, where VictoriaMetrics repeats its last older sample)."""
        try:
            template = self._queries.get(FaultKind(notification.root_cause_kind))
        except ValueError:
            return []
        query = None if template is None else render_query(template, notification.root_cause_fields)
        if query is None:
            return []
        end = min(self._clock.time() - self._offset, notification.event_at.timestamp() + AFTER_EVENT_SECONDS)
        params: dict[str, str | float] = {  # the query itself is added per request (series, then bands)
            "start": end - self._window,
            "end": end,
            "step": self._step,
        }
        try:
            found = one_line_per_gpu(_matrix(self._get(params, query), None), query)[:MAX_SERIES]
        except (httpx.HTTPError, ValueError, SourceError) as exc:
            # No chart is better than no notification: the message goes out without it.
            logger.warning(
                "chart series unavailable incident_id=%s query=%s error=%s",
                notification.incident_id,
                query,
                exc,
            )
            return []
        self._bands_reachable = True  # one unreachable band query skips the rest of this chart's
        return [self._with_band(metric, points, params) for metric, points in found]

    def _get(self, params: Mapping[str, str | float], query: str) -> Any:
        response = self._client.get(self._url, params={**params, "query": query})
        return response.json()

    def _with_band(
        self,
        metric: Mapping[str, str],
        points: Sequence[tuple[float, float]],
        params: Mapping[str, str | float],
    ) -> ChartSeries:
        """The series with the anomaly service's band when Prometheus has it (else without: never raises)."""
        series = _chart_series(metric, points)
        queries = band_queries(metric)
        if queries is None:
            return series
        times = [t for t, _ in points]
        bands: list[tuple[float, ...] | None] = []
        for query in queries:
            found = []
            if self._bands_reachable:  # a Prometheus timing out must not hold the message up ten times over
                try:
                    found = _matrix(self._get(params, query), 1)
                except httpx.HTTPError as exc:
                    logger.info("chart band unreachable query=%s error=%s", query, exc)
                    self._bands_reachable = False
                except (ValueError, SourceError) as exc:
                    logger.info("chart band unavailable query=%s error=%s", query, exc)
            bands.append(_aligned(found[0][1], times) if found else None)
        if bands[0] is None and bands[1] is None:
            return series
        return series.model_copy(update={"lower": bands[0], "upper": bands[1]})


def series_source_from_config(config: SlackConfig, clock: Clock) -> PromQLSeriesSource | None:
    """The chart source the ``slack`` section asks for, or None when charts or a Prometheus URL are off."""
    if not config.charts or not config.chart_prometheus_url:
        return None
    return PromQLSeriesSource(
        config.chart_prometheus_url,
        clock,
        window_seconds=config.chart_window_seconds,
        latency_offset_seconds=config.chart_latency_offset_seconds,
    )
