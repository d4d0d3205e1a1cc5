from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from alerting.faults import classify
from anomaly.ledger import ZERO_MEMORY_READS
from anomaly.promql import PromQLSource, PromQuery
from anomaly.series import CounterRates, SeriesIndex, build_view
from anomaly.service import AnomalyService
from anomaly.signatures import SignatureDetector, load_xid_catalog
from anomaly.snapshot import State
from anomaly.sources import CollectorSource, Frame
from exporters.simulated import sim_collectors
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import FaultKind, RecommendedAction
from gpuwarden.sim import build_fleet, parse_fault
from gpuwarden.xid import xid_action
from tests.anomaly.fakes import FakePrometheus, TableCollector

GPU = {"gpu": "0", "UUID": "GPU-a", "Hostname": "n1"}


class Feed:
    def __init__(self) -> None:
        self.index = SeriesIndex()
        self.rates = CounterRates()
        self.det = SignatureDetector()
        self.t = 0.0

    def tick(
        self,
        *frames: tuple[str, list[dict[str, str]], list[float], str],
        not_due: frozenset[str] = frozenset(),
        partial: dict[str, list[float]] | None = None,
    ):
        """One read of ``frames``; ``partial``: per query, what a range query answered at points RangeEdges
        blanked (``Frame.partial``), NaN at the others."""
        self.t += 30
        partial = partial or {}
        fs = [
            Frame(
                q,
                labels,
                np.array([self.t]),
                np.array(vals, dtype=float).reshape(-1, 1),
                kind=kind,
                partial=np.array(partial[q], dtype=float).reshape(-1, 1) if q in partial else None,
            )
            for q, labels, vals, kind in frames
        ]
        view = build_view(fs, self.index, self.rates, self.t)
        view.not_due = not_due
        return [f for f in self.det.detect(view)]


def fired(findings):
    return [(f, i) for f in findings for i in f.anomalous()]


def test_the_catalog_maps_action_buckets_to_recommended_actions():
    catalog = load_xid_catalog()
    assert xid_action(catalog[79]) is RecommendedAction.RESTART_NODE
    assert xid_action(catalog[48]) is RecommendedAction.DRAIN_AND_RESET
    assert xid_action(catalog[13]) is RecommendedAction.RESTART_APP
    assert xid_action(catalog[63]) is RecommendedAction.IGNORE
    assert len(catalog) > 90


@pytest.mark.parametrize(
    ("xid", "action"),
    [
        (79, RecommendedAction.RESTART_NODE),
        (48, RecommendedAction.DRAIN_AND_RESET),
        (13, RecommendedAction.RESTART_APP),
    ],
    ids=["fell-off-bus", "dbe", "app-exception"],
)
def test_a_new_xid_event_fires_once_with_the_catalog_action(xid, action):
    feed = Feed()
    labels = [{**GPU, "xid": str(xid)}]
    assert fired(feed.tick(("gpuwarden_xid_errors_total", labels, [0], "counter"))) == []
    hits = fired(feed.tick(("gpuwarden_xid_errors_total", labels, [1], "counter")))
    assert len(hits) == 1
    f, i = hits[0]
    assert f.action_at(i) is action
    assert f.labels[i]["xid"] == str(xid)
    assert f.alert_labels["alertname"] == "GpuXidError"
    assert fired(feed.tick(("gpuwarden_xid_errors_total", labels, [1], "counter"))) == []


def test_an_xid_series_whose_label_is_no_number_fires_to_be_investigated_instead_of_raising():
    feed = Feed()
    labels = [{**GPU, "xid": "\u2077\u2079"}, {**GPU, "xid": "48"}]  # superscript digits: no XID code
    feed.tick(("gpuwarden_xid_errors_total", labels, [0, 0], "counter"))
    hits = fired(feed.tick(("gpuwarden_xid_errors_total", labels, [1, 1], "counter")))
    assert sorted((f.labels[i]["xid"], f.action_at(i)) for f, i in hits) == [
        ("48", RecommendedAction.DRAIN_AND_RESET),
        ("\u2077\u2079", RecommendedAction.INVESTIGATE),
    ]


def test_the_dcgm_last_xid_gauge_fires_when_it_changes():
    feed = Feed()
    feed.tick(("DCGM_FI_DEV_XID_ERRORS", [GPU], [0], "gauge"))
    hits = fired(feed.tick(("DCGM_FI_DEV_XID_ERRORS", [GPU], [48], "gauge")))
    assert [f.action_at(i) for f, i in hits] == [RecommendedAction.DRAIN_AND_RESET]


def test_in_a_mixed_fleet_the_gauge_reports_the_gpus_gpuwardens_exporter_does_not_count():
    # n1 runs gpuwarden's exporter (gpu_up, XID counters, and the DCGM gauge too); n2 dcgm-exporter alone.
    feed = Feed()
    other = {"gpu": "0", "UUID": "GPU-b", "Hostname": "n2"}
    counter = [{**GPU, "xid": "13"}]

    def tick(gauge_a: float, gauge_b: float, counted: float):
        return feed.tick(
            ("gpuwarden_gpu_up", [GPU], [1], "gauge"),
            ("gpuwarden_xid_errors_total", counter, [counted], "counter"),
            ("DCGM_FI_DEV_XID_ERRORS", [GPU, other], [gauge_a, gauge_b], "gauge"),
        )

    tick(0, 0, 1)
    hits = fired(tick(79, 79, 2))  # both GPUs: XID 79; n1's counter says XID 13 once more (its own)
    found = sorted((f.labels[i]["Hostname"], f.labels[i]["xid"]) for f, i in hits)
    assert found == [("n1", "13"), ("n2", "79")]  # n1's gauge is not reported twice; n2's is reported


def test_the_gauge_does_not_raise_an_xid_again_at_a_tick_its_gpus_counters_were_not_due():
    # The XID counters on a longer step than the gauge: at a tick between two of their steps, the gauge's
    # new XID 79 on a GPU the exporter counts was raised, and the counter raised it again at its next step.
    feed = Feed()
    up = ("gpuwarden_gpu_up", [GPU], [1], "gauge")
    counter = "gpuwarden_xid_errors_total"
    feed.tick(
        up,
        (counter, [{**GPU, "xid": "13"}], [1], "counter"),
        ("DCGM_FI_DEV_XID_ERRORS", [GPU], [13], "gauge"),
    )
    between = fired(
        feed.tick(up, ("DCGM_FI_DEV_XID_ERRORS", [GPU], [79], "gauge"), not_due=frozenset({counter}))
    )
    counted = fired(
        feed.tick(
            up,
            (counter, [{**GPU, "xid": "13"}, {**GPU, "xid": "79"}], [1, 1], "counter"),
            ("DCGM_FI_DEV_XID_ERRORS", [GPU], [79], "gauge"),
        )
    )
    assert between == []
    assert [(f.query, f.labels[i]["xid"]) for f, i in counted] == [(counter, "79")]


def test_a_config_that_reads_the_xid_gauge_and_gpu_up_but_no_counters_relies_on_the_gauge():
    feed = Feed()
    up = ("gpuwarden_gpu_up", [GPU], [1], "gauge")
    feed.tick(up, ("DCGM_FI_DEV_XID_ERRORS", [GPU], [0], "gauge"))
    hits = fired(feed.tick(up, ("DCGM_FI_DEV_XID_ERRORS", [GPU], [79], "gauge")))
    assert [f.labels[i]["xid"] for f, i in hits] == ["79"]


def test_a_gap_in_the_dcgm_xid_gauge_neither_raises_again_nor_forgets_the_last_xid():
    feed = Feed()
    q = "DCGM_FI_DEV_XID_ERRORS"
    feed.tick((q, [GPU], [0], "gauge"))
    assert len(fired(feed.tick((q, [GPU], [79], "gauge")))) == 1
    assert fired(feed.tick((q, [GPU], [np.nan], "gauge"))) == []  # a missed scrape
    assert fired(feed.tick((q, [GPU], [79], "gauge"))) == []  # the same XID 79, not a new one
    feed.tick((q, [GPU], [np.nan], "gauge"))
    hits = fired(feed.tick((q, [GPU], [48], "gauge")))  # a new XID right after a gap
    assert [f.labels[i]["xid"] for f, i in hits] == ["48"]


def test_a_double_bit_ecc_increase_fires_and_a_counter_reset_does_not():
    feed = Feed()
    q = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
    feed.tick((q, [GPU], [3], "counter"))
    assert fired(feed.tick((q, [GPU], [3], "counter"))) == []
    assert len(fired(feed.tick((q, [GPU], [4], "counter")))) == 1
    assert fired(feed.tick((q, [GPU], [0], "counter"))) == []


@pytest.mark.parametrize(
    "query",
    [
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
        "gpuwarden_xid_errors_total",
    ],
    ids=["dbe", "nvlink-recovery", "xid"],
)
def test_a_gpu_reset_zeroing_a_counter_raises_nothing_and_the_next_error_after_it_raises(query):
    feed = Feed()
    labels = [{**GPU, "xid": "79"}]
    feed.tick((query, labels, [3], "counter"))
    assert fired(feed.tick((query, labels, [3], "counter"))) == []
    assert fired(feed.tick((query, labels, [0], "counter"))) == []  # the reset
    assert fired(feed.tick((query, labels, [0], "counter"))) == []
    assert len(fired(feed.tick((query, labels, [1], "counter")))) == 1


# The error counters the signature rules read (their counts' jumps and falls are held alike).
EACH_ERROR_COUNTER = pytest.mark.parametrize(
    "query",
    [
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "gpuwarden_xid_errors_total",
    ],
    ids=["dbe", "nvlink-recovery", "sbe", "xid"],
)


@EACH_ERROR_COUNTER
@pytest.mark.parametrize("before", [0.0, 2.0])
def test_one_garbage_reading_of_an_error_counter_raises_nothing_and_its_fall_back_is_no_reset(query, before):
    # dcgm-exporter has served 808334905 for a field: read at face value it was a double-bit ECC error on a
    # healthy GPU (drain and reset), and its fall back to 2 a reset counting 2 errors more.
    feed = Feed()
    labels = [{**GPU, "xid": "79"}]
    feed.tick((query, labels, [before], "counter"))
    assert fired(feed.tick((query, labels, [before], "counter"))) == []
    assert fired(feed.tick((query, labels, [808334905.0], "counter"))) == []
    assert fired(feed.tick((query, labels, [before], "counter"))) == []
    assert fired(feed.tick((query, labels, [before], "counter"))) == []
    # The counter still counts: the next real error (a storm, for single-bit ones) raises at once.
    more = 1000.0 if query == "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" else 1.0
    assert len(fired(feed.tick((query, labels, [before + more], "counter")))) == 1


def test_a_real_jump_too_large_to_believe_at_once_raises_at_the_next_read_while_a_small_one_raises_now():
    feed = Feed()
    q = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
    feed.tick((q, [GPU], [3], "counter"))
    assert fired(feed.tick((q, [GPU], [3], "counter"))) == []
    assert fired(feed.tick((q, [GPU], [3e6], "counter"))) == []  # held: a counter keeps what it counted
    assert len(fired(feed.tick((q, [GPU], [3e6], "counter")))) == 1
    assert fired(feed.tick((q, [GPU], [3e6], "counter"))) == []
    assert len(fired(feed.tick((q, [GPU], [3e6 + 1], "counter")))) == 1


@EACH_ERROR_COUNTER
@pytest.mark.parametrize("zeros", [1, 2, ZERO_MEMORY_READS], ids=["once", "twice", "longest-glitch"])
def test_an_error_counter_reading_0_then_its_count_again_raises_nothing(query, zeros):
    # DBE 5, 5, 0, 5 (and, left by the first fix, 5, 5, 0, 0, 5) read as a reset and 5 new double-bit
    # errors: drain and reset for a healthy GPU.
    feed = Feed()
    labels = [{**GPU, "xid": "79"}]
    for value in (5000.0, 5000.0, *[0.0] * zeros, 5000.0, 5000.0):
        assert fired(feed.tick((query, labels, [value], "counter"))) == []
    more = 5000.0 if query == "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" else 1.0
    assert len(fired(feed.tick((query, labels, [5000.0 + more], "counter")))) == 1


@EACH_ERROR_COUNTER
def test_an_error_counter_falling_a_little_for_one_read_raises_nothing(query):
    # Thanos switching from one Prometheus replica to the other (its counter-aware dedup is for rate() and
    # increase() only) serves a bare counter from a replica a scrape behind: 5000, 4990, 5000 read as a reset
    # counting 4990 errors and then 10 more (a single-bit storm, a DBE's drain and reset, an XID again).
    feed = Feed()
    labels = [{**GPU, "xid": "79"}]
    for value in (5000.0, 5000.0, 4990.0, 5000.0, 5000.0, 4990.0, 808334905.0, 5000.0, 5000.0):
        assert fired(feed.tick((query, labels, [value], "counter"))) == []
    more = 5000.0 if query == "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" else 1.0
    assert len(fired(feed.tick((query, labels, [5000.0 + more], "counter")))) == 1


@EACH_ERROR_COUNTER
@pytest.mark.parametrize("count", [0.0, 5000.0])
def test_negative_readings_of_an_error_counter_are_no_readings(query, count):
    # A counter cannot go below 0: an exporter's signed -1 ("not available") read twice was a reset, and the
    # count's return a new error (0, -1, -1, 0 raised a double-bit error on a healthy GPU).
    feed = Feed()
    labels = [{**GPU, "xid": "79"}]
    for value in (count, count, -1.0, -1.0, -1.0, count, count):
        assert fired(feed.tick((query, labels, [value], "counter"))) == []
    more = 5000.0 if query == "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" else 1.0
    assert len(fired(feed.tick((query, labels, [count + more], "counter")))) == 1


@pytest.mark.parametrize(
    ("after", "raises"),
    [([2, 2], [0, 1]), ([2, 3], [0, 1]), ([2, 7], [0, 1]), ([2, 5, 6], [0, 0, 1])],
    ids=["reset-then-errors", "reset-then-more-errors", "glitch-then-errors", "glitch-then-error-later"],
)
def test_a_fall_below_an_error_count_is_a_reset_with_its_errors_when_the_next_read_is_still_below(
    after, raises
):
    # Held one read like a fall to 0: a reset's errors are told one read late; back at the count or above,
    # the fall was a lagging replica or a glitch, and only what is above the count is new.
    feed = Feed()
    q = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
    feed.tick((q, [GPU], [5], "counter"))
    feed.tick((q, [GPU], [5], "counter"))
    assert [len(fired(feed.tick((q, [GPU], [v], "counter")))) for v in after] == raises


@pytest.mark.parametrize(
    ("after", "raises"),
    [
        ([0, 0, 1], [0, 0, 1]),
        ([2], [1]),
        ([6], [1]),
        ([0, 2], [0, 1]),
        ([0, 0, 6], [0, 0, 1]),
        ([0] * ZERO_MEMORY_READS + [5], [0] * ZERO_MEMORY_READS + [1]),
        ([0] * ZERO_MEMORY_READS + [1], [0] * ZERO_MEMORY_READS + [1]),
    ],
    ids=[
        "reset-confirmed-then-error",
        "reset-then-errors",
        "glitch-then-error",
        "reset-confirmed-then-errors",
        "long-glitch-then-error",
        "reset-past-memory-then-same-count",
        "reset-past-memory-then-error",
    ],
)
def test_a_real_reset_after_a_0_still_raises_the_errors_that_follow_it(after, raises):
    # A 0 held for one read costs nothing (a reset counts nothing either); the read after it tells: below the
    # count from before, a reset and its new errors; 0 again, a reset; above, a glitch and new errors. The
    # count from before the 0 is remembered while the counter reads 0, for ZERO_MEMORY_READS reads: a return
    # to it is a glitch ending; after that the reset is old and every error after it counts.
    feed = Feed()
    q = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
    feed.tick((q, [GPU], [5], "counter"))
    feed.tick((q, [GPU], [5], "counter"))
    assert fired(feed.tick((q, [GPU], [0], "counter"))) == []
    assert [len(fired(feed.tick((q, [GPU], [v], "counter")))) for v in after] == raises


@pytest.mark.parametrize(
    ("last", "garbage"),
    [(0.0, 808334905.0), (79.0, 808334905.0), (79.0, 0.0)],
    ids=["none-yet", "after-xid-79", "zero-after-xid-79"],
)
def test_one_garbage_reading_of_the_xid_gauge_raises_nothing_and_its_fall_back_no_xid_again(last, garbage):
    # 808334905 raised "XID 808334905 (not in the catalog)", and the fall back to 79 (after it, or after a 0)
    # raised XID 79 and its node restart again.
    feed = Feed()
    q = "DCGM_FI_DEV_XID_ERRORS"
    feed.tick((q, [GPU], [last], "gauge"))
    for value in (garbage, last, last):
        assert fired(feed.tick((q, [GPU], [value], "gauge"))) == []
    hits = fired(feed.tick((q, [GPU], [48], "gauge")))  # a real XID right after: at once
    assert [(f.labels[i]["xid"], f.action_at(i)) for f, i in hits] == [
        ("48", RecommendedAction.DRAIN_AND_RESET)
    ]


def test_an_xid_gauge_cleared_for_two_reads_raises_the_same_xid_again_when_it_happens_again():
    feed = Feed()
    q = "DCGM_FI_DEV_XID_ERRORS"
    feed.tick((q, [GPU], [79], "gauge"))
    assert [len(fired(feed.tick((q, [GPU], [v], "gauge")))) for v in (0, 0, 79)] == [0, 0, 1]


def test_an_xid_code_beyond_any_defined_raises_once_the_next_read_still_has_it_and_a_new_small_one_at_once():
    feed = Feed()
    q = "DCGM_FI_DEV_XID_ERRORS"
    feed.tick((q, [GPU], [0], "gauge"))
    assert fired(feed.tick((q, [GPU], [5000], "gauge"))) == []
    hits = fired(feed.tick((q, [GPU], [5000], "gauge")))  # a last-XID gauge keeps its code: believed
    assert [(f.labels[i]["xid"], f.action_at(i)) for f, i in hits] == [
        ("5000", RecommendedAction.INVESTIGATE)
    ]
    assert fired(feed.tick((q, [GPU], [5000], "gauge"))) == []
    hits = fired(feed.tick((q, [GPU], [173], "gauge")))  # not in the catalog, but a code NVIDIA may add
    assert [(f.labels[i]["xid"], f.action_at(i)) for f, i in hits] == [("173", RecommendedAction.INVESTIGATE)]


def test_an_error_inside_a_read_of_several_steps_raises_even_when_the_last_step_shows_no_change():
    # A query with a step shorter than the tick, or the catch-up read after a Prometheus outage: the reset
    # and the error after it sit in the middle of the read, and the newest step adds nothing.
    q = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
    index, rates, det = SeriesIndex(), CounterRates(), SignatureDetector()
    first = Frame(q, [GPU], np.array([0.0]), np.array([[3.0]]), kind="counter")
    det.detect(build_view([first], index, rates, 0.0))
    read = Frame(
        q, [GPU], np.array([10.0, 20.0, 30.0, 40.0]), np.array([[0.0, 1.0, 1.0, 1.0]]), kind="counter"
    )
    hits = fired(det.detect(build_view([read], index, rates, 40.0)))
    assert [f.alert_labels["alertname"] for f, _ in hits] == ["GpuDoubleBitEcc"]
    calm = Frame(q, [GPU], np.array([50.0, 60.0]), np.array([[1.0, 0.0]]), kind="counter")
    assert fired(det.detect(build_view([calm], index, rates, 60.0))) == []


def test_row_remap_failure_asks_for_support_and_pending_for_a_reset():
    feed = Feed()
    hits = fired(
        feed.tick(
            ("DCGM_FI_DEV_ROW_REMAP_FAILURE", [GPU], [1], "gauge"),
            ("DCGM_FI_DEV_ROW_REMAP_PENDING", [GPU], [1], "gauge"),
        )
    )
    actions = {f.action_at(i) for f, i in hits}
    assert actions == {RecommendedAction.CONTACT_SUPPORT, RecommendedAction.DRAIN_AND_RESET}


def test_hardware_thermal_slowdown_fires_but_a_power_cap_does_not():
    feed = Feed()
    sw_power_cap, hw_thermal = 0x4, 0x40
    two = [GPU, {**GPU, "gpu": "1", "UUID": "GPU-b"}]
    hits = fired(feed.tick(("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", two, [sw_power_cap, hw_thermal], "gauge")))
    assert [f.labels[i]["UUID"] for f, i in hits] == ["GPU-b"]
    assert "hw_thermal" in hits[0][0].summary_at(hits[0][1])


def test_an_nvlink_error_burst_fires_but_a_trickle_does_not():
    feed = Feed()
    q = "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"
    feed.tick((q, [GPU], [0], "counter"))
    assert fired(feed.tick((q, [GPU], [2], "counter"))) == []
    assert len(fired(feed.tick((q, [GPU], [500], "counter")))) == 1


def test_a_lost_gpu_fires_whether_it_reports_up_zero_or_vanishes():
    feed = Feed()
    a, b = GPU, {**GPU, "gpu": "1", "UUID": "GPU-b"}
    assert fired(feed.tick(("gpuwarden_gpu_up", [a, b], [1, 1], "gauge"))) == []
    hits = fired(feed.tick(("gpuwarden_gpu_up", [a, b], [0, 1], "gauge")))
    assert [f.labels[i]["UUID"] for f, i in hits] == ["GPU-a"]
    hits = fired(feed.tick(("gpuwarden_gpu_up", [a], [1], "gauge")))
    assert [f.labels[i]["UUID"] for f, i in hits] == ["GPU-b"]
    assert hits[0][0].action_at(hits[0][1]) is RecommendedAction.RESTART_NODE


def test_a_vanished_gpu_keeps_firing_until_it_comes_back():
    feed = Feed()
    a, b = GPU, {**GPU, "gpu": "1", "UUID": "GPU-b"}
    feed.tick(("gpuwarden_gpu_up", [a, b], [1, 1], "gauge"))
    for _ in range(3):
        hits = fired(feed.tick(("gpuwarden_gpu_up", [a], [1], "gauge")))
        assert [f.labels[i]["UUID"] for f, i in hits] == ["GPU-b"]
    assert fired(feed.tick(("gpuwarden_gpu_up", [a, b], [1, 1], "gauge"))) == []


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"UUID": "GPU-a", "Hostname": "n1", "gpu": "0"}, {"UUID": "GPU-b", "Hostname": "n1", "gpu": "1"}),
        ({"Hostname": "n1", "gpu": "0"}, {"Hostname": "n1", "gpu": "1"}),
    ],
    ids=["uuid", "hostname-and-index"],
)
def test_a_gpu_whose_series_returns_under_new_labels_is_not_lost(a, b):
    feed = Feed()
    feed.tick(("gpuwarden_gpu_up", [{**a, "pod": "train-a"}, b], [1, 1], "gauge"))
    # The job ends (pod label gone), and an exporter rollout adds labels to every series.
    rollout = {"instance": "10.0.0.9:9400", "exporter_pod": "dcgm-exporter-x1"}
    again = [{**a, **rollout}, {**b, **rollout}]
    for _ in range(3):
        assert fired(feed.tick(("gpuwarden_gpu_up", again, [1, 1], "gauge"))) == []
    hits = fired(feed.tick(("gpuwarden_gpu_up", again[:1], [1], "gauge")))
    assert [f.labels[i]["gpu"] for f, i in hits] == ["1"]  # a real loss is still seen


def _slot(uuid: str, gpu: str, bus: str) -> dict[str, str]:
    return {"UUID": uuid, "Hostname": "n1", "gpu": gpu, "pci_bus_id": f"00000000:{bus}:00.0"}


@pytest.mark.parametrize("new_up", [1.0, float("nan")], ids=["new-gpu-reads", "new-gpu-range-filling"])
def test_a_gpu_replaced_in_its_slot_is_not_lost_but_one_whose_neighbour_slid_into_its_index_is(new_up):
    # A GPU swapped in its slot (an RMA): the same host, index and PCI address under a UUID never seen
    # before. It raised GpuLost for the old UUID, with "restart node" as the action, for an hour. Read
    # through a gpu_up query over a window, the new GPU's series reads NaN (RangeEdges blanks it) until its
    # window has filled, what was answered there kept aside (``Frame.partial``): GpuLost fired for the old
    # UUID until then, when a blanked point was read as no answer.
    feed = Feed()
    a, b = _slot("GPU-a", "0", "18"), _slot("GPU-b", "1", "2A")
    feed.tick(("gpuwarden_gpu_up", [a, b], [1, 1], "gauge"))
    swapped = [a, _slot("GPU-new", "1", "2A")]
    answered = {"gpuwarden_gpu_up": [float("nan"), 1.0]}  # the blanked point's answer
    for _ in range(3):
        assert fired(feed.tick(("gpuwarden_gpu_up", swapped, [1, new_up], "gauge"), partial=answered)) == []
    # A GPU that fell off the bus while NVML renumbered the others: a known GPU now has its index.
    feed = Feed()
    c = _slot("GPU-c", "2", "3A")
    feed.tick(("gpuwarden_gpu_up", [a, b, c], [1, 1, 1], "gauge"))
    hits = fired(feed.tick(("gpuwarden_gpu_up", [a, {**c, "gpu": "1"}], [1, 1], "gauge")))
    assert [f.labels[i]["UUID"] for f, i in hits] == ["GPU-b"]


def test_a_vanished_gpu_is_lost_until_absent_forget_seconds_not_a_fixed_hour():
    clock = FakeClock()
    col = TableCollector()
    cfg = AnomalyConfig(detectors=["signatures"], absent_forget_seconds=300)
    raised = []
    service = AnomalyService(cfg, [CollectorSource([col], clock)], clock, on_alert=raised.append)
    a, b = _slot("GPU-a", "0", "18"), _slot("GPU-b", "1", "2A")
    col.set("gpuwarden_gpu_up", [(a, 1.0), (b, 1.0)])
    service.infer()
    col.set("gpuwarden_gpu_up", [(a, 1.0)])
    for _ in range(20):  # 10 minutes
        clock.advance(30)
        service.infer()
    lost = [(x.labels["UUID"], x.status.value) for x in raised if x.labels["alertname"] == "GpuLost"]
    assert lost == [("GPU-b", "firing"), ("GPU-b", "resolved")]


def test_a_gpu_whose_up_reads_nan_is_lost_like_one_whose_series_vanished():
    # NaN is no reading: the GPU did not answer while its host's exporter read the others. It raised nothing,
    # as if a GPU whose read fails were up.
    feed = Feed()
    a, b = GPU, {**GPU, "gpu": "1", "UUID": "GPU-b"}
    feed.tick(("gpuwarden_gpu_up", [a, b], [1, 1], "gauge"))
    for _ in range(3):
        hits = fired(feed.tick(("gpuwarden_gpu_up", [a, b], [1, float("nan")], "gauge")))
        assert [f.labels[i]["UUID"] for f, i in hits] == ["GPU-b"]
        assert [lab["UUID"] for lab in hits[0][0].labels] == ["GPU-a", "GPU-b"]  # one row a GPU
    assert fired(feed.tick(("gpuwarden_gpu_up", [a, b], [1, 1], "gauge"))) == []


def test_a_host_whose_every_gpu_up_reads_nan_is_left_to_node_down():
    feed = Feed()
    a, b = GPU, {**GPU, "gpu": "1", "UUID": "GPU-b"}
    other = {**GPU, "Hostname": "node-02", "UUID": "GPU-c"}
    feed.tick(("gpuwarden_gpu_up", [a, b, other], [1, 1, 1], "gauge"))
    nan = float("nan")
    assert fired(feed.tick(("gpuwarden_gpu_up", [a, b, other], [nan, nan, 1], "gauge"))) == []


def test_a_running_service_raises_gpu_lost_when_a_gpus_up_turns_nan_and_resolves_it_once_it_reads_again():
    clock = FakeClock()
    col = TableCollector()
    raised = []
    service = AnomalyService(
        AnomalyConfig(detectors=["signatures"]),
        [CollectorSource([col], clock)],
        clock,
        on_alert=raised.append,
    )
    a, b = _slot("GPU-a", "0", "18"), _slot("GPU-b", "1", "2A")
    col.set("gpuwarden_gpu_up", [(a, 1.0), (b, 1.0)])
    service.infer()
    col.set("gpuwarden_gpu_up", [(a, 1.0), (b, float("nan"))])
    for _ in range(4):
        clock.advance(30)
        service.infer()
    col.set("gpuwarden_gpu_up", [(a, 1.0), (b, 1.0)])
    for _ in range(10):
        clock.advance(30)
        service.infer()
    lost = [(x.labels["UUID"], x.status.value) for x in raised if x.labels["alertname"] == "GpuLost"]
    assert lost == [("GPU-b", "firing"), ("GPU-b", "resolved")]


def test_a_whole_host_vanishing_is_left_to_node_down_not_raised_as_lost_gpus():
    feed = Feed()
    a, b = GPU, {**GPU, "gpu": "1", "UUID": "GPU-b"}
    other = {**GPU, "Hostname": "node-02", "UUID": "GPU-c"}
    feed.tick(("gpuwarden_gpu_up", [a, b, other], [1, 1, 1], "gauge"))
    assert fired(feed.tick(("gpuwarden_gpu_up", [other], [1], "gauge"))) == []
    feed.tick(("gpuwarden_gpu_up", [a, b, other], [1, 1, 1], "gauge"))  # the node is back
    hits = fired(feed.tick(("gpuwarden_gpu_up", [a, other], [1, 1], "gauge")))
    assert [f.labels[i]["UUID"] for f, i in hits] == ["GPU-b"]  # then one of its GPUs falls off


def test_one_nvlink_recovery_error_fires_because_a_link_retrained():
    feed = Feed()
    q = "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL"
    feed.tick((q, [GPU], [0], "counter"))
    assert fired(feed.tick((q, [GPU], [0], "counter"))) == []
    assert len(fired(feed.tick((q, [GPU], [1], "counter")))) == 1


@pytest.mark.parametrize(
    ("code", "action"),
    [(1, RecommendedAction.DRAIN_AND_RESET), (2, RecommendedAction.RESTART_NODE)],
    ids=["gpu-reset", "node-reboot"],
)
def test_the_drivers_recovery_action_becomes_the_recommendation(code, action):
    feed = Feed()
    assert fired(feed.tick(("gpuwarden_gpu_recovery_action", [GPU], [0], "gauge"))) == []
    hits = fired(feed.tick(("gpuwarden_gpu_recovery_action", [GPU], [code], "gauge")))
    assert [f.action_at(i) for f, i in hits] == [action]


def test_a_stale_exporter_fires():
    feed = Feed()
    hits = fired(feed.tick(("gpuwarden_exporter_stale", [{"Hostname": "n1"}], [1], "gauge")))
    assert hits[0][0].alert_labels["alertname"] == "GpuExporterStale"


def test_utilisation_pinned_while_the_sms_idle_reads_as_a_hung_gpu_and_busy_or_idle_gpus_do_not():
    feed = Feed()
    gpus = [{**GPU, "gpu": str(i), "UUID": f"GPU-{i}"} for i in range(4)]
    # hung; busy memory-bound; idle; pinned utilisation but no SM-active series for it
    util = [100.0, 100.0, 0.0, 100.0]
    sm = [0.02, 0.30, 0.0]
    hits = fired(
        feed.tick(
            ("DCGM_FI_DEV_GPU_UTIL", gpus, util, "gauge"),
            ("DCGM_FI_PROF_SM_ACTIVE", list(reversed(gpus[:3])), list(reversed(sm)), "gauge"),
        )
    )
    assert [(f.alert_labels["alertname"], f.labels[i]["UUID"]) for f, i in hits] == [("GpuHung", "GPU-0")]
    f, i = hits[0]
    assert f.action_at(i) is RecommendedAction.RESET_GPU


XID = "gpuwarden_xid_errors_total"
A, B, C = GPU, {**GPU, "gpu": "1", "UUID": "GPU-b"}, {**GPU, "gpu": "2", "UUID": "GPU-c"}


def xids(*rows: tuple[dict[str, str], int, float]) -> tuple[str, list[dict[str, str]], list[float], str]:
    return (XID, [{**g, "xid": str(code)} for g, code, _ in rows], [v for _, _, v in rows], "counter")


def up(*gpus: dict[str, str]) -> tuple[str, list[dict[str, str]], list[float], str]:
    return ("gpuwarden_gpu_up", list(gpus), [1.0] * len(gpus), "gauge")


def raised_xids(findings) -> list[tuple[str, str]]:
    return [(f.labels[i]["UUID"], f.labels[i]["xid"]) for f, i in fired(findings) if "xid" in f.labels[i]]


def test_the_first_xid_79_on_a_gpu_raises_in_its_first_tick_after_another_gpu_already_had_an_xid():
    # The exporter creates a (GPU, XID) counter series when that XID first happens: its first sample is new.
    feed = Feed()
    assert fired(feed.tick(up(A, B))) == []
    assert raised_xids(feed.tick(up(A, B), xids((B, 13, 1)))) == [("GPU-b", "13")]
    hits = fired(feed.tick(up(A, B), xids((B, 13, 1), (A, 79, 1))))
    assert [(f.labels[i]["UUID"], f.labels[i]["xid"], f.action_at(i)) for f, i in hits] == [
        ("GPU-a", "79", RecommendedAction.RESTART_NODE)
    ]
    assert fired(feed.tick(up(A, B), xids((B, 13, 1), (A, 79, 1)))) == []


def test_xid_counts_at_the_first_read_and_on_a_gpu_met_later_are_history_not_new_xids():
    feed = Feed()
    assert fired(feed.tick(up(A, B), xids((A, 79, 2), (B, 13, 5)))) == []
    assert fired(feed.tick(up(A, B), xids((A, 79, 2), (B, 13, 5)))) == []
    # A node added to the scrape whose exporter has been counting for a while.
    assert fired(feed.tick(up(A, B, C), xids((A, 79, 2), (B, 13, 5), (C, 48, 3)))) == []
    assert raised_xids(feed.tick(up(A, B, C), xids((A, 79, 2), (B, 13, 5), (C, 48, 4)))) == [("GPU-c", "48")]


def test_an_xid_series_missing_for_a_few_scrapes_raises_nothing_when_it_returns_with_the_same_count():
    feed = Feed()
    feed.tick(up(A))
    assert raised_xids(feed.tick(up(A), xids((A, 79, 1)))) == [("GPU-a", "79")]
    assert fired(feed.tick(up(A))) == []  # the series is missing from two scrapes
    assert fired(feed.tick(up(A))) == []
    assert fired(feed.tick(up(A), xids((A, 79, 1)))) == []
    assert fired(feed.tick(up(A), xids((A, 79, np.nan)))) == []
    assert fired(feed.tick(up(A), xids((A, 79, 1)))) == []
    assert raised_xids(feed.tick(up(A), xids((A, 79, 2)))) == [("GPU-a", "79")]


def test_a_first_xid_in_the_middle_of_a_prometheus_read_of_several_steps_raises():
    # As PromQLSource returns it: a gauge frame on the step grid, a series NaN before it existed.
    index, rates, det = SeriesIndex(), CounterRates(), SignatureDetector()
    grid = np.array([0.0])
    labels = [{**B, "xid": "13"}, {**A, "xid": "79"}]
    first = [
        Frame("gpuwarden_gpu_up", [A, B], grid, np.ones((2, 1))),
        Frame(XID, labels[:1], grid, np.ones((1, 1))),
    ]
    assert fired(det.detect(build_view(first, index, rates, 0.0))) == []
    grid = np.array([10.0, 20.0, 30.0])
    read = [
        Frame("gpuwarden_gpu_up", [A, B], grid, np.ones((2, 3))),
        Frame(XID, labels, grid, np.array([[1.0, 1.0, 1.0], [np.nan, 1.0, 1.0]])),
    ]
    assert raised_xids(det.detect(build_view(read, index, rates, 30.0))) == [("GPU-a", "79")]
    grid = np.array([40.0, 50.0])
    calm = [Frame(XID, labels, grid, np.ones((2, 2)))]
    assert fired(det.detect(build_view(calm, index, rates, 50.0))) == []


@pytest.mark.parametrize(
    "query",
    ["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL"],
    ids=["dbe", "nvlink-recovery"],
)
def test_an_error_counted_as_its_job_ends_raises_although_the_series_lost_its_pod_label(query):
    feed = Feed()
    job = {**GPU, "pod": "train-0", "namespace": "ml"}
    feed.tick((query, [job], [3], "counter"))
    assert fired(feed.tick((query, [job], [3], "counter"))) == []
    assert len(fired(feed.tick((query, [GPU], [4], "counter")))) == 1  # the error ended the job
    # A new job on a GPU with old errors: the same count under new labels is nothing new.
    assert fired(feed.tick((query, [{**GPU, "pod": "train-1"}], [4], "counter"))) == []


def service_with(col: TableCollector, **cfg):
    clock = FakeClock()
    service = AnomalyService(
        AnomalyConfig(detectors=["signatures"], **cfg), [CollectorSource([col], clock)], clock
    )
    return clock, service


def run_ticks(clock: FakeClock, service: AnomalyService, n: int = 1) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        clock.advance(30)
        out += [(a.labels["alertname"], a.labels.get("xid", "")) for a in service.infer().raised]
    return [r for r in out if r[0] != "GpuwardenSourceStale"]


def test_a_restarted_anomaly_service_raises_no_xid_counted_before_it_started():
    col = TableCollector()
    col.set("gpuwarden_gpu_up", [(A, 1.0), (B, 1.0)])
    col.set(XID, [({**A, "xid": "79"}, 1.0), ({**B, "xid": "13"}, 4.0)], kind="counter")
    clock, service = service_with(col)
    assert run_ticks(clock, service, 3) == []
    clock, service = service_with(col)  # the restart
    assert run_ticks(clock, service, 3) == []
    col.set(
        XID, [({**A, "xid": "79"}, 1.0), ({**B, "xid": "13"}, 4.0), ({**B, "xid": "79"}, 1.0)], kind="counter"
    )
    assert run_ticks(clock, service) == [("GpuXidError", "79")]


def test_an_xid_series_forgotten_by_the_service_and_back_with_its_old_count_raises_nothing():
    col = TableCollector()
    col.set("gpuwarden_gpu_up", [(A, 1.0)])
    clock, service = service_with(col, forget_after_seconds=300)
    assert run_ticks(clock, service) == []
    col.set(XID, [({**A, "xid": "79"}, 1.0)], kind="counter")
    assert run_ticks(clock, service) == [("GpuXidError", "79")]
    col.set(XID, [], kind="counter")  # unread for 20 minutes: the index forgets the series
    assert run_ticks(clock, service, 40) == []
    col.set(XID, [({**A, "xid": "79"}, 1.0)], kind="counter")
    assert run_ticks(clock, service, 3) == []
    col.set(XID, [({**A, "xid": "79"}, 2.0)], kind="counter")
    assert run_ticks(clock, service) == [("GpuXidError", "79")]


def test_the_first_xid_79_in_a_simulated_fleet_raises_in_one_tick_after_another_gpu_had_an_xid():
    logging.getLogger("exporters").setLevel(logging.ERROR)
    clock = FakeClock()
    fleet = build_fleet(2, 4, seed=1, clock=clock)
    nvml = sim_collectors(fleet, clock)
    service = AnomalyService(
        AnomalyConfig(detectors=["signatures"]), [CollectorSource(nvml.collectors, clock)], clock
    )

    def tick() -> list[tuple[str, str, str]]:
        clock.advance(30)
        nvml.pump_xids()
        return [
            (a.labels["Hostname"], a.labels["gpu"], a.labels["xid"])
            for a in service.infer().raised
            if a.labels["alertname"] == "GpuXidError"
        ]

    assert [x for _ in range(3) for x in tick()] == []
    fleet.inject(parse_fault({"kind": "xid", "node": "node-01", "gpu": 1, "xid": 13}))
    assert tick() == [("node-01", "1", "13")]
    fleet.inject(parse_fault({"kind": "xid", "node": "node-02", "gpu": 3, "xid": 79}))
    assert tick() == [("node-02", "3", "79")]


def test_a_downed_nvlink_fires_on_every_tick_until_it_is_active_again():
    feed = Feed()
    q = "DCGM_FI_DEV_NVLINK_LINK_STATUS"
    link0, link1 = {**GPU, "link": "0"}, {**GPU, "link": "1"}
    assert fired(feed.tick((q, [link0, link1], [1, 1], "gauge"))) == []
    for _ in range(3):  # the recovery-error counter moved once; the state keeps saying it
        hits = fired(feed.tick((q, [link0, link1], [0, 1], "gauge")))
        assert [(f.labels[i]["link"], f.summary_at(i), f.action_at(i)) for f, i in hits] == [
            ("0", "NVLink down", RecommendedAction.DRAIN_AND_RESET)
        ]
    assert fired(feed.tick((q, [link0, link1], [1, 1], "gauge"))) == []


def test_a_link_never_seen_active_is_not_called_down():
    """A board whose NVLink bridge leaves some links unused reads them inactive from the start."""
    feed = Feed()
    q = "DCGM_FI_DEV_NVLINK_LINK_STATUS"
    for _ in range(3):
        assert fired(feed.tick((q, [{**GPU, "link": "5"}], [0], "gauge"))) == []


def test_a_simulated_nvlink_down_raises_gpu_nvlink_down_through_the_exporters_collector():
    raised = simulated_fault_raises(
        {"kind": "nvlink_down", "node": "node-01", "gpu": 2, "link": 3},
        "GpuNvlinkDown",
        lambda a: (a.labels["gpu"], a.labels["link"]),
    )
    assert raised(2) == []
    assert raised(1) == [("2", "3")]


def simulated_fault_raises(fault, alertname, describe):
    """A one-node simulated fleet read by the signatures detector alone through the exporter's collectors.
    Returns ``raised(ticks)``: what those 30 s ticks raised named ``alertname`` (each through ``describe``);
    ``fault`` is injected once, after the first call."""
    clock = FakeClock()
    fleet = build_fleet(1, 4, seed=1, clock=clock)
    service = signatures_over(fleet, clock)
    calls = []

    def raised(ticks):
        if len(calls) == 1:
            fleet.inject(parse_fault(fault))
        calls.append(ticks)
        found = []
        for _ in range(ticks):
            clock.advance(30)
            found += [describe(a) for a in service.infer().raised if a.labels["alertname"] == alertname]
        return found

    return raised


def signatures_over(fleet, clock) -> AnomalyService:
    """The signatures detector alone over the simulated exporter's collectors."""
    sources = [CollectorSource(quiet_collectors(fleet, clock), clock)]
    return AnomalyService(AnomalyConfig(detectors=["signatures"]), sources, clock)


def quiet_collectors(fleet, clock):
    """The simulated exporter's collectors, its INFO lines off."""
    logging.getLogger("exporters").setLevel(logging.ERROR)
    return sim_collectors(fleet, clock).collectors


SBE = "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"


def test_a_single_bit_ecc_storm_fires_but_a_trickle_a_reset_and_the_first_read_do_not():
    feed = Feed()  # 30 s ticks; the storm is over one corrected error a second
    assert fired(feed.tick((SBE, [GPU], [5000], "counter"))) == []  # history
    assert fired(feed.tick((SBE, [GPU], [5020], "counter"))) == []  # 0.7/s
    hits = fired(feed.tick((SBE, [GPU], [5620], "counter")))  # 20/s
    assert [(f.alert_labels["alertname"], f.action_at(i)) for f, i in hits] == [
        ("GpuSingleBitEccStorm", RecommendedAction.INVESTIGATE)
    ]
    assert "20 corrected errors/s" in hits[0][0].summary_at(hits[0][1])
    assert fired(feed.tick((SBE, [GPU], [3], "counter"))) == []  # a GPU reset zeroed it


def test_a_single_bit_ecc_rate_is_over_the_time_since_the_gpus_last_read_not_one_tick():
    feed = Feed()
    feed.tick((SBE, [GPU], [0], "counter"))
    for _ in range(9):
        feed.tick()  # the counter unread for 4.5 minutes (a scrape gap)
    assert fired(feed.tick((SBE, [GPU], [300], "counter"))) == []  # 300 in 5 minutes: 1/s, not 10/s


def test_a_simulated_ecc_sbe_storm_raises_in_one_tick_through_the_exporters_collector():
    raised = simulated_fault_raises(
        {"kind": "ecc_sbe_storm", "node": "node-01", "gpu": 1},
        "GpuSingleBitEccStorm",
        lambda a: a.labels["gpu"],
    )
    assert raised(3) == []
    assert raised(1) == ["1"]


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("hw_thermal_slowdown", FaultKind.THERMAL), ("power_brake", FaultKind.POWER_BRAKE)],
    ids=["thermal", "power-brake"],
)
def test_a_simulated_clock_slowdown_is_classified_by_what_slows_it(fault: str, kind: FaultKind) -> None:
    # Every GpuClockSlowdown read as a power brake by its name: a GPU slowed by heat opened an incident
    # titled "power brake".
    raised = simulated_fault_raises(
        {"kind": fault, "node": "node-01", "gpu": 2},
        "GpuClockSlowdown",
        lambda a: (a.labels["gpu"], classify(a.labels)),
    )
    assert raised(2) == []
    assert raised(3) == [("2", kind)]


LINK_STATUS = "DCGM_FI_DEV_NVLINK_LINK_STATUS"


@pytest.mark.parametrize(
    "read",
    [
        lambda gpus: [(SBE, gpus, [0.0] * len(gpus), "counter")],
        lambda gpus: [(LINK_STATUS, [{**g, "link": "0"} for g in gpus], [1.0] * len(gpus), "gauge")],
    ],
    ids=["sbe-read-times", "links-seen-active"],
)
def test_per_gpu_state_of_gpus_gone_for_the_ledgers_memory_is_dropped_under_fleet_churn(read):
    """The single-bit storm rule's last-read time per GPU, and the links seen active, were never dropped:
    GPUs replaced over months of churn stayed in them for good."""
    feed = Feed()
    feed.det = SignatureDetector(counter_memory_seconds=300.0)  # 10 ticks of 30 s
    held = []
    for tick in range(60):  # four new GPUs a tick, each read for three ticks, then gone for good
        gpus = [
            {"gpu": str(i), "UUID": f"GPU-{tick - age}-{i}", "Hostname": "n1"}
            for age in range(3)
            for i in range(4)
        ]
        feed.tick(*read(gpus))
        held.append(feed.det.held())
    assert held[-1] == held[30] > 0, held  # flat once GPUs leave as fast as they come


def _mid_fault_ticks() -> list[list[tuple[str, list[dict[str, str]], list[float], str]]]:
    """Reads that leave every rule's state half-way: a counter jump held, a counter read 0 after a count, an
    implausible XID code on the gauge held, a single-bit count's time, links seen active, a GPU vanished,
    the GPUs the counters count; then the reads that complete each."""
    b, c = {**GPU, "gpu": "1", "UUID": "GPU-b"}, {**GPU, "gpu": "2", "UUID": "GPU-c"}
    links = [{**GPU, "link": "0"}, {**GPU, "link": "1"}]

    def tick(up, xid13, dbe, sbe, gauge, link1, xid79=()):
        xid_labels = [{**GPU, "xid": "13"}, *([{**b, "xid": "79"}] if xid79 else [])]
        return [
            ("gpuwarden_gpu_up", [GPU, b, c][:up], [1] * up, "gauge"),
            ("gpuwarden_xid_errors_total", xid_labels, [xid13, *xid79], "counter"),
            ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", [GPU, b], dbe, "counter"),
            ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", [GPU], [sbe], "counter"),
            ("DCGM_FI_DEV_XID_ERRORS", [c], [gauge], "gauge"),
            ("DCGM_FI_DEV_NVLINK_LINK_STATUS", links, [1, link1], "gauge"),
        ]

    before = [tick(3, 1, [0, 4], 10, 31, 1), tick(2, 1, [2e7, 0], 20, 5e8, 1)]
    after = [tick(2, 2, [2e7, 0], 2000, 5e8, 0, xid79=(1,)), tick(2, 2, [2e7, 3], 2000, 43, 0, xid79=(1,))]
    return [*before, *after]


def test_a_detector_taken_up_from_its_state_reads_on_exactly_as_the_one_that_saved_it():
    """Through JSON and copies of its arrays, as a snapshot file keeps them: each rule's next reads score as
    they would have without the restart (a fresh detector would read them as history)."""
    ticks = _mid_fault_ticks()
    straight, restarted = Feed(), Feed()
    for frames in ticks[:2]:
        straight.tick(*frames)
        restarted.tick(*frames)
    state = straight.det.state()
    restarted.det = SignatureDetector()
    restarted.det.restore(
        State(json.loads(json.dumps(state.meta)), {k: a.copy() for k, a in state.arrays.items()})
    )
    again = restarted.det.state()
    assert json.loads(json.dumps(again.meta)) == json.loads(json.dumps(state.meta))
    assert all(np.array_equal(again.arrays[k], a, equal_nan=True) for k, a in state.arrays.items())
    hits = []
    for frames in ticks[2:]:
        found, found_again = straight.tick(*frames), restarted.tick(*frames)
        assert [(f.query, f.score.tolist(), f.labels) for f in found_again] == [
            (f.query, f.score.tolist(), f.labels) for f in found
        ]
        hits.append(sorted((f.alert_labels["alertname"], f.labels[i]["UUID"]) for f, i in fired(found)))
    assert hits == [
        [
            ("GpuDoubleBitEcc", "GPU-a"),  # the jump held at the save, still there: it counts
            ("GpuLost", "GPU-c"),  # vanished before the save
            ("GpuNvlinkDown", "GPU-a"),  # a link seen active before the save
            ("GpuSingleBitEccStorm", "GPU-a"),  # over the time since the count read before the save
            ("GpuXidError", "GPU-a"),  # one more XID 13
            ("GpuXidError", "GPU-b"),  # a new XID 79 series on a GPU known before the save
            ("GpuXidError", "GPU-c"),  # the gauge's code held at the save, confirmed
        ],
        [
            ("GpuDoubleBitEcc", "GPU-b"),  # the errors after a reset read before the save
            ("GpuLost", "GPU-c"),
            ("GpuNvlinkDown", "GPU-a"),
            ("GpuXidError", "GPU-c"),
        ],
    ]


def test_a_state_whose_ledger_arrays_do_not_fit_its_keys_is_refused():
    feed = Feed()
    for frames in _mid_fault_ticks()[:2]:
        feed.tick(*frames)
    state = feed.det.state()
    state.arrays["values_key_of_id"] = state.arrays["values_key_of_id"] + 10_000
    with pytest.raises(ValueError, match="ledger: series ids"):
        SignatureDetector().restore(state)


def test_a_state_naming_a_name_it_does_not_hold_is_refused():
    feed = Feed()
    for frames in _mid_fault_ticks()[:2]:
        feed.tick(*frames)
    state = feed.det.state()
    state.meta["names"] = state.meta["names"][:1]
    with pytest.raises(ValueError, match="are not numbers into the 1 names"):
        SignatureDetector().restore(state)


def _lost_read_through_prometheus(request, expr: str, *, phased: bool) -> list[tuple[str, float]]:
    """GpuLost raised (UUID, seconds from the start) over 100 minutes of ``expr`` read from a Prometheus
    whose n1 has GPU-a and GPU-b: GPU-b's job ends at 60 minutes (its series loses its ``pod`` label) and it
    falls off the bus at 90. ``phased``: n1 answers every other 30 s step and n2 the steps between (hosts
    scraped every 60 s, 30 s apart, read at step 30 with a 30 s lookback); else n1 alone, every step."""
    fake = FakePrometheus()
    request.addfinalizer(fake.close)
    clock = FakeClock()
    start = clock.time()
    a, b = _slot("GPU-a", "0", "18"), _slot("GPU-b", "1", "2A")
    c = {**_slot("GPU-c", "0", "18"), "Hostname": "n2"}
    query = PromQuery("gpuwarden_gpu_up", expr)

    def at(t: float) -> list[tuple[dict[str, str], float]]:
        if phased and round(t) // 30 % 2:
            return [(c, 1.0)]
        b_now = [] if t >= start + 5400 else [(b if t >= start + 3600 else {**b, "pod": "train"}, 1.0)]
        return [(a, 1.0), *b_now]

    fake.answers[query.sent[0]] = at
    source = PromQLSource(fake.url, [query], clock, timeout_seconds=2.0)
    request.addfinalizer(source.close)
    service = AnomalyService(AnomalyConfig(detectors=["signatures"]), [source], clock)
    service.warm_up()
    raised = []
    while clock.time() < start + 6000:
        clock.advance(30)
        raised += service.infer().raised
    return [(x.labels["UUID"], x.starts_at.timestamp() - start) for x in raised]


@pytest.mark.parametrize(
    ("expr", "phased"),
    [("min_over_time(gpuwarden_gpu_up[5m])", False), ("gpuwarden_gpu_up", True)],
    ids=["range-query", "hosts-at-two-phases"],
)
def test_a_gpu_whose_series_is_relabelled_is_not_lost_but_its_real_loss_is_raised(request, expr, phased):
    # range-query: RangeEdges blanks a new label set's points (NaN) until its window has filled; since a NaN
    # is no reading, GpuLost fired for GPU-b for five minutes after its job ended, "restart node", though it
    # answered every scrape. hosts-at-two-phases: each series is read at its last answer between its
    # answers once its own spacing is seen (ten answers); the relabelled series was absent from every other
    # read until then, and GpuLost fired from 30 s after the relabel to 11 minutes after it.
    assert _lost_read_through_prometheus(request, expr, phased=phased) == [("GPU-b", 5400.0)]


def test_a_host_back_after_a_gap_whose_every_gpu_reads_nan_one_of_them_new_raises_nothing():
    # Every GPU of a host back after a gap reads NaN while its range refills; a new one among them (in the
    # slot of one lost before) does not make the host read, or the others would be raised as lost.
    feed = Feed()
    a, b = _slot("GPU-a", "0", "18"), _slot("GPU-b", "1", "2A")
    other = {**GPU, "Hostname": "n2", "UUID": "GPU-d"}
    feed.tick(("gpuwarden_gpu_up", [a, b, other], [1, 1, 1], "gauge"))
    feed.tick(("gpuwarden_gpu_up", [other], [1], "gauge"))
    nan = float("nan")
    refilling = [a, _slot("GPU-c", "1", "2A"), other]
    assert fired(feed.tick(("gpuwarden_gpu_up", refilling, [nan, nan, 1], "gauge"))) == []
