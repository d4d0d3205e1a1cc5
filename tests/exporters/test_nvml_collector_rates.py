"""NvmlCollector's rates and links: GPM profiling asked again or not, NVLink bandwidth and link states, PCIe
through GPM, and no rate over two collections milliseconds apart."""

from __future__ import annotations

from typing import Any

import pynvml
import pytest
from prometheus_client import CollectorRegistry

from exporters.gpm import min_rate_interval
from exporters.nvml_collector import NvmlCollector
from gpuwarden.clock import FakeClock
from gpuwarden.sim import SimNvml, parse_fault
from tests.exporters.nvml_scrapes import gpu_labels, scrape, value

from .conftest import NODE


def prof_gpus(registry: CollectorRegistry) -> set[str]:
    return {
        s.labels["gpu"] for m in registry.collect() for s in m.samples if s.name == "DCGM_FI_PROF_SM_ACTIVE"
    }


def test_a_transient_error_asking_for_gpm_support_is_asked_again(nvml: SimNvml, clock: FakeClock) -> None:
    # One Unknown from nvmlGpmQueryDeviceSupport (a GPU recovering answers so) used to turn the profiling
    # families off for that GPU until the exporter restarted.
    nvml.fail("nvmlGpmQueryDeviceSupport", pynvml.NVMLError_Unknown, gpu_index=0, times=1)
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    for _ in range(3):
        registry = scrape(collector)
        clock.advance(5)
    assert prof_gpus(registry) == {str(i) for i in range(8)}


def test_not_supported_gpm_is_not_asked_again(nvml: SimNvml, clock: FakeClock) -> None:
    nvml.fail("nvmlGpmQueryDeviceSupport", pynvml.NVMLError_NotSupported, gpu_index=0, times=1)
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    for _ in range(3):
        registry = scrape(collector)
        clock.advance(5)
    assert "0" not in prof_gpus(registry)


def test_a_lost_gpu_frees_its_gpm_samples_and_profiles_again_after_a_reset(
    nvml: SimNvml, fleet: Any, clock: FakeClock
) -> None:
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    for _ in range(2):
        collector.collect()
        clock.advance(5)
    held = nvml.gpm_samples_allocated
    assert held == 16  # two per GPU, swapped each collection
    fleet.inject(parse_fault({"kind": "gpu_lost", "node": NODE, "gpu": 1}))
    collector.collect()
    assert nvml.gpm_samples_allocated == held - 2
    fleet.reset_gpu(NODE, 1)
    for _ in range(2):
        clock.advance(5)
        registry = scrape(collector)
    assert "1" in prof_gpus(registry) and nvml.gpm_samples_allocated == held


def test_nvlink_bandwidth_is_the_rate_over_all_links_as_dcgm_computes_it(
    nvml: SimNvml, fleet: Any, clock: FakeClock
) -> None:
    # DCGM differences NVML's cumulative KiB counters (TX + RX, scopeId UINT_MAX = every link) and divides
    # by the time between reads: MB/s (MiB/s), a gauge. A bare field id reads link 0 only.
    state = fleet.gpu(NODE, 0).state
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    first = scrape(collector)
    assert value(first, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", gpu_labels(first, 0)) is None  # one read
    before = state.nvlink_tx_kib + state.nvlink_rx_kib
    clock.advance(10)
    registry = scrape(collector)
    after = state.nvlink_tx_kib + state.nvlink_rx_kib
    rate = value(registry, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", gpu_labels(registry, 0))
    assert rate == pytest.approx((after - before) / 10 / 1024, rel=1e-3)
    assert rate > 1000  # a training GPU moves GB/s over NVLink
    own = gpu_labels(registry, 0, own=True)
    tx = value(registry, "gpuwarden_nvlink_data_bytes_total", {**own, "direction": "tx"})
    assert tx == pytest.approx(int(state.nvlink_tx_kib) * 1024)


def test_with_gpm_the_pcie_throughput_comes_from_it_not_from_nvml_s_20_ms_sampling_call(
    nvml: SimNvml, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nvmlDeviceGetPcieThroughput samples for 20 ms per direction: 42 ms of wall time per GPU on an H200.
    # Once GPM answers its PCIe rates, they give DCGM_FI_DEV_PCIE_*_THROUGHPUT (MiB/s as KB/s).
    calls: list[int] = []
    real = nvml.nvmlDeviceGetPcieThroughput
    monkeypatch.setattr(nvml, "nvmlDeviceGetPcieThroughput", lambda h, c: calls.append(c) or real(h, c))
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    for _ in range(2):  # discovery and the first GPM sample, then the first GPM rates
        collector.collect()
        clock.advance(10)
    calls.clear()
    registry = scrape(collector)
    assert calls == []
    labels = gpu_labels(registry, 0)
    rx_bytes = value(registry, "DCGM_FI_PROF_PCIE_RX_BYTES", labels)
    assert rx_bytes is not None and rx_bytes > 0
    assert value(registry, "DCGM_FI_DEV_PCIE_RX_THROUGHPUT", labels) == pytest.approx(rx_bytes / 1024)
    series = [s for m in registry.collect() for s in m.samples if s.name == "DCGM_FI_DEV_PCIE_TX_THROUGHPUT"]
    assert len(series) == len({tuple(sorted(s.labels.items())) for s in series}) > 0  # once per GPU
    nvml.fail("nvmlGpmMetricsGet", pynvml.NVMLError_Unknown, times=2)  # GPM stops answering: NVML again
    clock.advance(10)
    collector.collect()
    clock.advance(10)
    registry = scrape(collector)
    assert calls and value(registry, "DCGM_FI_DEV_PCIE_RX_THROUGHPUT", gpu_labels(registry, 0)) is not None


def test_no_rate_is_computed_over_the_milliseconds_between_two_close_collections(
    nvml: SimNvml, clock: FakeClock
) -> None:
    """A busy GPU read DCGM_FI_PROF_* 0 right after every exporter start: two passes a few ms apart."""
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock, min_rate_interval=1.0)
    collector.collect()
    clock.advance(0.005)
    soon = scrape(collector)
    labels = gpu_labels(soon, 0)
    for name in (
        "DCGM_FI_PROF_SM_ACTIVE",
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    ):
        assert value(soon, name, labels) is None, name
    assert value(soon, "DCGM_FI_DEV_PCIE_TX_THROUGHPUT", labels) is not None  # NVML's own call stands in
    clock.advance(5)
    later = scrape(collector)
    labels = gpu_labels(later, 0)
    sm_active = value(later, "DCGM_FI_PROF_SM_ACTIVE", labels)
    assert sm_active is not None and sm_active > 0
    bandwidth = value(later, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", labels)
    assert bandwidth is not None and bandwidth > 1000


def test_the_shortest_rate_interval_follows_the_collection_interval_within_nvml_s_bounds() -> None:
    assert min_rate_interval(5.0) == 1.0
    assert min_rate_interval(1.0) == 0.5
    assert min_rate_interval(0.05) == 0.1  # GPM asks for more than 100 ms between its two samples


def link_states(registry: CollectorRegistry, gpu: int) -> dict[str, float]:
    return {
        s.labels["link"]: s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == "DCGM_FI_DEV_NVLINK_LINK_STATUS" and s.labels["gpu"] == str(gpu)
    }


def test_a_downed_nvlink_reads_0_on_its_own_series_for_as_long_as_it_is_down(
    nvml: SimNvml, fleet: Any, clock: FakeClock
) -> None:
    """The error counters move once when a link goes down; its state says so on every collection."""
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    links = len(fleet.gpu(NODE, 2).nvlink_up)
    assert link_states(scrape(collector), 2) == {str(i): 1.0 for i in range(links)}
    fleet.inject(parse_fault({"kind": "nvlink_down", "node": NODE, "gpu": 2, "link": 0}))
    for _ in range(3):
        clock.advance(5)
        states = link_states(scrape(collector), 2)
        assert states["0"] == 0.0 and all(states[str(i)] == 1.0 for i in range(1, links))
    registry = scrape(collector)
    labels = {**gpu_labels(registry, 2), "link": "0"}
    assert value(registry, "DCGM_FI_DEV_NVLINK_LINK_STATUS", labels) == 0.0  # DCGM labels, and the link


def test_a_gpu_without_nvlink_is_asked_for_its_links_once_not_every_collection(
    nvml: SimNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []
    real = nvml.nvmlDeviceGetFieldValues

    def without_nvlink(handle: Any, ids: list[Any]) -> Any:
        values = real(handle, ids)
        for fid, fv in zip(ids, values, strict=True):
            if fid == pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT:
                asked.append(fid)
                fv.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return values

    monkeypatch.setattr(nvml, "nvmlDeviceGetFieldValues", without_nvlink)
    states: list[int] = []
    monkeypatch.setattr(nvml, "nvmlDeviceGetNvLinkState", lambda h, link: states.append(link) or 1)
    collector = NvmlCollector(nvml, hostname=NODE)
    for _ in range(3):
        registry = scrape(collector)
    assert len(asked) == 8 and states == []  # once per GPU, then never again
    assert link_states(registry, 0) == {}
    errors = [
        s for m in registry.collect() for s in m.samples if s.name == "gpuwarden_nvml_call_errors_total"
    ]
    assert errors == []


def call_errors(registry: CollectorRegistry, function: str) -> dict[str, float]:
    return {
        s.labels["error"]: s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == "gpuwarden_nvml_call_errors_total" and s.labels["function"] == function
    }


def test_a_link_whose_state_read_fails_is_left_out_alone_and_counted(nvml: SimNvml, fleet: Any) -> None:
    collector = NvmlCollector(nvml, hostname=NODE)
    links = len(fleet.gpu(NODE, 2).nvlink_up)
    scrape(collector)
    nvml.fail("nvmlDeviceGetNvLinkState", pynvml.NVMLError_Unknown, gpu_index=2, times=1)  # link 0 only
    registry = scrape(collector)
    assert link_states(registry, 2) == {str(i): 1.0 for i in range(1, links)}
    assert link_states(registry, 3) == {str(i): 1.0 for i in range(links)}
    assert call_errors(registry, "nvmlDeviceGetNvLinkState") == {"Unknown": 1.0}
    assert link_states(scrape(collector), 2) == {str(i): 1.0 for i in range(links)}  # asked again


def test_a_driver_without_the_link_state_call_is_asked_once_then_never(nvml: SimNvml, fleet: Any) -> None:
    nvml.fail("nvmlDeviceGetNvLinkState", pynvml.NVMLError_FunctionNotFound)
    collector = NvmlCollector(nvml, hostname=NODE)
    for _ in range(3):
        registry = scrape(collector)
    assert link_states(registry, 0) == {}
    assert call_errors(registry, "nvmlDeviceGetNvLinkState") == {"FunctionNotFound": 1.0}
    assert value(registry, "gpuwarden_gpu_up", gpu_labels(registry, 0, own=True)) == 1.0


def test_a_gpu_lost_while_its_links_are_read_reads_up_zero_with_none_of_its_series(nvml: SimNvml) -> None:
    collector = NvmlCollector(nvml, hostname=NODE)
    healthy = scrape(collector)
    own, dcgm = gpu_labels(healthy, 3, own=True), gpu_labels(healthy, 3)
    nvml.fail("nvmlDeviceGetNvLinkState", pynvml.NVMLError_GpuIsLost, gpu_index=3, times=1)
    registry = scrape(collector)
    assert value(registry, "gpuwarden_gpu_up", own) == 0.0
    assert link_states(registry, 3) == {} and value(registry, "DCGM_FI_DEV_GPU_TEMP", dcgm) is None
    assert link_states(registry, 4) != {}
