"""The collection loop: a hung NVML call is bounded, reported, and never blocks a scrape."""

from __future__ import annotations

import threading

import pynvml
import pytest
from prometheus_client import CollectorRegistry, Metric

from exporters.collection import MAX_INTERVAL_SECONDS, CollectionLoop
from exporters.nvml_collector import NvmlCollector
from exporters.xid import XidLedger
from gpuwarden.clock import FakeClock, SystemClock
from gpuwarden.limits import MAX_INTERVAL_SECONDS as WEEK
from gpuwarden.sim import Fleet, SimNvml, build_fleet, parse_fault

from .conftest import NODE

# A tick's deadline is real time. Ticks over a hung call wait it out (the hang is a blocked Event, so they
# are late however fast the machine): HUNG keeps them short. A collection that must finish gets IN_TIME,
# an upper bound the tick does not wait out: 0.2-0.3 s, on a stalled test process, marked one stale.
HUNG, IN_TIME = 0.2, 30.0


class _Exposed:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def served(loop: CollectionLoop) -> CollectorRegistry:
    """What a scrape would read right now, as a registry."""
    registry = CollectorRegistry()
    registry.register(_Exposed(loop.exposition.families))
    return registry


def test_a_hung_call_marks_the_host_stale_and_keeps_the_previous_values(
    nvml: SimNvml, clock: FakeClock
) -> None:
    loop = CollectionLoop([NvmlCollector(nvml, hostname=NODE)], clock=clock, interval=5, deadline=IN_TIME)
    loop.run_once()
    before = served(loop)
    host = {"Hostname": NODE}
    assert before.get_sample_value("gpuwarden_exporter_stale", host) == 0.0
    util_labels = next(
        s.labels for m in before.collect() for s in m.samples if s.name == "DCGM_FI_DEV_GPU_UTIL"
    )
    old_util = before.get_sample_value("DCGM_FI_DEV_GPU_UTIL", util_labels)
    last_success = before.get_sample_value("gpuwarden_collection_last_success_timestamp_seconds", host)

    nvml.hang("nvmlDeviceGetPowerUsage", 60)
    loop.deadline = HUNG
    clock.advance(5)
    loop.run_once()  # returns after the deadline although the call is still blocked
    during = served(loop)
    assert during.get_sample_value("gpuwarden_exporter_stale", host) == 1.0
    overrun = {"Hostname": NODE, "function": "nvmlDeviceGetPowerUsage"}
    assert during.get_sample_value("gpuwarden_collection_overruns_total", overrun) == 1.0
    assert during.get_sample_value("DCGM_FI_DEV_GPU_UTIL", util_labels) == old_util
    assert (
        during.get_sample_value("gpuwarden_collection_last_success_timestamp_seconds", host) == last_success
    )
    assert loop.stale_hosts() == [NODE]

    clock.advance(5)
    loop.run_once()  # still hung: no second worker is started, the overrun is not double counted
    assert served(loop).get_sample_value("gpuwarden_collection_overruns_total", overrun) == 1.0

    nvml.release_hangs()
    loop.deadline = IN_TIME
    clock.advance(5)
    loop.run_once()  # the hung collection finishes and is taken
    loop.run_once()  # and a fresh one runs
    after = served(loop)
    assert after.get_sample_value("gpuwarden_exporter_stale", host) == 0.0
    assert after.get_sample_value("gpuwarden_collection_last_success_timestamp_seconds", host) > last_success
    assert loop.stale_hosts() == []


def test_a_hung_node_does_not_stop_the_other_nodes(clock: FakeClock) -> None:
    two = build_fleet(2, 2, seed=3, clock=clock)
    sims = [SimNvml(two, node.name) for node in two.nodes]
    for sim in sims:
        sim.nvmlInit()
    loop = CollectionLoop(
        [NvmlCollector(sim, hostname=sim.node_name) for sim in sims], clock=clock, interval=5, deadline=HUNG
    )
    sims[0].hang("nvmlDeviceGetFieldValues", 60)
    try:
        # Each tick waits out the hung node's deadline; the other node's collection is taken at the first
        # tick it finished by (the first, unless the machine stalled the test past HUNG).
        for _ in range(round(IN_TIME / HUNG)):
            loop.run_once()
            if set(loop.stale_hosts()) != {n.name for n in two.nodes}:
                break
        registry = served(loop)
        stale = {
            n.name: registry.get_sample_value("gpuwarden_exporter_stale", {"Hostname": n.name})
            for n in two.nodes
        }
        assert stale == {two.nodes[0].name: 1.0, two.nodes[1].name: 0.0}
        ups = [s for m in registry.collect() for s in m.samples if s.name == "gpuwarden_gpu_up"]
        assert {s.labels["Hostname"] for s in ups} == {two.nodes[1].name}
    finally:
        sims[0].release_hangs()


def test_a_collector_that_raises_is_counted_and_the_loop_goes_on(clock: FakeClock) -> None:
    class Broken:
        hostname = "broken-node"
        current_call = None

        def collect(self) -> list[Metric]:
            raise RuntimeError("a bug")

    loop = CollectionLoop([Broken()], clock=clock, interval=5, deadline=IN_TIME)
    loop.run_once()
    loop.run_once()
    registry = served(loop)
    host = {"Hostname": "broken-node"}
    assert registry.get_sample_value("gpuwarden_collection_failures_total", host) == 2.0
    assert registry.get_sample_value("gpuwarden_exporter_stale", host) == 1.0


def test_the_exposition_has_one_help_and_type_per_family_across_nodes(clock: FakeClock) -> None:
    two = build_fleet(2, 2, seed=3, clock=clock)
    collectors = []
    for node in two.nodes:
        sim = SimNvml(two, node.name)
        sim.nvmlInit()
        collectors.append(NvmlCollector(sim, hostname=node.name))
    loop = CollectionLoop(collectors, clock=clock, interval=5, deadline=IN_TIME)
    loop.run_once()
    text = loop.exposition.text.decode()
    types = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))
    assert text.count("DCGM_FI_DEV_GPU_UTIL{") == 4


def test_when_nvml_answers_nothing_the_host_is_stale_and_its_last_success_stays(
    nvml: SimNvml, fleet: Fleet, clock: FakeClock
) -> None:
    # A live host whose NVML stopped answering used to look healthy: stale 0, last success advancing.
    loop = CollectionLoop([NvmlCollector(nvml, hostname=NODE)], clock=clock, interval=5, deadline=IN_TIME)
    loop.run_once()
    host = {"Hostname": NODE}
    last_success = served(loop).get_sample_value("gpuwarden_collection_last_success_timestamp_seconds", host)
    fleet.inject(parse_fault({"kind": "node_down", "node": NODE}))
    clock.advance(5)
    loop.run_once()
    blind = served(loop)
    assert blind.get_sample_value("gpuwarden_nvml_up", host) == 0.0
    assert blind.get_sample_value("gpuwarden_exporter_stale", host) == 1.0
    assert blind.get_sample_value("gpuwarden_collection_last_success_timestamp_seconds", host) == last_success
    assert not [s for m in blind.collect() for s in m.samples if s.name == "gpuwarden_gpu_up"]
    assert loop.blind_hosts() == [NODE]
    fleet.reboot_node(NODE)
    clock.advance(5)
    loop.run_once()
    back = served(loop)
    assert back.get_sample_value("gpuwarden_nvml_up", host) == 1.0
    assert back.get_sample_value("gpuwarden_exporter_stale", host) == 0.0
    assert back.get_sample_value("gpuwarden_collection_last_success_timestamp_seconds", host) > last_success


def test_the_longest_interval_the_config_takes_is_kept_without_a_warning(
    nvml: SimNvml, caplog: pytest.LogCaptureFixture
) -> None:
    # exporter.collect_interval_seconds and --interval take up to 7 days, as the README and --help say; the
    # loop clamped anything past a day to a day, with a warning, so a weekly collection ran daily.
    collector = NvmlCollector(nvml, hostname=NODE)
    loop = CollectionLoop([collector], clock=FakeClock(), interval=WEEK, deadline=WEEK)
    assert (loop.interval, loop.deadline) == (WEEK, WEEK)
    assert "clamped" not in caplog.text


def test_an_absurd_interval_is_clamped_and_the_loop_thread_lives(nvml: SimNvml) -> None:
    # --interval 1e12 used to raise OverflowError in the loop's sleep, killing the thread while the first
    # collection was served for ever.
    loop = CollectionLoop(
        [NvmlCollector(nvml, hostname=NODE)], clock=SystemClock(), interval=1e12, deadline=5
    )
    assert loop.interval == MAX_INTERVAL_SECONDS
    loop.start()
    pause = threading.Event()
    for _ in range(round(IN_TIME / 0.01)):  # returns at the first tick
        if loop.ticks:
            break
        pause.wait(0.01)
    pause.wait(0.1)  # past the first tick, into the sleep
    assert loop.ticks == 1 and loop._thread is not None and loop._thread.is_alive()
    loop.stop()


def test_a_hang_past_one_tick_leaves_the_host_s_gpu_values_out_not_served_as_current(
    nvml: SimNvml, clock: FakeClock
) -> None:
    ledger = XidLedger()
    loop = CollectionLoop(
        [NvmlCollector(nvml, hostname=NODE, xids=ledger)], clock=clock, interval=5, deadline=IN_TIME
    )
    loop.run_once()
    uuid = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(3))
    nvml.fail("nvmlDeviceGetEncoderUtilization", pynvml.NVMLError_NoPermission, times=1)  # a GPU's count
    clock.advance(5)
    loop.run_once()
    nvml.hang("nvmlDeviceGetPowerUsage", 60)
    loop.deadline = HUNG
    try:
        clock.advance(5)
        loop.run_once()  # the tick it overran on: last values, marked stale
        assert _gpu_samples(loop, "DCGM_FI_DEV_GPU_TEMP") == 8
        ledger.record(uuid, 79, clock.time())  # the watcher thread is not blocked by the hung call
        clock.advance(5)
        loop.run_once()  # still hung a whole interval later: no GPU reads as it did 10 s ago
        registry = served(loop)
        xid = {"gpu": "3", "UUID": uuid, "xid": "79"}
        assert registry.get_sample_value("gpuwarden_xid_errors_total", {**_own_labels(loop, 3), **xid}) == 1.0
        for family in ("DCGM_FI_DEV_GPU_TEMP", "gpuwarden_gpu_up", "DCGM_FI_DEV_FB_USED"):
            assert _gpu_samples(loop, family) == 0, family
        host = {"Hostname": NODE}
        assert registry.get_sample_value("gpuwarden_exporter_stale", host) == 1.0
        # The first GPU's: its index stays on the count, and a hang does not hide which GPU failed.
        errors = {**host, "gpu": "0", "function": "nvmlDeviceGetEncoderUtilization", "error": "NoPermission"}
        assert registry.get_sample_value("gpuwarden_nvml_call_errors_total", errors) == 1.0
    finally:
        nvml.release_hangs()
    loop.deadline = IN_TIME
    clock.advance(5)
    loop.run_once()  # the hung collection ends and is taken
    loop.run_once()  # and a fresh one runs: its values are current again
    assert _gpu_samples(loop, "DCGM_FI_DEV_GPU_TEMP") == 8


def _gpu_samples(loop: CollectionLoop, family: str) -> int:
    return sum(1 for m in loop.exposition.families for s in m.samples if s.name == family)


def _own_labels(loop: CollectionLoop, index: int) -> dict[str, str]:
    """GPU ``index``'s labels on gpuwarden families (from its gpuwarden_xid_errors_total series)."""
    for metric in loop.exposition.families:
        for sample in metric.samples:
            if sample.name == "gpuwarden_xid_errors_total" and sample.labels["gpu"] == str(index):
                return {k: v for k, v in sample.labels.items() if k != "xid"}
    raise AssertionError(f"gpu {index} has no XID series")


def test_the_last_success_reads_0_while_the_first_collection_hangs_so_an_age_alert_fires(
    nvml: SimNvml, clock: FakeClock
) -> None:
    """Absent until a first collection completed, ``time() - gpuwarden_collection_last_success_timestamp_
    seconds > 60`` had nothing to compare for an exporter whose first collection hung: it never fired."""
    nvml.hang("nvmlDeviceGetPowerUsage", 60)
    try:
        loop = CollectionLoop([NvmlCollector(nvml, hostname=NODE)], clock=clock, interval=5, deadline=HUNG)
        loop.run_once()
        last = served(loop).get_sample_value(
            "gpuwarden_collection_last_success_timestamp_seconds", {"Hostname": NODE}
        )
        assert last == 0.0
        assert clock.time() - last > 60
    finally:
        nvml.release_hangs()
