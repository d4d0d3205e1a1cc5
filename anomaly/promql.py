"""PromQL source: ``/api/v1/query_range`` over HTTP (Prometheus, Thanos, Mimir, VictoriaMetrics).

Each configured query is read over ``(start, end]`` on a ``step`` grid; series are aligned on that grid,
missing points are NaN. A query is a counter (scored as increases and rates, resets handled) when declared
so, or when it is a bare selector of a counter: a name ending in ``_total`` (DCGM's ``_TOTAL`` too) or one of
DCGM's counters named otherwise (``DCGM_COUNTERS``); anything else (``rate(...)``, arithmetic) is a gauge.
An answer that carries ``warnings`` (Thanos' partial response) is a failed read of that query: the series
it lacks are missing from the answer, not from the fleet, and must not look absent to the presence
detector; the query's alerts are held as in an outage and the read counts in its error metrics. Warnings
that are all PromQL annotations (``PromQL warning: ...``, ``PromQL info: ...``) come with a whole answer:
it is read, and they are logged once. Samples are placed on the grid by their timestamps, in whatever
order they come; two on one step (an HA pair merged without dedup) read as the larger. An answer on a coarser
step than asked (downsampled data, a recording rule evaluated less often) is told once, and the steps it
leaves empty between two of its points are not read rather than read as gaps (``anomaly.coarsesteps``).
HTTP and payload errors are translated into ``SourceError`` in one place and then reported through
``SourceHealth``; ``read`` itself never raises.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from anomaly.catchup import CatchUp
from anomaly.coarsesteps import CoarseSteps
from anomaly.rangeedges import RangeEdges, range_seconds
from anomaly.sources import Frame, QueryHealth, SeriesKind, SourceHealth, joined
from gpuwarden.clock import Clock
from gpuwarden.errors import SourceError
from gpuwarden.promql_text import uncommented
from gpuwarden.range_guard import range_shape
from gpuwarden.redaction import hidden_password

logger = logging.getLogger(__name__)

# dcgm-exporter's counters whose names do not end in _TOTAL.
DCGM_COUNTERS = frozenset(
    {
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "DCGM_FI_DEV_RETIRED_SBE",
        "DCGM_FI_DEV_RETIRED_DBE",
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    }
)
MAX_WORKERS = 4  # queries read at once: enough that one slow query waits alone, few for Prometheus
_NAMED = 3  # queries named per cause of a source outage; the rest are counted
MAX_POINTS = 11_000  # steps per query_range call: Prometheus refuses more points per series
# Prometheus' (2.46+) annotations of a whole answer, sent as warnings: an ill-formed histogram bucket, a
# quantile out of range, a rate() of a name that may not be a counter. Any other warning is a partial answer.
_ANNOTATIONS = ("PromQL warning: ", "PromQL info: ")
# Answers that say the read was too long or too big: Prometheus' sample limit and other execution limits
# (422; Mimir's and Thanos' too), a proxy's gateway timeout (504). Prometheus' own query timeout is 503 with
# errorType "timeout".
_OVERLONG_STATUS = frozenset({422, 504})
_SELECTOR = re.compile(r"\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^{}]*\})?\s*")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_COMPARISON = re.compile(r"(?:==|!=|>=|<=|>(?!=)|<(?!=))(?!\s*(?i:bool)\b)")  # keywords are any case


class OverlongRead(SourceError):
    """A read its server could not answer in time or within its limits (a read timeout, Prometheus' sample
    limit, HTTP 422 or 504): a shorter window may be read where the same one fails again."""

    def __init__(self, message: str, *, source: str, why: str, retryable: bool = True) -> None:
        self.why = why
        super().__init__(message, source=source, retryable=retryable)


def named(names: Sequence[str]) -> str:
    """The first few of ``names`` and how many more: ``A, B, C and 21 more``."""
    more = f" and {len(names) - _NAMED} more" if len(names) > _NAMED else ""
    return ", ".join(names[:_NAMED]) + more


def selected_metric(expr: str) -> str | None:
    """The metric of a bare selector (``X_TOTAL{gpu="0"}``: ``X_TOTAL``); None for any other expression."""
    match = _SELECTOR.fullmatch(uncommented(expr))
    return None if match is None else match.group(1)


def filters_series(expr: str) -> bool:
    """Whether ``expr`` compares without ``bool`` (``up == 0``, ``x > 90``): its series answer only the steps
    where they pass, so a series' absence between two of its answers is no coarser step. Comments are not
    read: ``x  # alert when > 90`` is no filter."""
    return _COMPARISON.search(_MATCHERS.sub("", uncommented(expr, blank_strings=True))) is not None


def inferred_kind(expr: str) -> SeriesKind:
    """``counter`` for a bare selector of a counter (``x_total``, ``X_TOTAL{gpu="0"}``, ``DCGM_COUNTERS``)."""
    name = selected_metric(expr)
    if name is None:
        return "gauge"
    return "counter" if name.lower().endswith("_total") or name in DCGM_COUNTERS else "gauge"


@dataclass(frozen=True, slots=True)
class PromQuery:
    """A named PromQL expression; the name becomes the ``for`` label of written-back scores.

    ``kind`` None: inferred from the expression (``inferred_kind``). ``guard``: the query's ``guard``
    setting (``gpuwarden.range_guard``); None: guarded when its shape is guarded unasked.
    """

    name: str
    expr: str
    step_seconds: float = 30.0
    kind: SeriesKind | None = None
    guard: bool | None = None

    @property
    def series_kind(self) -> SeriesKind:
        """The declared kind, or the one inferred from the expression."""
        return self.kind or inferred_kind(self.expr)

    @property
    def sent(self) -> tuple[str, bool]:
        """The expression sent to Prometheus, and whether it is guarded against its target going away
        (``rate(x[5m]) and x``: its series end at the target's first failed scrape)."""
        shape = range_shape(self.expr) if self.guard is not False else None
        if shape is None:
            return self.expr, False
        if shape.written_guard:
            return self.expr, True
        if self.guard or shape.self_guarded:
            return shape.guarded(self.expr), True
        return self.expr, False


class PromQLSource:
    """Reads configured queries from a Prometheus-compatible HTTP API.

    Queries are read concurrently (``workers`` at a time, within ``deadline_seconds``): one that fails (a
    typo, a timeout) is reported in ``health().queries`` and the others are still read. Each query keeps its
    own progress, so the one that failed catches up on its next good read (back to
    ``max_lookback_seconds``) while the others read only the new window.
    """

    def __init__(
        self,
        base_url: str,
        queries: Sequence[PromQuery],
        clock: Clock,
        *,
        timeout_seconds: float = 10.0,
        client: httpx.Client | None = None,
        name: str = "prometheus",
        max_lookback_seconds: float = 3600.0,
        deadline_seconds: float | None = None,
        workers: int = MAX_WORKERS,
    ) -> None:
        """``deadline_seconds``: the most a whole ``read`` waits (``timeout_seconds`` when None); give it
        less than the tick interval. ``workers``: queries read at once."""
        self.name = name
        self.deadline_seconds = timeout_seconds if deadline_seconds is None else deadline_seconds
        self.queries = list(queries)
        self.max_lookback_seconds = max_lookback_seconds
        self._clock = clock
        # httpx.Client is safe to share between threads; its pool holds a connection per worker.
        self._client = client or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_seconds)
        self._server = hidden_password(base_url.rstrip("/"))  # named where it could not be reached
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(workers, len(self.queries))), thread_name_prefix=f"promql-{name}"
        )
        self._health = SourceHealth(name=name, server=self._server)
        self._read_until: dict[str, float] = {}
        self._ranges = {q.name: range_seconds(q.expr) for q in self.queries}
        self._edges = RangeEdges(forget_after=max_lookback_seconds)
        self._catch_up = CatchUp(name, max_lookback_seconds)
        self.coarse = CoarseSteps(name, filters={q.name for q in self.queries if filters_series(q.expr)})
        self._logged_failures: dict[str, str] = {}  # query -> error, as last logged
        self._logged_empty: set[str] = set()  # queries last said to match no series
        self._logged_annotations: dict[str, str] = {}  # query -> its PromQL annotations, as last logged
        self._timeout = timeout_seconds
        self._sent: dict[str, float] = {}  # query -> when its last request went out (time.monotonic)

    def resume(self, read: Mapping[str, float], default: float) -> None:
        """Read each query not read yet from ``read[query]``, else ``default`` (``ResumableSource``): its next
        read catches it up from there, as after a failed read of it (``CatchUp``)."""
        for query in self.queries:
            self._read_until.setdefault(query.name, read.get(query.name, default))

    def close(self) -> None:
        """Stop the query pool (queries in flight are not waited for) and close the HTTP client."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def health(self) -> SourceHealth:
        """Current health."""
        return self._health

    def read(self, start: float, end: float) -> list[Frame]:
        """Every query over ``(start, end]``, or from where it last failed; down when none could be read.

        The queries run at once on a small pool, the whole read bounded by ``deadline_seconds``: a query
        that has not answered by then is a failed read this tick (its alerts held, as in an outage), so one
        slow query delays neither the others nor the tick. The least recently read go first.
        """
        # Least recently read (then sent) first: a Prometheus too slow to answer every query within the
        # deadline left the same queries, last in the configuration, unread at every tick; now each gets
        # its turn. The deadline is real time, as ``wait`` is: a request still out at it is cut there, so it
        # holds no worker into the next read (every other tick read nothing while one ran on).
        order = sorted(
            self.queries,
            key=lambda q: (self._read_until.get(q.name, -math.inf), self._sent.get(q.name, -math.inf)),
        )
        deadline = time.monotonic() + self.deadline_seconds
        since = {
            q.name: self._catch_up.since(q.name, start, end, self._read_until.get(q.name), q.step_seconds)
            for q in order
        }
        futures = {
            query.name: self._pool.submit(self.query_range, query, since[query.name], end, deadline=deadline)
            for query in order
        }
        wait(futures.values(), timeout=self.deadline_seconds)
        frames: list[Frame] = []
        failed: dict[str, str] = {}
        refused: set[str] = set()  # failed with an answer of Prometheus' own (HTTP 4xx): it is reachable
        read: set[str] = set()
        empty: list[str] = []
        for query in self.queries:
            health = self._health.queries.setdefault(query.name, QueryHealth())
            future = futures[query.name]
            if not future.done():
                # One already running ends by the client's timeout; its answer is dropped. One that never
                # started (the others took the deadline) was not too long: its catch-up is left whole.
                ran = not future.cancel()
                error = f"query {query.name}: no answer within the read's {self.deadline_seconds:g}s deadline"
                health.failed(error)
                failed[query.name] = error
                if ran:
                    self._too_long(query, since[query.name], end, "no answer in time")
                continue
            try:
                frame = future.result()
            except SourceError as exc:
                health.failed(str(exc))
                failed[query.name] = str(exc)
                if not exc.retryable:
                    refused.add(query.name)
                if isinstance(exc, OverlongRead):
                    self._too_long(query, since[query.name], end, exc.why)
                continue
            self._catch_up.succeeded(query.name)
            if frame.timestamps.size:  # an answer on a coarser step leaves no step of it in some windows
                frame = self.coarse.keep(frame, query.step_seconds)
            if frame.timestamps.size:  # else the window held no step: nothing was asked
                read.add(query.name)
                if not frame.labels:
                    empty.append(query.name)
                health.succeeded(self._clock.time(), len(frame.labels))
                self._read_until[query.name] = end
                _, guarded = query.sent
                step = self.coarse.step(query.name, query.step_seconds)
                frames.append(self._edges.mask(frame, self._ranges[query.name], step, guarded=guarded))
        if failed and not read and not self._up_elsewhere(failed, refused):
            self._health.failed(self._outage(failed))
        elif read or self._health.up:
            # A read that asked nothing (no query's step in its window) is no news: a source down stays
            # down. It came up after a failed warm-up, so `anomaly run --ticks 1` exited 0 or 1 by the
            # wall clock (whether its one tick fell on a query's step).
            self._health.succeeded(self._clock.time(), sum(h.series for h in self._health.queries.values()))
        for name, h in self._health.queries.items():
            h.answer_step = self.coarse.answer_step(name)
        self._log_failures(failed, read)
        self._log_empty(empty, read)
        return frames

    def _too_long(self, query: PromQuery, since: float, end: float, why: str) -> None:
        """A read of ``(since, end]`` failed for its size: its next catch-up asks less. A query never read has
        none, its next read asks the tick's window whatever failed: a failed warm-up was said to leave "the
        3600s it missed" unread and to ask 1800 s next, and a typo VictoriaMetrics refuses with HTTP 422 to
        be a read too long for it."""
        if query.name in self._read_until:
            self._catch_up.failed(query.name, since, end, query.step_seconds, why)

    def _up_elsewhere(self, failed: dict[str, str], refused: set[str]) -> bool:
        """Whether a read whose every asked query failed leaves the source up: Prometheus refused each of
        them (a 4xx: it answered) while another query, not asked this read (its step not due), read well
        last. Without it, one bad query on a shorter step than the others marked the source down at every
        tick only it fell due on, and up at the others: ``gpuwarden_anomaly_source_up`` flapped."""
        return failed.keys() <= refused and any(
            h.up for name, h in self._health.queries.items() if name not in failed
        )

    def _outage(self, failed: dict[str, str]) -> str:
        """Why no query could be read: each cause once, with how many queries it failed and the first few.

        Joining every query's error repeated one refused connection 24 times (5 KB) in ``/-/ready``, the
        source's ``last_error`` and the ``GpuwardenSourceStale`` summary, each prefixed with the source twice.
        """
        causes: dict[str, list[str]] = {}
        for name, error in failed.items():
            cause = error.removeprefix(f"{self.name}: ").removeprefix(f"query {name}: ")
            causes.setdefault(cause, []).append(name)
        parts = []
        for cause, names in causes.items():
            parts.append(f"{len(names)} of {len(self.queries)} queries ({named(names)}): {cause}")
        return "; ".join(parts)

    def _log_empty(self, empty: list[str], read: set[str]) -> None:
        """One warning when queries read well but matched no series, one line when they match some again.

        Such a read is no failure (Prometheus answers an unknown metric with nothing), so a metric or label
        typo, or a ``rate()`` window past Prometheus' newest sample (this clock ahead of Prometheus'), was
        "read" every tick and scored nothing, with no word anywhere but ``gpuwarden_anomaly_query_series``.
        """
        extra = {"source": self.name}
        new = [q for q in empty if q not in self._logged_empty]
        back = sorted(q for q in self._logged_empty if q in read and q not in empty)
        if new:
            logger.warning(
                "promql: %d of %d queries matched no series: %s; nothing of them is scored (a metric or label"
                " name that does not exist, targets not scraped yet, or this host's clock ahead of"
                " Prometheus')",
                len(new),
                len(self.queries),
                ", ".join(new),
                extra=extra,
            )
        if back:
            logger.info("promql: matching series again: %s", ", ".join(back), extra=extra)
        self._logged_empty = (self._logged_empty - set(back)) | set(new)

    def _log_failures(self, failed: dict[str, str], read: set[str]) -> None:
        """One line a tick at most: the queries newly failing (or failing differently) and the first error.

        A Prometheus answering 502 to every query used to log a line per query per tick; a query failing as
        it did last tick is counted in the line, not named again, and its recovery (a good read) is said
        once. A query not asked this read (its step not due) stays as it was: taken as recovered, a step
        longer than the tick logged "read again" and the same failure again at every step.
        """
        changed = {q: e for q, e in failed.items() if self._logged_failures.get(q) != e}
        recovered = [q for q in self._logged_failures if q in read]
        extra = {"source": self.name}
        if changed:
            same = len(failed) - len(changed)
            logger.warning(
                "promql: %d of %d queries failed: %s%s; first error: %s",
                len(failed),
                len(self.queries),
                ", ".join(changed),
                f" (and {same} failing as before)" if same else "",
                next(iter(changed.values())),
                extra=extra,
            )
        if recovered:
            logger.info("promql: read again: %s", ", ".join(recovered), extra=extra)
        self._logged_failures = {q: e for q, e in self._logged_failures.items() if q not in read} | failed

    def query_range(
        self, query: PromQuery, start: float, end: float, *, deadline: float | None = None
    ) -> Frame:
        """``query_range`` calls, aligned on the query's step, of at most ``MAX_POINTS`` steps each (a longer
        window is read in parts and joined); raises ``SourceError``.

        The grid is computed in whole milliseconds, so every window at least one step wide (to the
        millisecond) holds a point, and no point falls in two consecutive windows. ``deadline``
        (``time.monotonic``): no request is sent after it, and none waits past it.
        """
        step = max(1, round(query.step_seconds * 1000))
        first = (_millis(start) // step + 1) * step
        last = _millis(end) // step * step
        if last < first:
            return Frame(query.name, [], np.zeros(0), np.zeros((0, 0)), query.series_kind)
        parts = []
        for part_first in range(first, last + 1, MAX_POINTS * step):
            part_last = min(last, part_first + (MAX_POINTS - 1) * step)
            params = {
                "query": query.sent[0],
                "start": _seconds(part_first),
                "end": _seconds(part_last),
                "step": _seconds(step),
            }
            data = self._get(query, "/api/v1/query_range", params, deadline)
            grid = np.arange(part_first, part_last + 1, step, dtype=np.int64) / 1000.0
            parts.append(_matrix_to_frame(query, data, grid, self.name))
        return parts[0] if len(parts) == 1 else joined(parts)

    def query_instant(self, query: PromQuery, at: float) -> Frame:
        """One ``/api/v1/query`` call at ``at``; raises ``SourceError``."""
        data = self._get(query, "/api/v1/query", {"query": query.sent[0], "time": f"{at:.3f}"})
        if data.get("resultType") != "vector":
            raise SourceError(
                f"query {query.name}: expected a vector, got {data.get('resultType')!r}", source=self.name
            )
        labels = []
        values = []
        try:
            for item in data.get("result", []):
                labels.append(_labels(item))
                values.append(_number(item["value"][1]))
        except (AttributeError, TypeError, IndexError, KeyError) as exc:
            raise SourceError(
                f"query {query.name}: malformed vector result: {type(exc).__name__}: {exc}", source=self.name
            ) from exc
        column = np.array(values, dtype=np.float64).reshape(-1, 1)
        present = np.ones(column.shape, np.bool_) if np.isnan(column).any() else None  # each has a sample
        return Frame(query.name, labels, np.array([at]), column, query.series_kind, present)

    def _get(
        self, query: PromQuery, path: str, params: Mapping[str, str], deadline: float | None = None
    ) -> dict[str, Any]:
        where = f"query {query.name}: {path}"
        timeout = self._client.timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                late = f"query {query.name}: no answer within the read's {self.deadline_seconds:g}s deadline"
                if self._sent.get(query.name, -math.inf) >= deadline - self.deadline_seconds:
                    # An earlier part of this read took the time: the window is too long for the server.
                    raise OverlongRead(late, source=self.name, why="no answer in time")
                raise SourceError(late, source=self.name)  # never sent: the other queries took the time
            timeout = httpx.Timeout(min(self._timeout, left))
            self._sent[query.name] = time.monotonic()
        try:
            response = self._client.get(path, params=dict(params), timeout=timeout)
        except httpx.ReadTimeout as exc:  # sent, no answer in time (a connect or pool timeout: never there)
            raise OverlongRead(
                f"{where}: {self._server}: {type(exc).__name__}: {exc}", source=self.name, why="timed out"
            ) from exc
        except httpx.HTTPError as exc:  # not reached: which server (a port typo shows here), not only why
            raise SourceError(
                f"{where}: {self._server}: {type(exc).__name__}: {exc}", source=self.name
            ) from exc
        try:
            payload = response.json()
        except ValueError as exc:
            if response.status_code in _OVERLONG_STATUS:  # a proxy's gateway timeout page
                raise OverlongRead(
                    f"{where}: HTTP {response.status_code}, not JSON", source=self.name, why="gateway timeout"
                ) from exc
            raise SourceError(f"{where}: HTTP {response.status_code}, not JSON", source=self.name) from exc
        if not isinstance(payload, dict):
            raise SourceError(f"{where}: HTTP {response.status_code}, not a JSON object", source=self.name)
        if response.status_code != 200 or payload.get("status") != "success":
            error = payload.get("error", "") if isinstance(payload, dict) else ""
            message = f"{where}: HTTP {response.status_code}: {error}"
            retryable = response.status_code >= 500
            if response.status_code in _OVERLONG_STATUS or payload.get("errorType") == "timeout":
                why = f"HTTP {response.status_code}: {str(error)[:80]}"
                raise OverlongRead(message, source=self.name, why=why, retryable=retryable)
            raise SourceError(message, source=self.name, retryable=retryable)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise SourceError(f"{where}: response has no data", source=self.name)
        warnings = payload.get("warnings")
        if warnings:
            notes = [str(w) for w in warnings] if isinstance(warnings, list) else [str(warnings)]
            if all(note.startswith(_ANNOTATIONS) for note in notes):
                self._note_annotations(query.name, notes)
                return data
            # Thanos' partial_response, a Prometheus that could not read every block: series are missing
            # from this answer, not from the fleet. Read as a failure, so no detector sees them vanish.
            text = "; ".join(notes)
            raise SourceError(f"{where}: partial response: {text[:300]}", source=self.name, retryable=True)
        return data

    def _note_annotations(self, query: str, notes: list[str]) -> None:
        """Log a query's PromQL annotations once, and again only when they change (one entry per query)."""
        text = "; ".join(notes)
        if self._logged_annotations.get(query) == text:
            return
        self._logged_annotations[query] = text
        logger.warning(
            "promql: query %s: Prometheus annotated its answer (read and scored; fix the query or its"
            " metric if this matters): %s",
            query,
            text[:300],
            extra={"source": self.name, "query": query},
        )


def _millis(seconds: float) -> int:
    """Epoch seconds as whole milliseconds, Prometheus' resolution.

    The step grid is computed on these integers: in floating point ``floor(1.2 / 0.2)`` is 5, so a window
    one step wide could hold no grid point. Rounding (not flooring) keeps ``4.35`` at 4350 ms, and windows
    that share an end (``(a, b]`` then ``(b, c]``) still split the grid with no gap and no overlap.
    """
    return round(seconds * 1000)


def _seconds(millis: int) -> str:
    """Whole milliseconds as a decimal seconds parameter: ``1767225600.2``, ``30``, never an exponent."""
    whole, frac = divmod(millis, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".")


def _labels(item: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in item.get("metric", {}).items()}


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _matrix_to_frame(query: PromQuery, data: Mapping[str, Any], grid: np.ndarray, source: str) -> Frame:
    name = query.name
    if data.get("resultType") != "matrix":
        raise SourceError(f"query {name}: expected a matrix, got {data.get('resultType')!r}", source=source)
    try:
        return _read_matrix(name, data.get("result", []), grid, query.series_kind)
    except (AttributeError, TypeError, ValueError, IndexError, KeyError) as exc:
        # A 200 of another shape (a proxy, a different API): the source is down, not the service.
        raise SourceError(
            f"query {name}: malformed matrix result: {type(exc).__name__}: {exc}", source=source
        ) from exc


def _read_matrix(name: str, result: Any, grid: np.ndarray, kind: SeriesKind) -> Frame:
    """Every series' points placed on ``grid``, all series at once: done series by series, with a few small
    arrays each, 100,000 series of one point took 5 s on a loaded machine, longer than a tick's read."""
    if not isinstance(result, list):
        raise TypeError(f"result is {type(result).__name__}, not a list")
    labels = [_labels(item) for item in result]
    points = [item.get("values") or () for item in result]
    flat = [p for series in points for p in series]
    values = np.full((len(result), grid.size), np.nan)
    if not flat:
        return Frame(name, labels, grid, values, kind)
    step = grid[1] - grid[0] if grid.size > 1 else 1.0
    stamps = np.array([float(p[0]) for p in flat])
    got = np.array([_number(p[1]) for p in flat])
    rows = np.repeat(np.arange(len(result)), np.fromiter(map(len, points), np.int64, len(points)))
    cols = np.rint((stamps - grid[0]) / step).astype(np.int64)
    keep = (cols >= 0) & (cols < grid.size)
    cells, got = rows[keep] * grid.size + cols[keep], got[keep]
    ordered = cells.size < 2 or bool((cells[1:] > cells[:-1]).all())  # the usual answer: no sort needed
    if not ordered and np.unique(cells).size < cells.size:
        # Two samples on one step: an HA pair merged without dedup (Thanos, a federating proxy), one replica
        # a scrape behind. Whichever came last was taken, so a counter read 5, 4, 5 across steps: a reset
        # and 4 new errors. The largest is taken: a counter's lagging replica is behind.
        np.fmax.at(values.reshape(-1), cells, got)
    else:
        values.reshape(-1)[cells] = got
    return Frame(name, labels, grid, values, kind, _present(values.shape, cells, got))


def _present(shape: tuple[int, ...], cells: np.ndarray, got: np.ndarray) -> np.ndarray | None:
    """Which cells of a matrix of ``shape`` hold a sample (``Frame.present``), where one of the samples
    ``got`` (at flat ``cells``) is NaN; None where none is. A series whose only sample in a window was
    ``NaN`` (0/0 in a query) is read as a gap row, and the warm-up's replay must read it so too."""
    if not np.isnan(got).any():
        return None
    present = np.zeros(shape, np.bool_)
    present.reshape(-1)[cells] = True
    return present
