from __future__ import annotations

import numpy as np

from anomaly.series import CounterRates, SeriesIndex, build_view
from anomaly.sources import Frame


def test_the_same_label_set_keeps_its_id_and_a_new_one_gets_another():
    index = SeriesIndex()
    a = index.ids_for("q", [{"gpu": "0"}, {"gpu": "1"}], 0.0)
    b = index.ids_for("q", [{"gpu": "1"}, {"gpu": "2"}], 1.0)
    assert b[0] == a[1]
    assert b[1] not in a
    assert index.ids_for("other", [{"gpu": "0"}], 1.0)[0] not in a


def test_series_unseen_for_forget_after_are_dropped_and_their_ids_recycled():
    index = SeriesIndex()
    old = index.ids_for("q", [{"gpu": "0"}, {"gpu": "1"}], 0.0)
    index.ids_for("q", [{"gpu": "1"}], 500.0)
    gone = index.expire(now=1000.0, forget_after=900.0)
    assert gone.tolist() == [old[0]]
    assert len(index) == 1
    assert index.ids_for("q", [{"gpu": "9"}], 1000.0)[0] == old[0]


def test_a_query_held_unread_keeps_its_series_and_a_node_gone_from_a_query_read_is_forgotten():
    """``held``: the queries a tick could not read (``ServiceCore._unread``). Their series tell nothing and
    are kept; a GPU gone from a query that reads well (its node down while Prometheus answers) is forgotten
    as without ``held``, also where one of the node's ids was freed before (a slot with no key)."""
    index = SeriesIndex()
    temp = index.ids_for("temp", [{"gpu": "0"}, {"gpu": "1"}], 0.0)
    power = index.ids_for("power", [{"gpu": "0"}, {"gpu": "1"}, {"gpu": "2"}], 0.0)
    assert index.expire(100.0, 50.0, held=lambda q: True).size == 0  # nothing read: nothing forgotten
    index.ids_for("power", [{"gpu": "0"}, {"gpu": "1"}], 100.0)  # gpu 2's node down; temp failing
    freed = index.expire(1000.0, 900.0, held=lambda q: q == "temp")
    assert freed.tolist() == [power[2]]
    assert index.id_of(("temp", (("gpu", "0"),))) == temp[0]
    assert index.expire(1000.0, 900.0, held=lambda q: q == "temp").size == 0  # the freed slot: no key
    index.ids_for("temp", [{"gpu": "0"}], 1000.0)  # read again: gpu 1's series is judged now
    assert index.expire(1000.0, 900.0, held=lambda q: False).tolist() == [temp[1]]


def test_a_counter_reset_counts_the_new_value_as_the_increase_not_a_negative_spike():
    rates = CounterRates()
    ids = np.array([0])
    rates.update(ids, np.array([100.0]), 0.0)
    inc, rate = rates.update(ids, np.array([130.0]), 10.0)
    assert inc[0] == 30 and rate[0] == 3
    inc, rate = rates.update(ids, np.array([5.0]), 20.0)
    assert inc[0] == 5 and np.isnan(rate[0])
    inc, rate = rates.update(ids, np.array([15.0]), 30.0)
    assert inc[0] == 10 and rate[0] == 1


def test_a_first_counter_sample_and_a_missing_one_have_no_rate():
    rates = CounterRates()
    ids = np.array([0])
    inc, rate = rates.update(ids, np.array([100.0]), 0.0)
    assert np.isnan(rate[0])
    inc, rate = rates.update(ids, np.array([np.nan]), 10.0)
    assert np.isnan(inc[0])
    inc, rate = rates.update(ids, np.array([110.0]), 20.0)
    assert rate[0] == 0.5


def test_build_view_orders_steps_in_time_and_keeps_the_newest_per_query():
    frame = Frame("q", [{"a": "1"}], np.array([10.0, 20.0]), np.array([[1.0, 2.0]]))
    counter = Frame("c_total", [{"a": "1"}], np.array([15.0]), np.array([[7.0]]), kind="counter")
    view = build_view([frame, counter], SeriesIndex(), CounterRates(), 20.0)
    assert [s.at for s in view.steps] == [10.0, 15.0, 20.0]
    assert view.latest["q"].raw[0] == 2.0
    assert np.isnan(view.latest["c_total"].value[0])


def test_a_series_answered_twice_is_one_row_of_the_view_at_its_larger_sample():
    # A proxy concatenating an HA pair's answers without dedup: two rows of one id went to the detectors,
    # and each kept whichever came last, the replica behind at every other read.
    index, rates = SeriesIndex(), CounterRates()
    gpu0, gpu1 = {"gpu": "0"}, {"gpu": "1"}
    for at, order in ((30.0, (5.0, 4.0)), (60.0, (4.0, 5.0))):
        values = np.array([[order[0]], [9.0], [order[1]]])
        frame = Frame("dbe_total", [gpu0, gpu1, gpu0], np.array([at]), values, kind="counter")
        step = build_view([frame], index, rates, at).latest["dbe_total"]
        assert step.labels == [gpu0, gpu1] and len(set(step.ids.tolist())) == 2
        assert step.raw.tolist() == [5.0, 9.0]
    assert step.increase.tolist() == [0.0, 0.0]  # no reset: 5 then 5, not 5, 4, 5


def test_the_label_to_id_mapping_is_reused_between_ticks_and_dropped_when_ids_are_freed():
    index = SeriesIndex()
    a = [{"gpu": "0"}, {"gpu": "1"}]
    first = index.ids_for("q", a, 0.0)
    again = index.ids_for("q", [dict(lab) for lab in a], 30.0)  # equal label sets, new dicts
    assert again.tolist() == first.tolist()
    assert index.last_seen[first].tolist() == [30.0, 30.0]
    moved = index.ids_for("q", [{"gpu": "1"}, {"gpu": "0"}], 60.0)
    assert moved.tolist() == first.tolist()[::-1]
    index.ids_for("other", [{"gpu": "9"}], 2000.0)
    freed = index.expire(2000.0, 900.0)
    assert sorted(freed.tolist()) == sorted(first.tolist())
    # The same label sets as the last cached tick: they must be registered again, not served from the cache.
    back = index.ids_for("q", [{"gpu": "1"}, {"gpu": "0"}], 2030.0)
    assert len(index) == 3
    assert index.keys[int(back[0])] == ("q", (("gpu", "1"),))
    assert index.keys[int(back[1])] == ("q", (("gpu", "0"),))


ORDERED = {"instance": "n1:9400", "job": "dcgm", "gpu": "0"}
REORDERED = {
    "gpu": "0",
    "job": "dcgm",
    "instance": "n1:9400",
}  # the same label set (a remote read, a relabel)


def test_a_label_set_in_another_order_is_the_same_series_at_the_next_tick():
    index = SeriesIndex()
    first = index.ids_for("q", [ORDERED, {**ORDERED, "gpu": "1"}], 0.0)
    index.expire(0.0, 900.0)
    # Another row beside it: the tick is not the last one's label sets, so each is looked up again.
    again = index.ids_for("q", [REORDERED, {**ORDERED, "gpu": "2"}], 30.0)
    assert again[0] == first[0]
    assert len(index) == 3


def test_a_label_set_in_another_order_is_the_same_series_after_a_snapshot_restore():
    index = SeriesIndex()
    first = index.ids_for("q", [ORDERED], 0.0)
    assert index.ids_for("q", [REORDERED], 30.0).tolist() == first.tolist()  # the tick's cache: one series
    restored = SeriesIndex()
    restored.restore(index.state())
    assert restored.ids_for("q", [REORDERED], 60.0).tolist() == first.tolist()
    assert restored.ids_for("q", [ORDERED], 90.0).tolist() == first.tolist()
    assert len(restored) == 1


def test_an_older_snapshot_holding_one_label_set_in_two_orders_is_taken_up_the_later_one_going_on():
    """An index saved before label sets were keyed whatever their order may hold one twice: the series read
    last goes on, the other is forgotten ``forget_after`` later, and the snapshot is not refused."""
    for older, newer in ((REORDERED, ORDERED), (ORDERED, REORDERED)):
        saved = SeriesIndex()
        state = saved.state()
        state.meta["queries"] = ["q"]
        state.meta["label_sets"] = [[list(p) for p in older.items()], [list(p) for p in newer.items()]]
        state.arrays.update(
            query=np.array([0, 0], np.int32),
            label_set=np.array([0, 1], np.int32),
            last_seen=np.array([0.0, 30.0]),
        )
        index = SeriesIndex()
        index.restore(state)
        assert index.ids_for("q", [older], 60.0).tolist() == [1]
        assert index.expire(960.0, 900.0).tolist() == [0]
        assert index.ids_for("q", [newer], 990.0).tolist() == [1]
        assert len(index) == 1
