"""NvmlCollector and XidWatcher when a GPU's NVML handle changes or cannot be had: a GPU back from falling off
the bus under a new handle (a PCI rescan), and one NVML gives no handle for."""

from __future__ import annotations

import logging

import pynvml
import pytest

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
