"""NvmlCollector and XidWatcher when a GPU's NVML handle changes or cannot be had: a GPU back from falling off
the bus under a new handle (a PCI rescan), and one NVML gives no handle for."""

from __future__ import annotations

import logging

import pynvml
import pytest
from prometheus_client import CollectorRegistry

from exporters.nvml_collector import NvmlCollector
from exporters.xid import XidLedger, XidWatcher
from gpuwarden.clock import FakeClock
from gpuwarden.sim import Fleet, SimNvml, parse_fault
from tests.exporters.nvml_scrapes import gpu_labels, scrape, value

from .conftest import NODE


def _fall_off_and_rescan(nvml: SimNvml, fleet: Fleet, collector: NvmlCollector, index: int) -> None:
    """GPU ``index`` falls off the bus (read down once), is reset and comes back after a PCI rescan."""
    fleet.inject(parse_fault({"kind": "gpu_lost", "node": NODE, "gpu": index}))
    scrape(collector)
    fleet.reset_gpu(NODE, index)
    nvml.rescan(index)


def test_a_gpu_back_from_a_pci_rescan_under_a_new_handle_reads_up_again(
    nvml: SimNvml, fleet: Fleet, clock: FakeClock
) -> None:
    """The collector kept the handle from before the GPU fell off the bus, which answers GpuIsLost for ever:
    the GPU read gpuwarden_gpu_up 0, with none of its series, until the exporter restarted."""
    collector = NvmlCollector(nvml, hostname=NODE)
    before = gpu_labels(scrape(collector), 1, own=True)
    _fall_off_and_rescan(nvml, fleet, collector, 1)
    for _ in range(2):
        clock.advance(5)
        registry = scrape(collector)
    assert gpu_labels(registry, 1, own=True) == before  # the same GPU: same UUID, same series
    assert value(registry, "gpuwarden_gpu_up", before) == 1.0
    assert value(registry, "DCGM_FI_DEV_GPU_TEMP", gpu_labels(registry, 1)) is not None
    assert value(registry, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", gpu_labels(registry, 1)) is not None


def _drain(watcher: XidWatcher) -> int:
    n = 0
    while watcher.poll():
        n += 1
    return n


def test_a_gpu_back_under_a_new_handle_is_registered_again_for_its_xids(
    nvml: SimNvml, fleet: Fleet, clock: FakeClock
) -> None:
    """The watcher offered a GPU it had registered by UUID ignored it: back under a new handle, whose events
    were never registered, every XID it raised after its return was missed."""
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=0)
    assert watcher.register() == 8
    collector = NvmlCollector(nvml, hostname=NODE, xids=ledger, watcher=watcher)
    scrape(collector)
    _fall_off_and_rescan(nvml, fleet, collector, 2)
    for _ in range(2):
        clock.advance(5)
        scrape(collector)  # GPU 2 answers under its new handle: offered again
        _drain(watcher)  # registered again between two waits
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 2, "xid": 13}))
    assert _drain(watcher) == 1
    registry = scrape(collector)
    xid = {**gpu_labels(registry, 2, own=True), "xid": "13"}
    assert value(registry, "gpuwarden_xid_errors_total", xid) == 1.0
    assert watcher.registered == 8


def test_a_gpu_offered_again_under_the_same_handle_is_not_registered_twice(
    nvml: SimNvml, fleet: Fleet, clock: FakeClock
) -> None:
    """Offered at every collection, a GPU registered twice on one set delivered each XID twice."""
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=0)
    watcher.register()
    collector = NvmlCollector(nvml, hostname=NODE, xids=ledger, watcher=watcher)
    for _ in range(3):
        scrape(collector)
        _drain(watcher)
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 4, "xid": 31}))
    assert _drain(watcher) == 1


@pytest.mark.parametrize(
    ("error", "check"),
    [
        (pynvml.NVMLError_GpuIsLost, "look for XID 79 in the kernel log (dmesg)"),
        (pynvml.NVMLError_NoPermission, "the exporter may not open /dev/nvidia1"),
        (pynvml.NVMLError_Unknown, "run `nvidia-smi -i 1` and look for XIDs in the kernel log"),
    ],
    ids=["lost", "no-permission", "other"],
)
def test_a_gpu_nvml_gives_no_handle_for_is_said_with_the_error_and_what_to_check(
    nvml: SimNvml, caplog: pytest.LogCaptureFixture, error: type[Exception], check: str
) -> None:
    """The log said "reason=no handle": neither what NVML answered nor where an operator should look."""
    caplog.set_level(logging.WARNING, logger="exporters")
    nvml.fail("nvmlDeviceGetHandleByIndex", error, gpu_index=1)
    scrape(NvmlCollector(nvml, hostname=NODE))
    [line] = [r.getMessage() for r in caplog.records if "gpu not answering" in r.getMessage()]
    name = error.__name__.removeprefix("NVMLError_")
    assert (
        f"gpu=1 gpu_uuid=- host={NODE} reason=no NVML handle: nvmlDeviceGetHandleByIndex(1) answered {name}; "
        in line
    )
    assert check in line


def _series_by_uuid(registry: CollectorRegistry, name: str) -> dict[str, float]:
    return {s.labels["UUID"]: s.value for m in registry.collect() for s in m.samples if s.name == name}


@pytest.mark.parametrize(
    "error",
    [
        pynvml.NVMLError_Unknown,
        pynvml.NVMLError_InsufficientPower,
        pynvml.NVMLError_NotFound,
        pynvml.NVMLError_ResetRequired,
    ],
    ids=["unknown", "insufficient-power", "not-found", "reset-required"],
)
def test_another_gpu_at_a_lost_gpus_index_is_never_served_under_the_lost_gpus_uuid(
    nvml: SimNvml, fleet: Fleet, clock: FakeClock, error: type[Exception]
) -> None:
    """GPU 1 fell off the bus and a rescan did not find it again: GPU 2 answers at index 1. Its first
    nvmlDeviceGetUUID failed once, and the collector took the new handle for GPU 1's: GPU 2's temperature,
    up 1 and XIDs were served under GPU 1's UUID, for every later collection, and GPU 2 had no series."""
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=0)
    watcher.register()
    collector = NvmlCollector(nvml, hostname=NODE, xids=ledger, watcher=watcher)
    registry = scrape(collector)
    lost, other = gpu_labels(registry, 1)["UUID"], gpu_labels(registry, 2)["UUID"]
    fleet.inject(parse_fault({"kind": "gpu_lost", "node": NODE, "gpu": 1}))
    clock.advance(5)
    scrape(collector)
    nvml.remove(1)
    nvml.fail("nvmlDeviceGetUUID", error, gpu_index=2, times=1)
    clock.advance(5)
    registry = scrape(collector)  # index 1 has a new handle that does not say whose it is
    assert _series_by_uuid(registry, "gpuwarden_gpu_up")[lost] == 0.0
    assert lost not in _series_by_uuid(registry, "DCGM_FI_DEV_GPU_TEMP")
    clock.advance(5)
    registry = scrape(collector)
    _drain(watcher)
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 2, "xid": 31}))
    _drain(watcher)
    registry = scrape(collector)
    assert gpu_labels(registry, 1)["UUID"] == other
    assert _series_by_uuid(registry, "gpuwarden_gpu_up")[other] == 1.0
    assert lost not in _series_by_uuid(registry, "DCGM_FI_DEV_GPU_TEMP")
    assert _series_by_uuid(registry, "gpuwarden_xid_errors_total") == {other: 1.0}


def test_a_removed_gpus_index_is_answered_by_the_next_one_in_the_simulator(nvml: SimNvml) -> None:
    """``SimNvml.remove``: one GPU fewer, the later ones one index lower, the removed handle lost."""
    old = nvml.nvmlDeviceGetHandleByIndex(1)
    third = nvml.nvmlDeviceGetHandleByIndex(2)
    nvml.remove(1)
    assert nvml.nvmlDeviceGetCount() == 7
    assert nvml.nvmlDeviceGetHandleByIndex(1) is third
    assert nvml.nvmlDeviceGetIndex(third) == 1
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        nvml.nvmlDeviceGetUUID(old)
