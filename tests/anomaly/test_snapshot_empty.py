"""A restart from a snapshot judges whether a source is empty (Prometheus answering with no series: every
exporter gone) on what its reads after the snapshot return, as the uninterrupted service's ticks read them:
``GpuwardenSourceStale`` ("its targets are gone") is raised whether or not the service restarted."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from anomaly.health import report
from anomaly.service import AnomalyService
from anomaly.snapshot import load_snapshot, save_snapshot
from anomaly.sources import Frame, QueryHealth, SourceHealth
from gpuwarden.clock import FakeClock
from tests.anomaly.snapshot_grid import EVERY, GPUS, QUERIES, _value
from tests.anomaly.snapshot_grid import _few_trees as _config

PHASE = 34.0  # the ticks' phase on the queries' grid (seed 2209's): a tick's window holds one step


class GoneSource:
    """Prometheus as ``PromQLSource`` reads it over the snapshot tests' grid: each query from its own last
    good read, the queries in ``failing`` failing (their last count of series standing), and every series'
    samples in ``gone`` (a window) taken out: a read of it answers with no series at all."""

    name = "prometheus"

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.failing: set[str] = set()
        self.gone: tuple[float, float] | None = None
        self._done: dict[str, float] = {}
        self._health = SourceHealth(self.name)

    def health(self) -> SourceHealth:
        return self._health

    def resume(self, read: Mapping[str, float], default: float) -> None:
        """As ``PromQLSource.resume``: each query not read yet from ``read[query]``, else ``default``."""
        for query in QUERIES:
            self._done.setdefault(query, read.get(query, default))

    def read(self, start: float, end: float) -> list[Frame]:
        out = []
        for k, query in enumerate(QUERIES):
            health = self._health.queries.setdefault(query, QueryHealth())
            if query in self.failing:
                health.failed(f"query {query}: HTTP 503")
                continue
            since = min(start, self._done.get(query, start))
            ts = np.arange(math.floor(since / EVERY) * EVERY + EVERY, end + 1, EVERY)
            ts = ts[(ts > since) & (ts <= end)]
            values = np.column_stack([_value(k, t) for t in ts.tolist()]) if ts.size else np.zeros((8, 0))
            if self.gone is not None:
                values[:, (ts > self.gone[0]) & (ts <= self.gone[1])] = np.nan
            sampled = bool((~np.isnan(values)).any())
            self._done[query] = end
            health.succeeded(self.clock.time(), len(GPUS) if sampled else 0)
            if sampled:  # the whole grid, as ``PromQLSource`` places a read's points on it
                out.append(Frame(query, GPUS, ts, values))
            elif ts.size:
                out.append(Frame(query, [], ts, np.zeros((0, ts.size))))
        self._health.succeeded(self.clock.time(), sum(h.series for h in self._health.queries.values()))
        return out


def _service(
    clock: FakeClock,
    path: Path | None = None,
    gone: tuple[float, float] | None = None,
    failing: frozenset[str] = frozenset(),
) -> AnomalyService:
    """A service reading a new ``GoneSource`` (a new process, ``gone`` its outage, the queries ``failing``
    failing), warmed up from the snapshot at ``path``."""
    source = GoneSource(clock)
    source.gone = gone
    source.failing = set(failing)
    service = AnomalyService(_config(), [source], clock)
    service.warm_up(snapshot=None if path is None else load_snapshot(path, service.cfg))
    return service


def _firing(service: AnomalyService) -> bool:
    """Whether the source's own ``GpuwardenSourceStale`` fires (not a query's)."""
    return any(
        s.alert.labels["alertname"] == "GpuwardenSourceStale" and "query" not in s.alert.labels
        for s in service.firing.values()
    )


def test_a_restart_during_a_total_exporter_outage_raises_that_the_targets_are_gone(tmp_path):
    """Restart fuzz seed 2209: every exporter gone for two ticks, one query failing at the first of them
    (its count of series standing: the source not yet empty), the snapshot saved then, the restart 282 s
    later, before the next tick was due, and the exporters back by its first tick, 300 s after its start.
    The uninterrupted run read no series at the next tick and raised ``GpuwardenSourceStale``; the restarted
    one judged the source on its warm-up's whole hour, which held series, and never raised it."""
    clock = FakeClock(1_767_225_600.0 + PHASE)
    straight = _service(clock)
    source: GoneSource = straight.sources[0]  # type: ignore[assignment]
    for _ in range(12):
        clock.advance(EVERY)
        straight.infer()
    saved = clock.time() + EVERY
    source.gone = (saved - EVERY, saved + EVERY)  # the steps read at the save and at the next tick
    source.failing = {QUERIES[0]}
    clock.advance(EVERY)
    straight.infer()
    assert not straight.health()[0].empty and not _firing(straight)  # the failing query's series stand
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    source.failing = set()

    clock.advance(282)
    restarted = _service(clock, path, source.gone)
    assert report(restarted)["reasons"] == [  # readiness says so too, aged from the last read with series
        "source_empty: prometheus: answers with no series for 282 s (its targets are gone or not scraped)"
    ]
    want, got = [], []
    for _ in range(4):  # each of the restarted run's ticks reads the step the next one of the other reads
        clock.advance(EVERY - 282)
        straight.infer()  # the first reads no series at all (raised), the next ones the exporters back
        want.append(_firing(straight))
        clock.advance(282)
        restarted.infer()
        got.append(_firing(restarted))
    assert want[0] and got[:3] == want[1:], (want, got)


def _saved(clock: FakeClock, tmp_path: Path, gone: bool) -> tuple[AnomalyService, Path]:
    """A service warm for 12 ticks, then, ``gone``, 2 ticks with every exporter gone (``GpuwardenSourceStale``
    raised), its snapshot saved: the uninterrupted run, and the path a restart takes it up from."""
    straight = _service(clock)
    for _ in range(12):
        clock.advance(EVERY)
        straight.infer()
    if gone:
        straight.sources[0].gone = (clock.time(), math.inf)  # type: ignore[attr-defined]
        for _ in range(2):
            clock.advance(EVERY)
            straight.infer()
    assert _firing(straight) == gone
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    return straight, path


@pytest.mark.parametrize("gone", [False, True], ids=["series-read", "targets-gone"])
def test_a_restart_whose_read_after_the_snapshot_asks_no_step_leaves_the_source_as_it_was(tmp_path, gone):
    """Restarted 200 s after the save, before any step after it: its warm-up's read after the snapshot
    asked nothing, which says nothing of the targets. A source that returned series is not taken for empty
    (its last read with series 200 s old, past ``absent_after_seconds``: a false alert), and one that
    returned none stays empty, aged from the last read with series, its alert firing on."""
    clock = FakeClock(1_767_225_600.0 + PHASE)
    straight, path = _saved(clock, tmp_path, gone)
    clock.advance(200)
    restarted = _service(clock, path, straight.sources[0].gone)  # type: ignore[attr-defined]
    reasons = report(restarted)["reasons"]
    assert _firing(restarted) == gone
    empty = "source_empty: prometheus: answers with no series for 800 s (its targets are gone or not scraped)"
    assert reasons == ([empty] if gone else [])
    clock.advance(EVERY - 200)
    straight.infer()
    restarted.infer()
    assert _firing(restarted) == _firing(straight) == gone
    assert report(restarted)["reasons"] == report(straight)["reasons"]


def test_a_query_failing_through_a_restart_keeps_its_series_when_the_others_find_their_targets_gone(
    tmp_path,
):
    """One query failing from before the save (its 8 series standing), every other query's targets gone: the
    uninterrupted run's source holds the failing query's series, not empty. The restarted one kept the
    source's series as one count, took the others' reads of none after the snapshot for the whole source's,
    and raised "its targets are gone" (readiness failing too)."""
    clock = FakeClock(1_767_225_600.0 + PHASE)
    straight = _service(clock)
    source: GoneSource = straight.sources[0]  # type: ignore[assignment]
    for _ in range(12):
        clock.advance(EVERY)
        straight.infer()
    source.failing = {QUERIES[0]}
    clock.advance(EVERY)
    straight.infer()
    source.gone = (clock.time(), math.inf)
    for _ in range(2):
        clock.advance(EVERY)
        straight.infer()
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    clock.advance(EVERY)
    straight.infer()
    restarted = _service(clock, path, source.gone, frozenset(source.failing))
    want, got = [], []
    for _ in range(4):
        clock.advance(EVERY)
        straight.infer()
        restarted.infer()
        want.append((_firing(straight), report(straight)["reasons"], _series(straight)))
        got.append((_firing(restarted), report(restarted)["reasons"], _series(restarted)))
    assert got == want
    # gpuwarden_anomaly_query_series: the failing query's stand, the others read none
    assert want[-1] == (False, [], [8] + [0] * (len(QUERIES) - 1))


def _series(service: AnomalyService) -> list[int]:
    """Each query's series as the service reports them (``gpuwarden_anomaly_query_series``)."""
    return [q.series for q in service.health()[0].queries.values()]
