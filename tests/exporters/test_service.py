"""ExporterService: the start-up collection and the background loop that follows it."""

from __future__ import annotations

import threading

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
