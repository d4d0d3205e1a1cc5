"""Shared fixtures: a 2x8 fleet on a fake clock and a SimNvml for node-01."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gpuwarden.clock import FakeClock
from gpuwarden.sim import Fleet, SimNvml, build_fleet


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fleet(clock: FakeClock) -> Fleet:
    return build_fleet(2, 8, seed=7, clock=clock, mig_gpus=[("node-02", 7)])


@pytest.fixture
def nvml(fleet: Fleet) -> Iterator[SimNvml]:
    sim = SimNvml(fleet, "node-01")
    sim.nvmlInit()
    yield sim
    sim.clear_failures()
    if sim._init_count:
        sim.nvmlShutdown()
