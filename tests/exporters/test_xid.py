"""XIDs as events: every event counts, per code, with its receipt time; the DCGM gauge keeps the last."""

from __future__ import annotations

import threading

import pynvml
import pytest
from prometheus_client import CollectorRegistry, Metric

from exporters.nvml_collector import NvmlCollector
from exporters.xid import XidLedger, XidWatcher
from gpuwarden.clock import FakeClock
from gpuwarden.sim import Fleet, SimNvml, parse_fault

from .conftest import NODE


def drain(watcher: XidWatcher) -> int:
    """Poll until the event set is empty; return how many events were read."""
    n = 0
    while watcher.poll():
        n += 1
    return n


def scrape(collector: NvmlCollector) -> CollectorRegistry:
    families = collector.collect()

    class Fixed:
        def collect(self) -> list[Metric]:
            return families

    registry = CollectorRegistry()
    registry.register(Fixed())
    return registry


@pytest.fixture
def watched(nvml: SimNvml, clock: FakeClock) -> tuple[XidWatcher, NvmlCollector]:
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=0)
    assert watcher.register() == 8
    return watcher, NvmlCollector(nvml, hostname=NODE, xids=ledger)


def own_labels(registry: CollectorRegistry, gpu: int) -> dict[str, str]:
    return next(
        dict(s.labels)
        for m in registry.collect()
        for s in m.samples
        if s.name == "gpuwarden_gpu_up" and s.labels["gpu"] == str(gpu)
    )


def test_a_burst_of_xids_between_two_scrapes_is_counted_in_full(
    watched: tuple[XidWatcher, NvmlCollector], fleet: Fleet, clock: FakeClock
) -> None:
    watcher, collector = watched
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 2, "xid": 13, "params": {"count": 50}}))
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 2, "xid": 31}))
    assert drain(watcher) == 51
    clock.advance(1)  # events carry no time: each is stamped when received
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 2, "xid": 13}))
    assert drain(watcher) == 1
    registry = scrape(collector)
    labels = own_labels(registry, 2)
    assert registry.get_sample_value("gpuwarden_xid_errors_total", {**labels, "xid": "13"}) == 51
    assert registry.get_sample_value("gpuwarden_xid_errors_total", {**labels, "xid": "31"}) == 1
    assert registry.get_sample_value(
        "gpuwarden_xid_last_seen_timestamp_seconds", {**labels, "xid": "13"}
    ) == (clock.time())
    assert registry.get_sample_value(
        "gpuwarden_xid_last_seen_timestamp_seconds", {**labels, "xid": "31"}
    ) == (clock.time() - 1)


def test_the_dcgm_gauge_holds_the_last_xid_and_zero_before_any(
    watched: tuple[XidWatcher, NvmlCollector], fleet: Fleet
) -> None:
    watcher, collector = watched
    registry = scrape(collector)
    dcgm = {
        s.labels["gpu"]: s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == "DCGM_FI_DEV_XID_ERRORS"
    }
    assert dcgm == {str(i): 0.0 for i in range(8)}
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 4, "xid": 48}))
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 4, "xid": 63}))
    drain(watcher)
    registry = scrape(collector)
    dcgm = {
        s.labels["gpu"]: s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == "DCGM_FI_DEV_XID_ERRORS"
    }
    assert dcgm["4"] == 63.0 and dcgm["3"] == 0.0


def test_xid_79_counts_on_the_gpu_that_is_now_lost(
    watched: tuple[XidWatcher, NvmlCollector], fleet: Fleet
) -> None:
    watcher, collector = watched
    labels = own_labels(scrape(collector), 6)
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 6, "xid": 79}))
    drain(watcher)
    registry = scrape(collector)
    assert registry.get_sample_value("gpuwarden_gpu_up", labels) == 0.0
    assert registry.get_sample_value("gpuwarden_xid_errors_total", {**labels, "xid": "79"}) == 1.0


def test_the_watcher_thread_records_events_and_stops(nvml: SimNvml, fleet: Fleet, clock: FakeClock) -> None:
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=20)
    watcher.start()
    uuid = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(1))
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 1, "xid": 94}))
    pause = threading.Event()
    for _ in range(500):  # bounded: at most 500 waits of 10 ms
        if ledger.snapshot(uuid)[1]:
            break
        pause.wait(0.01)
    watcher.stop()
    last, counts = ledger.snapshot(uuid)
    assert last == 94 and counts[94].count == 1


def test_a_gpu_without_xid_event_support_has_no_dcgm_xid_gauge(nvml: SimNvml, clock: FakeClock) -> None:
    nvml.fail("nvmlDeviceGetSupportedEventTypes", pynvml.NVMLError_NotSupported, gpu_index=0)
    ledger = XidLedger()
    assert XidWatcher(nvml, ledger, clock).register() == 7
    registry = scrape(NvmlCollector(nvml, hostname=NODE, xids=ledger))
    gauges = {
        s.labels["gpu"] for m in registry.collect() for s in m.samples if s.name == "DCGM_FI_DEV_XID_ERRORS"
    }
    assert gauges == {str(i) for i in range(1, 8)}
