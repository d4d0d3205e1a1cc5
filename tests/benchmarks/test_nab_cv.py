"""The cross-validation harness: every fold's choice is scored on files it was not chosen on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from anomaly.nab import evaluate, load_corpus

ROOT = Path(__file__).resolve().parents[2]
NAB = Path("/work/shared/data/nab")  # as tests/anomaly/test_nab.py: the project's ../shared
FILES = [
    "artificialWithAnomaly/art_daily_jumpsup.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv",
    "realAdExchange/exchange-2_cpm_results.csv",
    "realTraffic/occupancy_6005.csv",
]


@pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")
def test_the_cross_validated_score_uses_held_out_folds_and_the_baseline_is_the_default(
    tmp_path: Path,
) -> None:
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    for name in FILES:
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NAB / "data" / name, tmp_path / "data" / name)
    (tmp_path / "windows.json").write_text(json.dumps({n: windows[n] for n in FILES}))
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "nab_cv.py"),
            f"--data={tmp_path / 'data'}",
            f"--windows={tmp_path / 'windows.json'}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout)
    default = evaluate(load_corpus(tmp_path / "data", tmp_path / "windows.json")).splits["all"]
    assert result["files"] == len(FILES) and result["windows"] == default.windows
    assert result["all_files"]["off"] == round(default.scores["standard"] or 0.0, 2)
    by_category = result["cross_validated"]["leave_one_category_out"]
    assert sorted(by_category["picks"]) == sorted(n.split("/")[0] for n in FILES)
    assert by_category["entropy_off"] == result["all_files"]["off"]  # nothing chosen: no optimism
