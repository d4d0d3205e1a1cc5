import json
import math

import numpy as np
import pytest

from anomaly.needs import GPU_UP
from anomaly.rangeedges import RangeEdges
from anomaly.sources import Frame, joined

STEP = 30.0
WINDOW = 300.0


def blanked(missing: list[int], *, guarded: bool, others: bool = True) -> list[int]:
    """Steps of pod a that come back unscored from a 40-step read, beside the steps it has no point at; pod
    b (another target) has a point at every step when ``others``, else at the same steps as a."""
    ts = 1_767_225_600.0 + STEP * np.arange(40)
    values = np.ones((2, ts.size))
    values[0, missing] = math.nan
    if not others:
        values[1, missing] = math.nan
    frame = Frame("requests", [{"pod": "a"}, {"pod": "b"}], ts, values)
    out = RangeEdges(forget_after=3600).mask(frame, WINDOW, STEP, guarded=guarded)
    return [k for k in range(40) if k not in missing and not np.isfinite(out.values[0, k])]


NEW_RUN = list(range(21, 32))  # the range plus a step after the point that came back


@pytest.mark.parametrize(("guarded", "expected"), [(True, []), (False, NEW_RUN)], ids=["guarded", "bare"])
def test_one_missing_point_of_a_guarded_query_is_a_missed_scrape_not_a_new_run(guarded, expected):
    # Guarded (`rate(x[5m]) and x`), a failed scrape leaves a step with no point while the window still
    # holds the samples before it; unguarded, a missing point means the series was absent for the range.
    assert blanked([20], guarded=guarded) == expected


def test_two_missing_points_of_a_guarded_query_start_a_new_run_as_for_any_query():
    assert blanked([20, 21], guarded=True) == list(range(22, 33))


def test_a_step_the_whole_answer_missed_starts_a_new_run_of_a_guarded_query():
    # Nothing answered at that step: a Prometheus restarted, perhaps on an empty store whose windows ramp up.
    assert blanked([20], guarded=True, others=False) == NEW_RUN


def test_a_missed_scrape_at_the_last_step_of_one_read_is_known_at_the_next():
    edges = RangeEdges(forget_after=3600)
    labels = [{"pod": "a"}, {"pod": "b"}]
    kept = []
    for k in range(30):  # one step per read, as the service ticks
        value = np.array([[math.nan if k == 20 else 1.0], [1.0]])
        out = edges.mask(Frame("requests", labels, np.array([STEP * k]), value), WINDOW, STEP, guarded=True)
        kept.append(bool(np.isfinite(out.values[0, 0])))
    assert [k for k in range(30) if not kept[k]] == [20]


@pytest.mark.parametrize("answered", [math.nan, math.inf], ids=["nan-0-over-0", "inf-x-over-0"])
def test_a_point_answered_nan_or_inf_is_a_sample_of_a_running_series_not_a_gap(answered):
    # `rate(a[5m]) / rate(b[5m])` answers NaN (0/0, an idle GPU) or +Inf (x/0) over a full window: read as
    # no point, two of them began a new run and the range after them went unscored.
    edges = RangeEdges(forget_after=3600)
    ts = 1_767_225_600.0 + STEP * np.arange(40)
    values = np.ones((1, ts.size))
    values[0, 20:22] = answered
    present = np.ones(values.shape, np.bool_)  # as the reader gives a NaN sample (``Frame.present``)
    out = edges.mask(Frame("ratio", [{"gpu": "0"}], ts, values, "gauge", present), WINDOW, STEP)
    assert np.isfinite(out.values[0, 22:]).all()
    assert np.array_equal(out.values[0, 20:22], values[0, 20:22], equal_nan=True)


def test_a_series_twice_in_the_parts_of_a_read_is_joined_as_one_row_of_its_larger_samples():
    # A proxy that concatenates an HA pair's answers without dedup, read in parts: the row read last in
    # each part was kept, replicas in either order, a counter 5, 4, 5 across the read.
    gpu = {"gpu": "0"}
    first = Frame("dbe", [gpu, {"gpu": "1"}, gpu], np.array([30.0]), np.array([[4.0], [7.0], [5.0]]))
    present = np.array([[True], [False]])  # the second row: no sample
    second = Frame("dbe", [gpu, gpu], np.array([60.0]), np.array([[5.0], [math.nan]]), "gauge", present)
    both = joined([first, second])
    assert both.labels == [gpu, {"gpu": "1"}]
    assert np.array_equal(both.values, [[5.0, 5.0], [7.0, math.nan]], equal_nan=True)
    assert both.samples.tolist() == [[True, True], [True, False]]


def test_what_was_answered_at_a_blanked_point_is_kept_beside_it_and_nowhere_else():
    # GpuLost asks only whether a series answered: a GPU back after a gap answers at once, blanked or not.
    ts = 1_767_225_600.0 + STEP * np.arange(40)
    values = np.ones((2, ts.size))
    values[0, [20, 21]] = math.nan
    values[0, 22:] = 0.5
    out = RangeEdges(forget_after=3600).mask(
        Frame(GPU_UP, [{"gpu": "0"}, {"gpu": "1"}], ts, values), WINDOW, STEP
    )
    assert out.partial is not None
    assert np.flatnonzero(np.isfinite(out.partial[0])).tolist() == list(range(22, 33))
    assert (out.partial[0, 22:33] == 0.5).all() and np.isnan(out.partial[1]).all()
    assert out.rows([0], [{"gpu": "0"}]).partial[0, 22] == 0.5
    steady = Frame(GPU_UP, [{"gpu": "1"}], ts, np.ones((1, ts.size)))
    assert RangeEdges(forget_after=3600).mask(steady, WINDOW, STEP).partial is None
    # Kept for GpuLost's query alone: another range query's blanked points cost no copy of its values.
    other = RangeEdges(forget_after=3600).mask(
        Frame("requests", [{"gpu": "0"}], ts, values[:1]), WINDOW, STEP
    )
    assert other.partial is None and np.isnan(other.values[0, 22])


def test_what_was_answered_at_a_blanked_point_stays_at_its_series_and_step_when_reads_are_joined():
    # A restart's held-over samples are joined to the first live read (``service._with_held_over``): the
    # live read's rows come in another order, one series only in it, and one part holds no blanked point.
    edges = RangeEdges(forget_after=3600)
    ts = 1_767_225_600.0 + STEP * np.arange(12)
    values = np.ones((2, ts.size))
    values[1, :10] = math.nan  # gpu 1 new at the tenth step: blanked from there
    held = edges.mask(Frame(GPU_UP, [{"gpu": "0"}, {"gpu": "1"}], ts[:6], values[:, :6]), WINDOW, STEP)
    live = edges.mask(Frame(GPU_UP, [{"gpu": "1"}, {"gpu": "0"}], ts[6:], values[::-1, 6:]), WINDOW, STEP)
    assert held.partial is None and live.partial is not None
    both = joined([held, live])
    assert both.partial is not None and both.labels == [{"gpu": "0"}, {"gpu": "1"}]
    assert np.isnan(both.partial[0]).all()
    assert np.flatnonzero(np.isfinite(both.partial[1])).tolist() == [10, 11]


def _read(edges: RangeEdges, k: int, gone: set[int], query: str = "requests") -> list[bool]:
    """Step ``k`` read alone (as a tick reads it): whether pods a and b come back scored; a has no point at
    the steps in ``gone``."""
    values = np.array([[math.nan if k in gone else 1.0], [1.0]])
    frame = Frame(query, [{"pod": "a"}, {"pod": "b"}], np.array([STEP * k]), values)
    return np.isfinite(edges.mask(frame, WINDOW, STEP).values[:, 0]).tolist()


def test_runs_taken_up_from_a_state_go_on_as_the_edges_that_saved_them():
    # Pod a misses steps 20-21; saved at step 21, a new process whose first read is step 22 (a failed
    # warm-up's catch-up) takes a back from a gap, unscored for the range, as the process before it did.
    gone = {20, 21}
    before = RangeEdges(forget_after=3600)
    for k in range(22):
        _read(before, k, gone)
    meta, arrays = before.state()
    after = RangeEdges(forget_after=3600)
    after.take_up(RangeEdges.saved(json.loads(json.dumps(meta)), arrays))
    without = RangeEdges(forget_after=3600)
    reads = [(_read(before, k, gone), _read(after, k, gone), _read(without, k, gone)) for k in range(22, 40)]
    assert [b for b, _, _ in reads] == [a for _, a, _ in reads]
    assert [k for k, (b, _, _) in zip(range(22, 40), reads, strict=True) if not b[0]] == list(range(22, 33))
    assert all(w == [True, True] for _, _, w in reads)  # a first read takes a as running before it


def test_taking_up_runs_leaves_a_query_this_process_read_as_its_reads_built_it():
    saved = RangeEdges(forget_after=3600)
    for k in range(10):
        _read(saved, k, set())
    edges = RangeEdges(forget_after=3600)
    for k in range(20):  # pod a back from a gap, read by this process: a new run at 15
        _read(edges, k, set(range(10, 15)))
    edges.take_up(RangeEdges.saved(*saved.state()))
    assert [_read(edges, k, set())[0] for k in range(20, 28)] == [False] * 6 + [True] * 2


def test_saved_runs_that_do_not_fit_are_refused():
    edges = RangeEdges(forget_after=3600)
    _read(edges, 0, set())
    _read(edges, 0, set(), query="errors")
    meta, arrays = edges.state()
    assert len(meta["edge_labels"]) == 2  # pods a and b, each once for both queries
    with pytest.raises(ValueError, match="4 runs in the queries' rows, 3 kept"):
        RangeEdges.saved(meta, {key: array[:3] for key, array in arrays.items()})
    with pytest.raises(ValueError, match=r"\(4,\), \(3,\), \(4,\)"):
        RangeEdges.saved(meta, {**arrays, "edge_start": arrays["edge_start"][:3]})
    with pytest.raises(IndexError, match="beyond the 2 kept"):
        RangeEdges.saved(meta, {**arrays, "edge_series": arrays["edge_series"] + 1})
