"""The cross-validation harness: every fold's choice is scored on files it was not chosen on."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from anomaly.nab import FileScore, evaluate, load_corpus
from tests.benchmarks.harness import BENCHMARKS, run_harness

NAB = Path("/work/shared/data/nab")  # as tests/anomaly/test_nab.py: the project's ../shared
# The shortest labelled files of three categories, two in one (a category fold of two files): the harness
# steps every file together, as long as the longest, so these 1,625 steps a candidate, not 4,032.
FILES = [
    "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
    "realAdExchange/exchange-2_cpm_results.csv",
    "realAdExchange/exchange-3_cpm_results.csv",
    "realTraffic/speed_7578.csv",
]


def small_corpus(folder: Path) -> tuple[Path, Path]:
    """``FILES`` copied under ``folder``: its data folder and windows file."""
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    for name in FILES:
        (folder / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NAB / "data" / name, folder / "data" / name)
    (folder / "windows.json").write_text(json.dumps({n: windows[n] for n in FILES}))
    return folder / "data", folder / "windows.json"


@pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")
def test_the_cross_validated_score_uses_held_out_folds_and_the_baseline_is_the_default(
    tmp_path: Path,
) -> None:
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    for name in FILES:
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NAB / "data" / name, tmp_path / "data" / name)
    (tmp_path / "windows.json").write_text(json.dumps({n: windows[n] for n in FILES}))
    result = run_harness("nab_cv.py", f"--data={tmp_path / 'data'}", f"--windows={tmp_path / 'windows.json'}")
    default = evaluate(load_corpus(tmp_path / "data", tmp_path / "windows.json")).splits["all"]
    assert result["files"] == len(FILES) and result["windows"] == default.windows
    assert result["all_files"]["off"] == round(default.scores["standard"] or 0.0, 2)
    by_category = result["cross_validated"]["leave_one_category_out"]
    assert sorted(by_category["picks"]) == sorted({n.split("/")[0] for n in FILES})
    assert by_category["entropy_off"] == result["all_files"]["off"]  # nothing chosen: no optimism
    levels = run_harness(
        "nab_cv.py",
        f"--data={tmp_path / 'data'}",
        f"--windows={tmp_path / 'windows.json'}",
        "--candidate=levels",
    )
    assert levels["candidate"] == "levels" and levels["all_files"]["off"] == result["all_files"]["off"]
    assert all(label == "off" or label.startswith("scales=") for label in levels["all_files"])
    assert levels["cross_validated"]["five_folds"]["levels_off"] == result["all_files"]["off"]


def test_each_fold_is_scored_with_the_choice_made_on_the_other_folds() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    from nab_cv import cross_validate  # noqa: PLC0415

    def scores(*raws: float) -> dict[str, FileScore]:
        return {f"f{i}": FileScore(raw=r, windows=1) for i, r in enumerate(raws)}

    # "a" is best overall (2.0 against 1.0) and best on f0 and f1, but worst on f2, where "b" wins.
    table = {"a": scores(1.0, 1.0, 0.0), "b": scores(0.0, 0.0, 1.0)}
    score, picks = cross_validate(table, {"f0": "x", "f1": "y", "f2": "z"})
    # f0's choice is made on f1 and f2 (a: 1.0, b: 1.0, a tie kept in order: a), f1's likewise, and f2's on
    # f0 and f1 (a); a fold that saw itself would have picked b for f2 and scored 3 of 3.
    assert picks == {"x": "a", "y": "a", "z": "a"}
    assert score == pytest.approx(100.0 * (2.0 + 3) / (2 * 3), abs=0.01)
