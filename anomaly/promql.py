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

The source is split by what each part does: the queries (``anomaly.promquery``), the requests and their
errors (``anomaly.promhttp``) and the answers read into frames (``anomaly.promframes``); here is the read.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

import httpx

from anomaly.catchup import CatchUp
from anomaly.coarsestate import coarse_state, restore_coarse
from anomaly.coarsesteps import CoarseSteps
from anomaly.promhttp import MAX_POINTS, OverlongRead, PromQLClient
from anomaly.promquery import DCGM_COUNTERS, PromQuery, filters_series, inferred_kind, selected_metric
from anomaly.rangeedges import RangeEdges, Runs, range_seconds
from anomaly.snapshot import State
from anomaly.sources import Frame, QueryHealth, SourceHealth, joined
from gpuwarden.clock import Clock
from gpuwarden.errors import SourceError
from gpuwarden.redaction import hidden_password

# What other modules, the benchmarks and the tests import from here, wherever it is defined.
__all__ = [
    "DCGM_COUNTERS",
    "MAX_POINTS",
    "MAX_WORKERS",
    "OverlongRead",
    "PromQLSource",
    "PromQuery",
    "filters_series",
    "inferred_kind",
    "named",
    "selected_metric",
]

logger = logging.getLogger(__name__)

MAX_WORKERS = 4  # queries read at once: enough that one slow query waits alone, few for Prometheus
_NAMED = 3  # queries named per cause of a source outage; the rest are counted


def named(names: Sequence[str]) -> str:
    """The first few of ``names`` and how many more: ``A, B, C and 21 more``."""
    more = f" and {len(names) - _NAMED} more" if len(names) > _NAMED else ""
    return ", ".join(names[:_NAMED]) + more


class PromQLSource(PromQLClient):
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
        setting: str = "the source's URL",
        config_file: str | None = None,
    ) -> None:
        """``deadline_seconds``: the most a whole ``read`` waits (``timeout_seconds`` when None); give it
        less than the tick interval. ``workers``: queries read at once. ``setting``: what gives
        ``base_url``, named where an answer says to ask elsewhere (a redirect). ``config_file``: where the
        queries are written, named where the server cannot parse or type one (HTTP 400)."""
        self.name = name
        self._setting = setting
        self._config_file = config_file
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
        self._saved_edges: Runs | None = None  # a state's range edges, for the queries its warm-up misses
        self._catch_up = CatchUp(name, max_lookback_seconds)
        self.coarse = CoarseSteps(name, filters={q.name for q in self.queries if filters_series(q.expr)})
        # What the read after ``restore`` of a state would have taught without it (``_learning`` while it
        # runs, ``_untaken`` after): taken up where that state is let go of.
        self._learning: CoarseSteps | None = None
        self._untaken: CoarseSteps | None = None
        self._logged_failures: dict[str, str] = {}  # query -> its error as last logged (``_failure_kind``)
        self._logged_empty: set[str] = set()  # queries last said to match no series
        self._logged_annotations: dict[str, str] = {}  # query -> its PromQL annotations, as last logged
        self._timeout = timeout_seconds
        self._sent: dict[str, float] = {}  # query -> when its last request went out (time.monotonic)
        self._parts: dict[str, int] = {}  # query -> the most steps a request asks, where more were refused
        self._unsplit: set[str] = set()  # queries refused at one step since their last good read
        self._clean: dict[str, int] = {}  # query -> its reads in parts since one was refused or tried longer
        self._parts_found: list[tuple[str, int, str, int]] = []
        self._parts_grown: list[tuple[str, int]] = []
        # query -> the parts its read in progress has got, newest first (``read_so_far``)
        self._got: dict[str, list[Frame]] = {}

    def resume(self, read: Mapping[str, float], default: float) -> None:
        """Read each query not read yet from ``read[query]``, else ``default`` (``ResumableSource``): its next
        read catches it up from there, as after a failed read of it (``CatchUp``), going on from the range
        edges of the state taken up (``restore``) where no read of this process rebuilt them."""
        for query in self.queries:
            self._read_until.setdefault(query.name, read.get(query.name, default))
        if self._saved_edges is not None:
            self._edges.take_up(self._saved_edges)
            self._saved_edges = None

    def state(self) -> State:
        """The answer steps learnt (``anomaly.coarsestate``): a new process sees a coarser step again only
        after 20 asked steps, past the warm-up's hour at a 300 s step; and the range edges
        (``anomaly.rangeedges``: when each series' run of points began)."""
        coarse = coarse_state(self.coarse)
        meta, arrays = self._edges.state()
        return State({**coarse.meta, **meta}, {**coarse.arrays, **arrays})

    def restore(self, state: State | None) -> None:
        """Take up ``state`` (``state()``) before the first read; None: what this process' own reads taught,
        nothing taken up (a snapshot refused after its state was taken up for the warm-up's read).

        The read after a ``state`` is learnt twice, with it and as without it (``_untaken``): a refused
        snapshot (another fleet's) let go of what the warm-up's hour had taught too, and its spacings of an
        answer every other step were counted again from nothing (20 asked steps, not the 10 left)."""
        filters = self.coarse.filters
        self._saved_edges = None
        if state is None:
            self.coarse = self._untaken or self._learning or CoarseSteps(self.name, filters=filters)
            self._untaken = self._learning = None
            return
        saved_edges = RangeEdges.saved(state.meta, state.arrays)
        self.coarse = CoarseSteps(self.name, filters=filters)
        self._learning, self._untaken = CoarseSteps(self.name, filters=filters), None
        restore_coarse(self.coarse, state)
        self._saved_edges = saved_edges  # taken up for the queries the warm-up does not read (``resume``)

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
        since, futures = self._ask(start, end)
        wait(futures.values(), timeout=self.deadline_seconds)
        frames: list[Frame] = []
        failed: dict[str, str] = {}
        refused: set[str] = set()  # failed with an answer of Prometheus' own (HTTP 4xx): it is reachable
        read: set[str] = set()
        partly: set[str] = set()  # failed, their newest steps read (``_partly``): Prometheus answered
        empty: list[str] = []
        for query in self.queries:
            health = self._health.queries.setdefault(query.name, QueryHealth())
            got = self.read_so_far(query.name)  # its newest parts, where its time ran out before the rest
            try:
                frame = self._answer(query, futures[query.name])
            except SourceError as exc:
                health.failed(str(exc))
                if not exc.retryable:
                    refused.add(query.name)
                # This read's parts only: a worker of the last read, cut at its deadline, may have left some.
                got = [p for p in got if p.timestamps[0] > since[query.name]]
                if isinstance(exc, OverlongRead) and not exc.refused and got:  # its time ran out
                    frames.extend(self._partly(query, got, health, end))
                    partly.add(query.name)
                elif isinstance(exc, OverlongRead) and query.name not in self._unsplit:
                    # (One refused at one step too is refused for what it asks, not its length: a 422 for
                    # duplicate series, a label come between two reads, left its catch-up "too long".)
                    self._too_long(query, since[query.name], end, exc.why)
                failed[query.name] = health.last_error
                continue
            self._catch_up.succeeded(query.name)
            frame = self._kept(query, frame, health, end, read)
            if frame.timestamps.size:  # else the window held no step: nothing was asked
                read.add(query.name)
                if not frame.labels:
                    empty.append(query.name)
                health.succeeded(self._clock.time(), len(frame.labels))
                self._read_until[query.name] = end
                _, guarded = query.sent
                step = self.coarse.step(query.name, query.step_seconds)
                frames.append(self._edges.mask(frame, self._ranges[query.name], step, guarded=guarded))
        if read or partly or refused:
            self._catch_up.answered()
        if failed and not read and not partly and not self._up_elsewhere(failed, refused):
            self._health.failed(self._outage(failed))
        elif read or partly or self._health.up:
            # A read that asked nothing (no query's step in its window) is no news: a source down stays
            # down. It came up after a failed warm-up, so `anomaly run --ticks 1` exited 0 or 1 by the
            # wall clock (whether its one tick fell on a query's step).
            self._health.succeeded(self._clock.time(), sum(h.series for h in self._health.queries.values()))
        # Until the next read only: what the read after a state taken up learnt as without it (``restore``).
        self._untaken, self._learning = self._learning, None
        for name, h in self._health.queries.items():
            h.answer_step = self.coarse.answer_step(name)
            h.part_steps = self._parts.get(name)
        self._catch_up.flush()
        self._say_parts()
        self._log_failures(failed, read)
        self._log_empty(empty, read)
        return frames

    def _answer(self, query: PromQuery, future: Future[Frame]) -> Frame:
        """``future``'s frame; ``SourceError`` where it failed, or gave no answer within the deadline: one
        already running ends by the client's timeout, its answer dropped (``OverlongRead``, its time spent);
        one that never started (the others took the deadline) was not too long, its catch-up left whole."""
        if future.done():
            return future.result()
        error = f"query {query.name}: no answer within the read's {self.deadline_seconds:g}s deadline"
        if future.cancel():
            raise SourceError(error)
        raise OverlongRead(error, source="", why="no answer in time", refused=False)

    def _ask(self, start: float, end: float) -> tuple[dict[str, float], dict[str, Future[Frame]]]:
        """Send every query's read over ``(start, end]`` (or from where it last failed) to the pool: where
        each starts, and its answer to come."""
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
            q.name: self._pool.submit(self.query_range, q, since[q.name], end, deadline=deadline)
            for q in order
        }
        return since, futures

    def _kept(self, query: PromQuery, frame: Frame, health: QueryHealth, end: float, read: set[str]) -> Frame:
        """``frame`` without the steps its coarser answers leave empty (``CoarseSteps.keep``). Where that is
        all of the window, Prometheus answered it between two answers of the coarser step: the query read
        well, with nothing to feed. Left as not asked, a query that had failed stayed failing until its next
        answer, up to its step later: ``GpuwardenSourceStale`` and its alerts held while it read well (and
        a new process, which never saw it fail, did not: restart fuzz, coarse answers alone)."""
        if not frame.timestamps.size:  # an answer on a coarser step leaves no step of it in some windows
            return frame
        kept = self._keep(frame, query.step_seconds)
        if not kept.timestamps.size:
            health.succeeded(self._clock.time(), health.series)
            self._read_until[query.name] = end
            read.add(query.name)
        return kept

    def _partly(self, query: PromQuery, got: list[Frame], health: QueryHealth, end: float) -> list[Frame]:
        """The newest steps of a read whose time ran out (``got``: its parts, in time order), as a read of
        them; the query stays failing (``health``: no whole read), and reads on from ``end``.

        A read that needed more requests than its deadline allows failed whole: a query never read (no
        catch-up to shorten, ``CatchUp``) asked the same window at every tick and never read, for good.
        The newest steps fed keep the detectors current; the older steps of the window are left out, a
        gap, never fed later (each series' time goes forward only), as a shortened catch-up leaves them.
        Its alerts are held and its age counts from its last whole read (``GpuwardenSourceStale``) until a
        read fits in its deadline: a larger ``deadline_seconds`` or step, or a server limit raised."""
        frame = got[0] if len(got) == 1 else joined(got)
        health.last_error += "; its newest steps read and fed, the older ones of its window unread (a gap)"
        kept = self._keep(frame, query.step_seconds)
        self._read_until[query.name] = end
        if not kept.timestamps.size:
            return []
        _, guarded = query.sent
        step = self.coarse.step(query.name, query.step_seconds)
        return [self._edges.mask(kept, self._ranges[query.name], step, guarded=guarded)]

    def _keep(self, frame: Frame, step: float) -> Frame:
        """``frame`` as ``CoarseSteps.keep`` keeps it; in the read after ``restore`` of a state, learnt as
        without that state too (``_learning``)."""
        if self._learning is not None:
            self._learning.keep(frame, step)
        return self.coarse.keep(frame, step)

    def _too_long(self, query: PromQuery, since: float, end: float, why: str) -> None:
        """A read of ``(since, end]`` failed for its size: its next catch-up asks less (``CatchUp.failed``;
        for a query this process never read, where it asked from before its last read's end)."""
        read = query.name in self._read_until
        self._catch_up.failed(query.name, since, end, query.step_seconds, why, read_before=read)

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
        changed = {q: e for q, e in failed.items() if self._logged_failures.get(q) != _failure_kind(e)}
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
        kinds = {q: _failure_kind(e) for q, e in failed.items()}
        self._logged_failures = {q: e for q, e in self._logged_failures.items() if q not in read} | kinds


# The times an error names that change at every read of one failure: VictoriaMetrics' errors name the range
# asked (``start=1796610140000, end=...`` and ``[2026-12-07T02:17:15Z..2026-12-07T02:22:20Z]``).
_READ_TIMES = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?|\d{10,}(?:\.\d+)?")


# A read that got no answer in time says so two ways: the request's own timeout (httpx' ``ReadTimeout``, one
# cut at the read's deadline too) or the read's deadline passed before its request began or ended. A server
# hung (SIGSTOP) gave either at each tick as it fell, and was logged as "failing another way" every few ticks.
_NO_ANSWER_IN_TIME = re.compile(r": ReadTimeout: |: no answer within the read's [\d.]+s deadline$")


def _failure_kind(error: str) -> str:
    """``error`` without the times of its read: one failure read again, the same. Compared whole, a query
    over VictoriaMetrics' ``-search.maxUniqueTimeseries`` was "failing another way" at every tick, and the
    warning naming every such query was logged at every tick for as long as the limit held."""
    if _NO_ANSWER_IN_TIME.search(error):
        return "no answer in time"
    return _READ_TIMES.sub("<t>", error)
