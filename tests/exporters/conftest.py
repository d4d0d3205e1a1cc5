"""Shared fixtures: a simulated node behind the pynvml API, on a fake clock; the toy inference server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gpuwarden.clock import FakeClock
from gpuwarden.sim import Fleet, SimNvml, build_fleet
from tests.exporters.inference_harness import Harness

NODE = "node-01"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fleet(clock: FakeClock) -> Fleet:
    return build_fleet(1, 8, seed=7, clock=clock)


@pytest.fixture
def nvml(fleet: Fleet) -> Iterator[SimNvml]:
    sim = SimNvml(fleet, NODE)
    sim.nvmlInit()
    yield sim
    sim.clear_failures()


@pytest.fixture
def h() -> Harness:
    return Harness()
