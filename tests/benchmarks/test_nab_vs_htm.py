"""The like-for-like NAB comparison: HTM's published per-file scores cover exactly the files here, and
normalise as NAB does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.harness import run_harness

NAB = Path("/work/shared/data/nab")  # as tests/anomaly/test_nab.py: the project's ../shared


@pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")
def test_both_detectors_are_scored_on_the_same_files() -> None:
    windows_file = NAB / "labels" / "combined_windows.json"
    groups = run_harness("nab_vs_htm.py", f"--data={NAB / 'data'}", f"--windows={windows_file}")["groups"]
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    assert groups["all"]["files"] == len(windows) and groups["all"]["windows"] == sum(
        map(len, windows.values())
    )
    assert groups["all"]["numenta_htm"] == 75.5  # NAB's per-file figures over these 41 files
    assert groups["tune"]["files"] + groups["held_out"]["files"] == groups["all"]["files"]
