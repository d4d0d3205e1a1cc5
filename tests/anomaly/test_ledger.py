from __future__ import annotations

import numpy as np
import pytest

from anomaly.ledger import GpuValueLedger, gpu_key
from anomaly.series import CounterRates, SeriesIndex, View, build_view
from anomaly.sources import Frame

A = {"gpu": "0", "UUID": "GPU-a", "Hostname": "n1"}
B = {"gpu": "1", "UUID": "GPU-b", "Hostname": "n1"}
XID = "gpuwarden_xid_errors_total"


class Reads:
    def __init__(self, memory_seconds: float = 3600.0) -> None:
        self.index, self.rates = SeriesIndex(), CounterRates()
        self.ledger = GpuValueLedger(memory_seconds)

    def read(
        self, t: float, xids: list[tuple[dict[str, str], float]], up: list[dict[str, str]]
    ) -> list[float]:
        """The XID increases of one tick, after noting the GPUs that report up."""
        frames = [Frame("gpuwarden_gpu_up", up, np.array([t]), np.ones((len(up), 1)))]
        if xids:
            labels = [{**g, "xid": "79"} for g, _ in xids]
            frames.append(Frame(XID, labels, np.array([t]), np.array([[v] for _, v in xids])))
        view: View = build_view(frames, self.index, self.rates, t)
        self.ledger.expire(t)
        if up:
            self.ledger.observe(view.latest["gpuwarden_gpu_up"], t)
        if not xids:
            return []
        return self.ledger.increase(view, view.latest[XID], count_new=True).tolist()


def test_a_gpu_is_its_uuid_or_else_its_host_and_index():
    assert gpu_key({**A, "pod": "p"}) == gpu_key({**A, "instance": "x:9400"}) == ("GPU-a", "")
    assert gpu_key({"instance": "x:9400", "gpu": "3"}) == ("x:9400", "3")


@pytest.mark.parametrize("label", ["node", "Hostname", "hostname", "nodename"])
def test_the_gpus_of_two_nodes_named_by_any_node_label_are_two_gpus_with_an_error_each(label):
    # No UUID and no instance (a relabelled federation): the node label alone tells node n1's GPU 0 from
    # n2's, as alerting places their alerts (gpuwarden.model.NODE_LABELS).
    one, two = {label: "n1", "gpu": "0"}, {label: "n2", "gpu": "0"}
    assert gpu_key(one) != gpu_key(two)
    reads = Reads()
    reads.read(0.0, [], [one, two])
    assert reads.read(30.0, [(one, 1.0), (two, 1.0)], [one, two]) == [1.0, 1.0]


def test_two_series_of_one_gpu_count_its_error_once():
    reads = Reads()
    twice = [({**A, "exporter": "gpuwarden"}, 1.0), ({**A, "exporter": "other"}, 1.0)]
    reads.read(0.0, [], [A])
    first = reads.read(30.0, twice, [A])
    assert np.nansum(first) == 1
    again = reads.read(60.0, [(g, 2.0) for g, _ in twice], [A])
    assert np.nansum(again) == 1 and np.isnan(again).sum() == 1


def test_a_gpu_unread_longer_than_the_memory_is_met_anew_and_its_old_count_is_history():
    reads = Reads(memory_seconds=300.0)
    reads.read(0.0, [], [A, B])
    assert reads.read(30.0, [(A, 1.0)], [A, B]) == [1.0]
    # Inside the memory, a series back after an absence compares with its last count.
    assert reads.read(200.0, [(A, 1.0)], [A, B]) == [0.0]
    # The whole GPU unread past the memory (a node away for a long time): it is met anew.
    for t in (300.0, 400.0, 500.0, 600.0):
        reads.read(t, [], [B])
    assert np.isnan(reads.read(630.0, [(A, 1.0)], [A, B])).all()
    assert reads.read(660.0, [(A, 2.0)], [A, B]) == [1.0]


def test_a_series_id_freed_by_the_index_and_reused_maps_to_its_new_series():
    reads = Reads()
    reads.read(0.0, [(A, 5.0)], [A, B])
    reads.read(1500.0, [], [A, B])
    freed = reads.index.expire(2000.0, 900.0)  # GPU-a's XID series, unread since 0
    reads.ledger.forget(freed)
    # GPU-b's first XID series gets the freed id: it counts from zero, not from GPU-a's 5.
    assert reads.read(2000.0, [(B, 7.0)], [A, B]) == [7.0]
    assert reads.index.ids_for(XID, [{**B, "xid": "79"}], 2000.0).tolist() == freed.tolist()


def test_a_jump_held_for_one_read_counts_whole_when_the_counter_stayed_up_and_nothing_when_it_fell_back():
    index, rates, ledger = SeriesIndex(), CounterRates(), GpuValueLedger()

    def increase(t: float, value: float) -> float:
        view = build_view(
            [Frame(XID, [{**A, "xid": "48"}], np.array([t]), np.array([[value]]))], index, rates, t
        )
        return float(ledger.increase(view, view.latest[XID], most=100.0)[0])

    assert np.isnan(increase(0.0, 5.0))  # history
    assert increase(30.0, 7.0) == 2.0  # within the bound: counted at once
    assert increase(60.0, 5000.0) == 0.0  # held
    assert increase(90.0, 7.0) == 0.0  # it fell back: a glitch, and no reset either
    assert increase(120.0, 5000.0) == 0.0  # held again
    assert increase(150.0, 5003.0) == 4996.0  # it stayed up: the whole jump, from before it
    assert increase(180.0, 5003.0) == 0.0
    assert increase(210.0, 1.0) == 0.0  # a fall: held, as a lagging replica's would be
    assert increase(240.0, 1.0) == 1.0  # still below: a real reset, counted from zero one read late
