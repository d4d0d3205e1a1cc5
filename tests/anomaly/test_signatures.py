from __future__ import annotations

import numpy as np
import pytest

from anomaly.series import CounterRates, SeriesIndex, build_view
from anomaly.signatures import SignatureDetector, load_xid_catalog
from anomaly.sources import Frame
from gpuwarden.model import RecommendedAction
from gpuwarden.xid import xid_action

GPU = {"gpu": "0", "UUID": "GPU-a", "Hostname": "n1"}


class Feed:
    def __init__(self) -> None:
        self.index = SeriesIndex()
        self.rates = CounterRates()
        self.det = SignatureDetector()
        self.t = 0.0

    def tick(self, *frames: tuple[str, list[dict[str, str]], list[float], str]):
        self.t += 30
        fs = [
            Frame(q, labels, np.array([self.t]), np.array(vals, dtype=float).reshape(-1, 1), kind=kind)
            for q, labels, vals, kind in frames
        ]
        view = build_view(fs, self.index, self.rates, self.t)
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


def test_the_dcgm_last_xid_gauge_fires_when_it_changes():
    feed = Feed()
    feed.tick(("DCGM_FI_DEV_XID_ERRORS", [GPU], [0], "gauge"))
    hits = fired(feed.tick(("DCGM_FI_DEV_XID_ERRORS", [GPU], [48], "gauge")))
    assert [f.action_at(i) for f, i in hits] == [RecommendedAction.DRAIN_AND_RESET]


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
