"""XIDs as events: every event counts, per code, with its receipt time; the DCGM gauge keeps the last."""

from __future__ import annotations

import logging
import threading

import pynvml
import pytest
from prometheus_client import CollectorRegistry, Metric

from exporters.collection import CollectionLoop
from exporters.nvml_collector import NvmlCollector, xid_message
from exporters.server import health
from exporters.simulated import sim_collectors
from exporters.xid import FAILED_WAITS_BEFORE_REBUILD, XidLedger, XidWatcher
from gpuwarden.clock import FakeClock
from gpuwarden.sim import Fleet, SimNvml, build_fleet, parse_fault

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


def test_a_gpu_lost_when_the_exporter_started_gets_its_xids_once_it_is_back(
    nvml: SimNvml, fleet: Fleet, clock: FakeClock
) -> None:
    # The exporter pod restarted while GPU 1 was off the bus; the GPU was then reset. Its XIDs used to be
    # lost for good: only GPUs that answered at start were registered for events.
    fleet.inject(parse_fault({"kind": "gpu_lost", "node": NODE, "gpu": 1}))
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=0)
    assert watcher.register() == 7
    collector = NvmlCollector(nvml, hostname=NODE, xids=ledger, watcher=watcher)
    lost = scrape(collector)
    assert lost.get_sample_value("gpuwarden_xid_watcher_gpus", {"Hostname": NODE}) == 7
    fleet.reset_gpu(NODE, 1)
    scrape(collector)  # GPU 1 answers: offered to the watcher
    drain(watcher)  # registered on the watcher's side, between two waits
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 1, "xid": 13}))
    drain(watcher)
    registry = scrape(collector)
    labels = own_labels(registry, 1)
    assert labels["UUID"].startswith("GPU-")
    assert registry.get_sample_value("gpuwarden_xid_errors_total", {**labels, "xid": "13"}) == 1.0
    assert registry.get_sample_value("gpuwarden_xid_watcher_gpus", {"Hostname": NODE}) == 8


def test_a_gpu_that_cannot_be_identified_now_keeps_the_labels_an_earlier_read_gave(
    nvml: SimNvml, fleet: Fleet
) -> None:
    # GPU 1 is lost at start, so every collection tries to identify the GPUs again; GPU 2, lost later,
    # must keep its UUID instead of becoming a UUID="" series that changes identity when it is back.
    fleet.inject(parse_fault({"kind": "gpu_lost", "node": NODE, "gpu": 1}))
    collector = NvmlCollector(nvml, hostname=NODE, xids=XidLedger())
    healthy = own_labels(scrape(collector), 2)
    fleet.inject(parse_fault({"kind": "gpu_lost", "node": NODE, "gpu": 2}))
    registry = scrape(collector)
    assert registry.get_sample_value("gpuwarden_gpu_up", healthy) == 0.0
    never_known = own_labels(registry, 1)
    assert never_known["UUID"] == "" and registry.get_sample_value("gpuwarden_gpu_up", never_known) == 0.0


def wait_until(check: object, seconds: float = 5.0) -> bool:
    pause = threading.Event()
    for _ in range(int(seconds / 0.01)):
        if check():  # type: ignore[operator]
            return True
        pause.wait(0.01)
    return False


def test_a_watcher_that_could_not_start_is_visible_and_retries(
    nvml: SimNvml, fleet: Fleet, clock: FakeClock
) -> None:
    nvml.fail("nvmlEventSetCreate", pynvml.NVMLError_Unknown, times=1)
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=10)
    collector = NvmlCollector(nvml, hostname=NODE, xids=ledger, watcher=watcher)
    watcher.start()  # does not raise: the exporter serves metrics meanwhile
    try:
        host = {"Hostname": NODE}
        failed = scrape(collector)
        if not watcher.watching:  # the retry (after 1 s) may already have run
            assert failed.get_sample_value("gpuwarden_xid_watcher_up", host) == 0.0
        assert failed.get_sample_value("gpuwarden_xid_watcher_errors_total", host) == 1.0
        assert "event set" in watcher.last_error
        assert wait_until(lambda: watcher.watching and watcher.registered == 8)
        assert scrape(collector).get_sample_value("gpuwarden_xid_watcher_up", host) == 1.0
    finally:
        watcher.stop()


def test_failing_event_waits_are_counted_where_a_scrape_sees_them(
    nvml: SimNvml, fleet: Fleet, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="exporters.xid")
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=10)
    collector = NvmlCollector(nvml, hostname=NODE, xids=ledger, watcher=watcher)
    nvml.fail("nvmlEventSetWait", pynvml.NVMLError_Unknown, times=2)
    watcher.start()
    try:
        assert wait_until(lambda: watcher.errors >= 1)
        registry = scrape(collector)
        errors = registry.get_sample_value("gpuwarden_xid_watcher_errors_total", {"Hostname": NODE})
        assert errors is not None and errors >= 1
    finally:
        watcher.stop()
    # NVML's own error, said once as a warning: not an ERROR with a traceback (a node down did that)
    [said] = [r for r in caplog.records if r.name == "exporters.xid"]
    assert said.levelno == logging.WARNING and said.exc_info is None
    assert said.getMessage().startswith("xid watcher: NVML wait failed: Unknown Error")


def test_waits_that_keep_failing_take_the_watcher_down_until_a_new_event_set_answers(
    nvml: SimNvml, fleet: Fleet, clock: FakeClock
) -> None:
    # Every nvmlEventSetWait failed: no XID arrived while gpuwarden_xid_watcher_up read 1, the GPU count
    # stayed and /healthz said ok, since only the event set's existence was counted.
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=0)
    assert watcher.register() == 8
    collector = NvmlCollector(nvml, hostname=NODE, xids=ledger, watcher=watcher)
    host = {"Hostname": NODE}

    def up() -> float | None:
        return scrape(collector).get_sample_value("gpuwarden_xid_watcher_up", host)

    nvml.fail("nvmlEventSetWait", pynvml.NVMLError_Unknown, times=FAILED_WAITS_BEFORE_REBUILD - 1)
    for _ in range(FAILED_WAITS_BEFORE_REBUILD - 1):
        with pytest.raises(pynvml.NVMLError):
            watcher.poll()
    assert up() == 1.0  # a failure or two does not flap it
    assert not watcher.poll()  # a wait that times out answers: the run of failures ends
    nvml.fail("nvmlEventSetWait", pynvml.NVMLError_Unknown)  # for good
    for _ in range(FAILED_WAITS_BEFORE_REBUILD):
        with pytest.raises(pynvml.NVMLError):
            watcher.poll()
    assert up() == 0.0
    with pytest.raises(pynvml.NVMLError):
        watcher.poll()  # a new event set, every GPU registered on it, and its wait fails too
    assert watcher.registered == 8 and up() == 0.0
    nvml.clear_failures()
    assert not watcher.poll()
    assert up() == 1.0
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 2, "xid": 31}))
    assert drain(watcher) == 1  # on the new set, once: the old one was freed
    assert ledger.snapshot(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(2)))[0] == 31


def test_healthz_says_the_watcher_is_down_while_its_waits_keep_failing(
    nvml: SimNvml, clock: FakeClock
) -> None:
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=10)
    loop = CollectionLoop(
        [NvmlCollector(nvml, hostname=NODE, xids=ledger, watcher=watcher)],
        clock=clock,
        interval=5,
        deadline=30,
    )
    nvml.fail("nvmlEventSetWait", pynvml.NVMLError_Unknown)
    watcher.start()
    try:
        # the thread backs off 1 s after each failure
        assert wait_until(lambda: "XIDs are not seen" in watcher.last_error, FAILED_WAITS_BEFORE_REBUILD + 5)
        loop.run_once()
        status, body = health(loop, {NODE: watcher})
        assert (status, body["status"]) == (200, "degraded")
        assert body["xid_watchers"][NODE]["watching"] is False
        assert body["xid_watchers"][NODE]["last_error"].startswith("not watching: NVML waits keep failing")
        nvml.clear_failures()
        assert wait_until(lambda: watcher.watching)
        assert health(loop, {NODE: watcher})[1]["status"] == "ok"
    finally:
        watcher.stop()


def dcgm_xid(registry: CollectorRegistry, gpu: int) -> tuple[dict[str, str], float]:
    return next(
        (dict(s.labels), s.value)
        for m in registry.collect()
        for s in m.samples
        if s.name == "DCGM_FI_DEV_XID_ERRORS" and s.labels["gpu"] == str(gpu)
    )


def test_the_dcgm_xid_gauge_carries_err_code_and_err_msg_like_dcgm_exporter(
    watched: tuple[XidWatcher, NvmlCollector], fleet: Fleet
) -> None:
    # dcgm-exporter >= 3.3.6 labels the gauge with err_code and err_msg (NVIDIA's description), so
    # DCGM_FI_DEV_XID_ERRORS{err_code=~"48|79"} rules and alert texts work on both exporters.
    watcher, collector = watched
    labels, last = dcgm_xid(scrape(collector), 4)
    assert last == 0 and (labels["err_code"], labels["err_msg"]) == ("0", "No Error")
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 4, "xid": 48}))
    drain(watcher)
    labels, last = dcgm_xid(scrape(collector), 4)
    assert last == 48 and (labels["err_code"], labels["err_msg"]) == ("48", "Double Bit ECC Error")
    assert labels["DCGM_FI_DRIVER_VERSION"]


def test_an_xid_outside_the_catalog_reads_unknown_error() -> None:
    assert xid_message(9999) == "Unknown Error"
    assert xid_message(79) == "GPU has fallen off the bus"


def test_xid_families_carry_the_workload_labels_of_their_gpu(clock: FakeClock) -> None:
    # The other families of a GPU running a Slurm job carry slurm_job; the XID that killed it must too,
    # also when the XID took the GPU off the bus (its last known workload).
    fleet = build_fleet(1, 8, seed=7, clock=clock)
    nodes = sim_collectors(fleet, clock)
    collector = nodes.collectors[0]
    util = next(
        s.labels
        for m in collector.collect()
        for s in m.samples
        if s.name == "DCGM_FI_DEV_GPU_UTIL" and s.labels["gpu"] == "0"
    )
    assert util.get("slurm_job"), "GPU 0 of this fleet runs a training job"
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 0, "xid": 79}))
    nodes.pump_xids()
    registry = scrape(collector)
    counter = next(
        s.labels
        for m in registry.collect()
        for s in m.samples
        if s.name == "gpuwarden_xid_errors_total" and s.labels["gpu"] == "0"
    )
    assert counter["slurm_job"] == util["slurm_job"] and counter["xid"] == "79"
    assert dcgm_xid(registry, 0)[0]["slurm_job"] == util["slurm_job"]


def test_after_nvml_is_shut_down_and_initialised_again_gpus_and_xids_are_seen_again(
    watched: tuple[XidWatcher, NvmlCollector], nvml: SimNvml, fleet: Fleet
) -> None:
    # A driver reload under the exporter: NVML forgets its state (and the event set) and answers
    # Uninitialized. The exporter stayed blind and the watcher waited on a dead event set until a restart.
    watcher, collector = watched
    scrape(collector)
    nvml.nvmlShutdown()
    registry = scrape(collector)
    assert registry.get_sample_value("gpuwarden_nvml_up", {"Hostname": NODE}) == 1.0
    assert registry.get_sample_value("gpuwarden_gpu_up", own_labels(registry, 2)) == 1.0
    with pytest.raises(pynvml.NVMLError):
        watcher.poll()  # the old event set is gone: counted by the thread, dropped here
    drain(watcher)  # a new event set, every GPU registered again
    assert watcher.registered == 8
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 2, "xid": 31}))
    assert drain(watcher) == 1
    xid = {**own_labels(scrape(collector), 2), "xid": "31"}
    assert scrape(collector).get_sample_value("gpuwarden_xid_errors_total", xid) == 1.0


def _collect_and_poll(collector: NvmlCollector, watcher: XidWatcher, clock: FakeClock, times: int) -> None:
    """Collections as the exporter runs them, each offering its GPUs, and the watcher's polls between."""
    for _ in range(times):
        collector.collect()
        watcher.poll()
        clock.advance(5)


def test_gpus_whose_xid_registration_keeps_failing_are_logged_once_each_not_at_every_collection(
    nvml: SimNvml, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The collector offers a GPU that answers to the watcher at every collection: two GPUs whose registration
    failed in turn were one warning each per collection (every 5 s, for ever), the watcher logging whatever
    differed from its last line."""
    caplog.set_level(logging.WARNING, logger="exporters.xid")
    for gpu in (1, 2):
        nvml.fail("nvmlDeviceRegisterEvents", pynvml.NVMLError_NoPermission, gpu_index=gpu)
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=0)
    assert watcher.register() == 6
    collector = NvmlCollector(nvml, hostname=NODE, xids=ledger, watcher=watcher)
    _collect_and_poll(collector, watcher, clock, 4)
    said = [r.getMessage() for r in caplog.records if r.name == "exporters.xid"]
    assert len(said) == 2 and all("Insufficient Permissions" in line for line in said)
    assert watcher.errors >= 2  # every failed try still counts
    nvml.clear_failures()
    _collect_and_poll(collector, watcher, clock, 1)
    assert watcher.registered == 8


def test_a_gpu_whose_xid_registration_is_not_supported_is_not_asked_again(
    nvml: SimNvml, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """nvmlDeviceRegisterEvents answers NotSupported where the platform has no such events: that GPU was
    asked again at every collection, a warning and a watcher error each time."""
    caplog.set_level(logging.WARNING, logger="exporters.xid")
    nvml.fail("nvmlDeviceRegisterEvents", pynvml.NVMLError_NotSupported, gpu_index=3)
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=0)
    assert watcher.register() == 7
    collector = NvmlCollector(nvml, hostname=NODE, xids=ledger, watcher=watcher)
    _collect_and_poll(collector, watcher, clock, 3)
    assert watcher.errors == 0
    assert not [r for r in caplog.records if r.name == "exporters.xid"]
    gauges = {
        s.labels["gpu"] for m in collector.collect() for s in m.samples if s.name == "DCGM_FI_DEV_XID_ERRORS"
    }
    assert gauges == {str(i) for i in range(8)} - {"3"}


def test_an_event_wait_that_hangs_takes_the_watcher_down_until_it_returns(
    nvml: SimNvml, fleet: Fleet, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A wait that did not return (NVML hangs for minutes when a GPU falls off the bus) left the watcher
    "watching": gpuwarden_xid_watcher_up 1 and /healthz ok while no XID could arrive."""
    caplog.set_level(logging.INFO, logger="exporters.xid")
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=10, hung_after=0.3)
    collector = NvmlCollector(nvml, hostname=NODE, xids=ledger, watcher=watcher)
    loop = CollectionLoop([collector], clock=clock, interval=5, deadline=30)
    host = {"Hostname": NODE}
    watcher.start()
    try:
        assert wait_until(lambda: watcher.watching)
        nvml.hang("nvmlEventSetWait", 60)
        assert wait_until(lambda: not watcher.watching)
        for _ in range(2):
            assert scrape(collector).get_sample_value("gpuwarden_xid_watcher_up", host) == 0.0
        loop.run_once()
        status, body = health(loop, {NODE: watcher})
        assert (status, body["status"]) == (200, "degraded")
        assert body["xid_watchers"][NODE]["last_error"].startswith(
            "not watching: its NVML call has not returned"
        )
        nvml.release_hangs()
        assert wait_until(lambda: watcher.watching)
        assert scrape(collector).get_sample_value("gpuwarden_xid_watcher_up", host) == 1.0
    finally:
        nvml.release_hangs()
        watcher.stop()
    said = [r.getMessage() for r in caplog.records if r.name == "exporters.xid"]
    assert said == [
        said[0],  # the hang, once however many collections saw it
        "xid watcher: its hung NVML call returned",
    ]
    assert said[0].startswith("xid watcher: an NVML call has not returned for")
