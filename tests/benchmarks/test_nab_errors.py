"""The NAB loss breakdown adds up to the score, and the candidates' reconstruction is the default."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from anomaly.nab import evaluate, load_corpus
from tests.benchmarks.harness import run_harness

NAB = Path("/work/shared/data/nab")  # as tests/anomaly/test_nab.py: the project's ../shared
# Short labelled files of three categories (the harness steps them together, as long as the longest:
# 1,644 steps, not 4,032) that still have missed windows, false positives and late detections.
FILES = [
    "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
    "realAdExchange/exchange-3_cpc_results.csv",
    "realAdExchange/exchange-4_cpm_results.csv",
    "realTraffic/speed_7578.csv",
]
pytestmark = pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")


def _corpus(tmp_path: Path) -> list[str]:
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    for name in FILES:
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NAB / "data" / name, tmp_path / "data" / name)
    (tmp_path / "windows.json").write_text(json.dumps({n: windows[n] for n in FILES}))
    return [
        f"--data={tmp_path / 'data'}",
        f"--windows={tmp_path / 'windows.json'}",
        f"--labels={NAB / 'labels' / 'combined_labels.json'}",
    ]


def test_missed_false_positive_and_late_points_add_up_to_the_lost_score(tmp_path: Path) -> None:
    result = run_harness("nab_errors.py", *_corpus(tmp_path), "--candidate=breakdown")
    default = evaluate(load_corpus(tmp_path / "data", tmp_path / "windows.json")).splits["all"]
    everything = result["groups"]["all"]
    assert everything["score"] == round(default.scores["standard"] or 0.0, 2)
    lost = everything["missed_points"] + everything["fp_points"] + everything["late_points"]
    assert abs(100.0 - lost - everything["score"]) < 0.03  # three roundings to 0.01
    assert everything["missed_windows"] > 0 and everything["false_positives"] > 0  # these files have both
    assert everything["late_at_label_points"] > 0
    categories = {n.split("/")[0] for n in FILES}
    for key in ("windows", "missed_windows", "false_positives"):
        assert sum(result["groups"][c][key] for c in categories) == everything[key]
        assert sum(result["groups"][f"fold{k}"][key] for k in range(5)) == everything[key]


@pytest.mark.parametrize("candidate", ["gated"])  # rarity: the same grid code, a longer grid
def test_a_candidate_grid_holds_the_default_unchanged_as_off(tmp_path: Path, candidate: str) -> None:
    result = run_harness("nab_errors.py", *_corpus(tmp_path), f"--candidate={candidate}")
    default = evaluate(load_corpus(tmp_path / "data", tmp_path / "windows.json")).splits["all"]
    assert result["all_files"]["off"] == round(default.scores["standard"] or 0.0, 2)
    assert len(result["all_files"]) > 1
    for scheme in ("leave_one_category_out", "five_folds"):
        assert result["cross_validated"][scheme]["off"] == result["all_files"]["off"]
