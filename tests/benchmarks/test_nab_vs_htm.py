"""The like-for-like NAB comparison: HTM's published per-file scores cover exactly the files here, and
normalise as NAB does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.benchmarks.harness import BENCHMARKS, run_harness

NAB = Path("/work/shared/data/nab")  # as tests/anomaly/test_nab.py: the project's ../shared


def _found_from_the_repository() -> bool:
    sys.path.insert(0, str(BENCHMARKS))
    from nab_inputs import default_corpus  # noqa: PLC0415

    return default_corpus() is not None


@pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")
@pytest.mark.skipif(
    not _found_from_the_repository(),
    reason="no NAB corpus beside this checkout (a clone not beside shared/): nothing to default to",
)
def test_both_detectors_are_scored_on_the_same_files_of_the_default_corpus_from_any_directory(
    tmp_path: Path,
) -> None:
    # The defaults are found from the script's place (here a worktree of the main checkout, or the main
    # checkout itself), not from the current directory.
    groups = run_harness("nab_vs_htm.py", cwd=tmp_path)["groups"]
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    assert groups["all"]["files"] == len(windows) and groups["all"]["windows"] == sum(
        map(len, windows.values())
    )
    assert groups["all"]["numenta_htm"] == 75.5  # NAB's per-file figures over these 41 files
    assert groups["tune"]["files"] + groups["held_out"]["files"] == groups["all"]["files"]
