"""The collection loop the exporter's server tests serve: the simulated NVML's GPUs collected once, with a
deadline that a busy machine does not reach."""

from __future__ import annotations

from exporters.collection import CollectionLoop
from exporters.nvml_collector import NvmlCollector
from gpuwarden.clock import FakeClock
from gpuwarden.sim import SimNvml

from .conftest import NODE


def loop_for(nvml: SimNvml, clock: FakeClock) -> CollectionLoop:
    # deadline: real time, an upper bound the tick does not wait out; 5 s was passed once under six busy
    # loops on two cores beside other test runs, and the collection's GPU families were missing.
    loop = CollectionLoop([NvmlCollector(nvml, hostname=NODE)], clock=clock, interval=5, deadline=30)
    loop.run_once()
    return loop
