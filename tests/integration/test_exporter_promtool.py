"""``promtool check metrics`` finds nothing wrong in gpuwarden's own families (DCGM names are NVIDIA's)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from exporters.collection import CollectionLoop
from exporters.simulated import sim_collectors
from gpuwarden.clock import FakeClock
from gpuwarden.sim import build_fleet, parse_fault
from tests.integration.servers import require_binary

pytestmark = pytest.mark.integration


def test_every_promtool_problem_is_on_a_dcgm_family(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=1, clock=clock, mig_gpus=[("node-02", 7)])
    nodes = sim_collectors(fleet, clock)
    fleet.inject(parse_fault({"kind": "xid", "node": "node-01", "gpu": 0, "xid": 48}))
    nodes.pump_xids()
    loop = CollectionLoop(nodes.collectors, clock=clock, interval=5, deadline=30)  # not waited out
    loop.run_once()
    clock.advance(5)
    loop.run_once()
    text = loop.exposition.text
    names = {line.split()[2] for line in text.decode().splitlines() if line.startswith("# TYPE ")}
    assert any(n.startswith("gpuwarden_") for n in names) and any(n.startswith("DCGM_") for n in names)
    result = subprocess.run(
        [promtool, "check", "metrics"], check=False, input=text, capture_output=True, timeout=30
    )
    problems = [
        line for line in result.stdout.decode().splitlines() + result.stderr.decode().splitlines() if line
    ]
    assert problems, "promtool should flag the camelCase DCGM labels"
    assert [p for p in problems if not p.startswith("DCGM_")] == []
