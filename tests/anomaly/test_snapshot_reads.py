"""A restart from a snapshot reads each query on from where that query was last read, as a live service does:
a query that failed just before the save is caught up in the replay, not left with a hole."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from anomaly.service import AnomalyService
from anomaly.snapshot import load_snapshot, save_snapshot
from gpuwarden.clock import FakeClock
from tests.anomaly.snapshot_grid import DAY, EVERY, QUERIES, GridSource, Scores, _same, _ticks
from tests.anomaly.snapshot_grid import _few_trees as _config
from tests.anomaly.snapshot_query_reads import OutageSource, QueryReadsSource


def _score_alike(clock: FakeClock, want: AnomalyService, got: AnomalyService, n: int) -> None:
    """The next ``n`` ticks of two services on one clock find the same, in the same order."""
    for _ in range(n):
        clock.advance(EVERY)
        expected, found = want.infer().findings, got.infer().findings
        assert [(f.detector, f.query, f.score.tolist()) for f in found] == [
            (f.detector, f.query, f.score.tolist()) for f in expected
        ]


def _scored(service: AnomalyService) -> dict[tuple[str, str], np.ndarray]:
    """One tick of ``service`` at the clock's time: its scores by detector and query (as ``_ticks``)."""
    return {(f.detector, f.query): f.score.copy() for f in service.infer().findings if f.detector != "source"}


def _tick_both(
    clock: FakeClock, straight: AnomalyService, restarted: AnomalyService, n: int
) -> tuple[tuple[Scores, AnomalyService], tuple[Scores, AnomalyService]]:
    """The scores of the next ``n`` ticks of the uninterrupted run and of the restarted one, on one clock,
    each with its service."""
    want: Scores = []
    got: Scores = []
    for _ in range(n):
        clock.advance(EVERY)
        want.append(_scored(straight))
        got.append(_scored(restarted))
    return (want, straight), (got, restarted)


def _counts(service: AnomalyService) -> list[list[int]]:
    """How many samples each adaptive model of ``service`` learnt from, per series."""
    adaptive = next(d for d in service.detectors if d.name == "adaptive")
    return [model.count.tolist() for model in adaptive._models.values()]


def _runs(
    tmp_path, lost: int, starts: int = 1, gone: bool = False
) -> tuple[tuple[Scores, AnomalyService], tuple[Scores, AnomalyService]]:
    """12 ticks, the temperature query failing at the 12th, the state saved after it, ``lost`` ticks a crash
    loses; then the scores of 6 more ticks, each with its service, of the uninterrupted run and of a new
    service and source started from the snapshot (``starts`` times, each saving again at once as a stop
    does), the two ticking together on one clock; with ``gone``, the last GPU's series end with the failed
    tick. The ticks before the save are run once: the restart reads only the file they left."""
    clock = FakeClock()
    source = QueryReadsSource()
    gone_after = clock.time() + 12 * EVERY if gone else None
    source.gone_after = gone_after
    straight = AnomalyService(_config(), [source], clock)
    straight.warm_up()
    _ticks(clock, straight, 11)
    source.failing = {QUERIES[0]}
    _ticks(clock, straight, 1)
    source.failing = set()
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    _ticks(clock, straight, lost)
    for _ in range(starts):
        fresh = QueryReadsSource()
        fresh.gone_after = gone_after
        restarted = AnomalyService(_config(), [fresh], clock)
        restarted.warm_up(snapshot=load_snapshot(path, restarted.cfg))
        assert save_snapshot(path, restarted.snapshot())
    return _tick_both(clock, straight, restarted, 6)


@pytest.mark.parametrize("lost", [3, 0], ids=["crash-losing-3-ticks", "stopped-and-started-within-a-tick"])
def test_a_query_that_failed_at_the_tick_before_the_save_is_caught_up_by_the_restart(tmp_path, lost):
    """The live service reads a failed query again from its own last good read; a restart replayed every
    query only from the source's, so the failed tick's temperatures were never fed to the detectors: the
    temperature's models held one sample fewer and scored otherwise than the uninterrupted run. Where no
    tick was missed they are fed with the first live tick, as the uninterrupted run fed them, not in a tick
    of their own."""
    (straight, kept), (restarted, taken) = _runs(tmp_path, lost=lost)
    assert any(q == QUERIES[0] for tick in straight for _, q in tick)
    assert _same(restarted, straight)
    assert _counts(taken) == _counts(kept)  # as many samples learnt from, every model


def test_a_save_before_the_first_tick_keeps_the_caught_up_samples_for_the_next_restart(tmp_path):
    """Stopped and started within a tick, the failed query's samples wait for the first live tick: a save
    before it (a stop at once) kept the query read up to the warm-up's read, and they were lost again."""
    (straight, kept), (restarted, taken) = _runs(tmp_path, lost=0, starts=2)  # started, stopped, started
    assert _same(restarted, straight)
    assert _counts(taken) == _counts(kept)


def test_a_series_in_only_the_held_over_half_is_read_as_one_read_returns_it(tmp_path):
    """Stopped and started within a tick, the failed query's samples held over for the first live tick were
    fed beside its live read as a second frame of the query: a GPU whose series ended with the failed tick
    (in the held frame, not in the live one) came through as a gap row besides its samples, where the
    uninterrupted run's one read from the query's last read returned it once (fuzz --failed-reads seed 37:
    the fleet detector scored a GPU the uninterrupted run did not)."""
    (straight, kept), (restarted, taken) = _runs(tmp_path, lost=0, gone=True)
    assert _same(restarted, straight)
    assert _counts(taken) == _counts(kept)


def _started(clock: FakeClock, path: Path | None = None, **settings: float) -> AnomalyService:
    """A service reading ``GridSource`` with ``settings``, never refitted (each start keeps its own models),
    warmed up from the snapshot at ``path`` (None: from the history alone)."""
    service = AnomalyService(_config(fit_every_seconds=DAY, **settings), [GridSource()], clock)
    service.warm_up(snapshot=None if path is None else load_snapshot(path, service.cfg))
    return service


def test_a_save_after_a_warm_up_that_replayed_no_tick_records_where_the_warm_up_read_up_to(tmp_path, caplog):
    """With ``latency_offset_seconds`` each read ends that long before now. A restart within a tick (no
    sample after its snapshot) replayed no tick, and its save recorded the time the service was made as
    read up to, the offset past what it read: the next restart replayed the ticks it missed on a grid
    shifted by the offset, the last past its own read, and its save, later than its now, was refused by the
    restart after it ("saved after now") though nothing had changed."""
    offset = 60.0
    clock = FakeClock()
    clock.advance(offset)  # the reads end on the tick grid

    started = partial(_started, clock, latency_offset_seconds=offset)

    straight = started()
    _ticks(clock, straight, 12)
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    restarted = started(path)  # within the tick: no tick replayed
    assert restarted.snapshot().read_until == clock.time() - offset  # what it read up to, not now
    assert save_snapshot(path, restarted.snapshot())
    _ticks(clock, straight, 2)  # stopped for two ticks
    later = started(path)
    assert later.snapshot().read_until == clock.time() - offset
    assert save_snapshot(path, later.snapshot())
    with caplog.at_level(logging.WARNING):
        last = started(path)  # stopped and started at once
    assert "anomaly state" not in caplog.text  # not refused
    _score_alike(clock, straight, last, 3)


def test_a_save_after_a_replayed_tick_ending_past_the_warm_ups_read_records_its_read(tmp_path, caplog):
    """The replay after a snapshot ends its ticks on the snapshot's grid, so a restart between two ticks of it
    replayed a last tick ending past what it read (``until``): a save then recorded that end as read up to,
    and a restart before the clock got there refused it as "saved after now", replaying the whole history
    without what the detectors had learnt. Its ticks scored otherwise than the process it restarted."""
    clock = FakeClock(1_767_225_600.0 + 100.0)  # the ticks 100 s past the data's 5-minute grid

    started = partial(_started, clock)

    first = started()
    _ticks(clock, first, 12)
    path = tmp_path / "state.npz"
    assert save_snapshot(path, first.snapshot())
    clock.advance(250.0)  # a sample 200 s after the save: its tick on the old grid ends 50 s from now
    restarted = started(path)
    assert restarted.snapshot().read_until == clock.time()  # what it read up to, not the replayed tick's end
    assert save_snapshot(path, restarted.snapshot())
    with caplog.at_level(logging.WARNING):
        again = started(path)  # stopped and started at once
    assert "anomaly state" not in caplog.text  # not refused
    _score_alike(clock, restarted, again, 3)


@pytest.mark.parametrize(
    ("before", "down"),
    [(0, 3), (2, 0), (0, 5)],
    ids=["down-3-ticks", "started-within-the-tick", "down-past-forget-after"],
)
def test_a_restart_while_a_query_fails_catches_it_up_from_the_snapshot_at_its_first_tick(
    tmp_path, before, down
):
    """Prometheus failing the temperature query through the restart's warm-up, from ``before`` ticks before
    the save: the uninterrupted service catches it up from its last good read at the first tick it reads
    again. The restarted one read it at that tick from the warm-up's end only, its samples since that read
    never fed (restart fuzz ``--failed-warm-ups``, 3 of 6 seeds): its models held fewer samples and scored
    otherwise. Started within the tick (no tick lost), the query fails from before the save: failing only
    from the save, its last good read was the snapshot's own, where the warm-up's end starts every read
    anyway, and the case passed without ``ResumableSource.resume``, the fix it guards. Down past
    ``forget_after_seconds`` (5 ticks), the warm-up's replay forgot the failing query's series, which the
    uninterrupted run holds while the query cannot be read (``SeriesIndex.expire(held=)``)."""
    clock = FakeClock()
    source = QueryReadsSource()
    straight = AnomalyService(_config(), [source], clock)
    straight.warm_up()
    _ticks(clock, straight, 12 - before)
    source.failing = {QUERIES[0]}
    _ticks(clock, straight, before)
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    _ticks(clock, straight, down)
    fresh = QueryReadsSource()
    fresh.failing = {QUERIES[0]}
    restarted = AnomalyService(_config(), [fresh], clock)
    restarted.warm_up(snapshot=load_snapshot(path, restarted.cfg))
    source.failing = fresh.failing = set()
    _score_alike(clock, straight, restarted, 4)
    assert _counts(restarted) == _counts(straight)


def _outage_runs(tmp_path: Path) -> tuple[tuple[Scores, AnomalyService], tuple[Scores, AnomalyService]]:
    """24 ticks, Prometheus down for the next 4 (past ``forget_after_seconds``, 3 ticks), then the scores of
    3 more, the first catching the outage up, each with its service: of the uninterrupted run, and of one
    saved at the outage's first tick and started again at its end, Prometheus still down for its warm-up,
    the two ticking together on one clock. The ticks before the save are run once."""
    clock = FakeClock()
    source = OutageSource()
    straight = AnomalyService(_config(), [source], clock)
    straight.warm_up()
    _ticks(clock, straight, 24)
    source.down = True
    _ticks(clock, straight, 1)
    path = tmp_path / "outage.npz"
    assert save_snapshot(path, straight.snapshot())
    _ticks(clock, straight, 3)
    fresh = OutageSource()
    fresh.down = True
    restarted = AnomalyService(_config(), [fresh], clock)
    restarted.warm_up(snapshot=load_snapshot(path, restarted.cfg))
    source.down = fresh.down = False
    return _tick_both(clock, straight, restarted, 3)


def test_a_prometheus_outage_longer_than_forget_after_forgets_no_series(tmp_path):
    """Every series went unseen through an outage of Prometheus past ``forget_after_seconds``: the ticks
    during it forgot them all, and the read that caught the outage up started each detector's state
    again from nothing (a week's profile lost), where a restart during the outage, which ran no tick then,
    kept it and scored otherwise (restart fuzz, outages alone: seeds 9, 23, 28). A query not read tells
    nothing of its series."""
    (straight, kept), (restarted, taken) = _outage_runs(tmp_path)
    assert _same(restarted, straight)
    assert _counts(taken) == _counts(kept)
    # Each model learnt from the samples before the outage too (ids not in use hold 0).
    assert all(c > 24 for model in _counts(kept) for c in model if c)
