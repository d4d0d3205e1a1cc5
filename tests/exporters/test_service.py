"""ExporterService: the start-up collection and the background loop that follows it."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from prometheus_client import Metric
from starlette.applications import Starlette

from exporters.collection import CollectionLoop
from exporters.service import ExporterService
from gpuwarden.clock import FakeClock


class _TimedCollector:
    """Records the clock at each collection and says when it has seen ``wanted`` of them."""

    hostname = "node-01"
    current_call = None
    nvml_answered = True

    def __init__(self, clock: FakeClock, wanted: int) -> None:
        self.clock = clock
        self.at: list[float] = []
        self.wanted = wanted
        self.enough = threading.Event()

    def collect(self) -> list[Metric]:
        self.at.append(self.clock.monotonic())
        if len(self.at) >= self.wanted:
            self.enough.set()
        return []


def test_the_collection_after_the_start_up_one_comes_one_interval_later_not_at_once() -> None:
    """Two collections milliseconds apart gave every rate (DCGM_FI_PROF_*, NVLink bandwidth) an interval of
    milliseconds, and a busy GPU read 0 on the first scrapes after every start."""
    clock = FakeClock()
    collector = _TimedCollector(clock, wanted=2)
    loop = CollectionLoop([collector], clock=clock, interval=5.0, deadline=1.0)
    service = ExporterService(loop, [], Starlette())
    service.start()
    try:
        assert collector.enough.wait(30)
    finally:
        service.stop()
    first, second = collector.at[:2]
    assert second - first >= 5.0


PROBE = """
import sys
from exporters.service import NvmlInstance, build_service
from exporters.simulated import SimCgroupResolver
from gpuwarden.clock import FakeClock
from gpuwarden.sim import SimNvml, build_fleet

clock = FakeClock()
fleet = build_fleet(1, 2, seed=0, clock=clock)
nvml = SimNvml(fleet, "node-01")
nvml.nvmlInit()
instance = NvmlInstance(nvml, "node-01", SimCgroupResolver(fleet, "node-01"))
build_service([instance], clock=clock, interval=5.0, deadline=1.0)
print("grpc" in sys.modules)
"""


def test_an_exporter_without_a_kubelet_socket_starts_without_loading_grpc() -> None:
    """Only an exporter that asks the kubelet's pod-resources socket needs gRPC (~0.1 s of every start)."""
    root = Path(__file__).resolve().parents[2]
    answer = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=root, timeout=60, check=True
    )
    assert answer.stdout.strip() == "False", answer.stderr
