"""ExporterService: the start-up collection and the background loop that follows it."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import pynvml
import pytest
from prometheus_client import Metric
from starlette.applications import Starlette

from exporters.collection import CollectionLoop
from exporters.server import health
from exporters.service import ExporterService, NvmlInstance, build_service
from exporters.xid import XidLedger, XidWatcher
from gpuwarden.clock import FakeClock
from gpuwarden.sim import SimNvml, build_fleet
from gpuwarden.sim.nvml_base import DRIVER_VERSION


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


class _StopCount:
    """How many watchers were asked to stop; a fake NVML wait returns as soon as all of them were."""

    def __init__(self, watchers: int) -> None:
        self.watchers = watchers
        self.asked = 0
        self.cond = threading.Condition()

    def flag(self) -> threading.Event:
        count = self

        class Flag(threading.Event):
            def set(self) -> None:
                super().set()
                with count.cond:
                    count.asked += 1
                    count.cond.notify_all()

        return Flag()


class _WaitingNvml:
    """Just what an ``XidWatcher`` calls, with no GPU; its wait ends early once every watcher was asked to
    stop, and records a wait that ran its whole period instead."""

    def __init__(self, count: _StopCount, ran_out: list[int]) -> None:
        self.count, self.ran_out = count, ran_out

    def nvmlEventSetCreate(self) -> object:
        return object()

    def nvmlDeviceGetCount(self) -> int:
        return 0

    def nvmlEventSetFree(self, _event_set: object) -> None:
        return None

    def nvmlEventSetWait(self, _event_set: object, timeout_ms: int) -> object:
        count = self.count
        with count.cond:
            if not count.cond.wait_for(lambda: count.asked >= count.watchers, timeout_ms / 1000):
                self.ran_out.append(timeout_ms)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)


def test_stopping_an_exporter_asks_every_xid_watcher_to_stop_before_waiting_for_any() -> None:
    """Each watcher was stopped and joined in turn, and each join waited out the watcher's NVML wait (500 ms):
    an exporter of N nodes took N half-seconds to stop."""
    count, ran_out = _StopCount(3), []
    watchers = [
        XidWatcher(_WaitingNvml(count, ran_out), XidLedger(), FakeClock(), wait_ms=2000) for _ in range(3)
    ]
    for watcher in watchers:
        watcher._stop = count.flag()
    loop = CollectionLoop([], clock=FakeClock(), interval=5.0, deadline=1.0)
    service = ExporterService(loop, watchers, Starlette())
    for watcher in watchers:
        watcher.start()
    service.stop()
    assert ran_out == []
    assert not any(watcher.watching for watcher in watchers)


def test_the_exporter_says_its_gpus_in_one_info_line_at_start_not_one_per_gpu(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A line per GPU at INFO ("xid events registered gpu_uuid=...") buried a 1,000-GPU node's start-up log:
    one line says how many GPUs of which models on which driver; each GPU's registration is DEBUG."""
    clock = FakeClock()
    fleet = build_fleet(2, 4, seed=0, clock=clock)
    instances = []
    for node in ("node-01", "node-02"):
        nvml = SimNvml(fleet, node)
        nvml.nvmlInit()
        instances.append(NvmlInstance(nvml, node))
    # A deadline no loaded machine overruns: at 1 s the first collection of half the GPUs overran it under
    # the whole suite's load, and the line said 4 GPUs (the test is about the line, not the deadline).
    service = build_service(instances, clock=clock, interval=60.0, deadline=30.0)
    caplog.set_level(logging.INFO, logger="exporters")
    service.start()
    service.stop()
    said = [
        r.getMessage() for r in caplog.records if r.name.startswith("exporters") and r.levelno == logging.INFO
    ]
    model = fleet.nodes[0].gpus[0].name
    assert said == [f"gpus found count=8 hosts=2 models=8 {model} driver={DRIVER_VERSION} xid_watched=8"]


@pytest.mark.parametrize("hung", ["nvmlEventSetCreate", "nvmlDeviceRegisterEvents"])
def test_an_nvml_call_hung_in_xid_registration_does_not_keep_the_exporter_from_serving(
    hung: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The watchers registered their GPUs on the thread that starts the exporter, before its first
    collection: an NVML call that hung there (a GPU falling off the bus) kept it from ever serving."""
    clock = FakeClock()
    fleet = build_fleet(1, 2, seed=0, clock=clock)
    nvml = SimNvml(fleet, "node-01")
    nvml.nvmlInit()
    nvml.hang(hung, 60)
    service = build_service([NvmlInstance(nvml, "node-01")], clock=clock, interval=5.0, deadline=0.2)
    starting = threading.Thread(target=service.start, daemon=True)
    caplog.set_level(logging.WARNING, logger="exporters.service")
    try:
        starting.start()
        starting.join(10)
        assert not starting.is_alive()
        up = [
            s.value
            for m in service.loop.exposition.families
            for s in m.samples
            if m.name == "gpuwarden_gpu_up"
        ]
        assert up == [1.0, 1.0]
        assert any("an NVML call hangs" in r.getMessage() for r in caplog.records)
        status, body = health(service.loop, {"node-01": service.watchers[0]})
        assert (status, body["status"]) == (200, "degraded")  # no XID is seen meanwhile
        assert body["xid_watchers"]["node-01"]["last_error"].startswith("not watching: registering the GPUs")
        nvml.release_hangs()
        assert service.watchers[0].wait_registered(10)
        for _ in range(100):  # the registration goes on once the call returns
            if service.watchers[0].registered == 2:
                break
            threading.Event().wait(0.05)
        assert service.watchers[0].registered == 2
        assert health(service.loop, {"node-01": service.watchers[0]})[1]["status"] == "ok"
    finally:
        nvml.release_hangs()
        service.stop()
