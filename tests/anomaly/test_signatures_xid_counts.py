"""XID counters read by the signatures detector and the anomaly service: first reads and GPUs met later as
history, series missing for a while, restarts, and the simulated fleet."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from anomaly.series import CounterRates, SeriesIndex, build_view
from anomaly.service import AnomalyService
from anomaly.signatures import SignatureDetector
from anomaly.sources import CollectorSource, Frame
from exporters.simulated import sim_collectors
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import RecommendedAction
from gpuwarden.sim import build_fleet, parse_fault
from tests.anomaly.fakes import TableCollector
from tests.anomaly.signature_feeds import GPU, Feed, fired, up

XID = "gpuwarden_xid_errors_total"
A, B, C = GPU, {**GPU, "gpu": "1", "UUID": "GPU-b"}, {**GPU, "gpu": "2", "UUID": "GPU-c"}


def xids(*rows: tuple[dict[str, str], int, float]) -> tuple[str, list[dict[str, str]], list[float], str]:
    return (XID, [{**g, "xid": str(code)} for g, code, _ in rows], [v for _, _, v in rows], "counter")


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
