"""The two-stage triage harness: its fast NAB scorer is NAB's, its features read nothing after a candidate,
and its default baseline is the default detector."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from anomaly.nab import PROFILES, NabFile, evaluate, load_corpus, score_file
from anomaly.univariate import Series
from tests.benchmarks.harness import BENCHMARKS, run_harness

sys.path.insert(0, str(BENCHMARKS))
import nab_cv
import nab_triage

NAB = Path("/work/shared/data/nab")  # as tests/anomaly/test_nab.py: the project's ../shared
# Short labelled files of three categories (the parts step them together, as long as the longest): they hold
# default alerts, level and discord candidates, missed windows and false positives.
FILES = [
    "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
    "realAdExchange/exchange-2_cpc_results.csv",
    "realAdExchange/exchange-3_cpc_results.csv",
    "realTraffic/speed_7578.csv",
]
pytestmark = pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")


def _corpus(tmp_path: Path) -> tuple[Path, Path]:
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    for name in FILES:
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NAB / "data" / name, tmp_path / "data" / name)
    (tmp_path / "windows.json").write_text(json.dumps({n: windows[n] for n in FILES}))
    return tmp_path / "data", tmp_path / "windows.json"


def test_the_fast_raw_score_is_nabs_score_of_the_kept_candidates(tmp_path: Path) -> None:
    files = load_corpus(*_corpus(tmp_path))
    parts, low, _ = nab_triage.stage1_parts(files)
    c = nab_triage.candidates(files, parts, low, "S1b")
    per_file_windows = nab_triage.file_windows(files)
    assert (c.window >= 0).any() and (c.scored & (c.window < 0)).any()  # windows hit and false positives
    rng = np.random.default_rng(7)
    everything = np.ones(len(files), np.bool_)
    for _ in range(20):
        keep = rng.random(len(c.index)) < 0.5
        alerts = {f.name: np.zeros(len(f.series.values), np.bool_) for f in files}
        for j, i in zip(c.file[keep], c.index[keep], strict=True):
            alerts[files[int(j)].name][int(i)] = True
        expected = sum(score_file(f, alerts[f.name], PROFILES["standard"]).raw for f in files)
        got = nab_triage.raw_score(c, keep, everything[c.file], int(per_file_windows.sum()))
        assert got == pytest.approx(expected, abs=1e-9)


def _cut(files: list[NabFile], cut: int) -> list[NabFile]:
    return [
        NabFile(
            name=f.name,
            series=Series(
                name=f.series.name, timestamps=f.series.timestamps[:cut], values=f.series.values[:cut]
            ),
            windows=tuple((lo, hi) for lo, hi in f.windows if hi < cut),
        )
        for f in files
    ]


def test_a_candidates_features_do_not_change_when_every_later_sample_is_cut_off(tmp_path: Path) -> None:
    files = load_corpus(*_corpus(tmp_path))
    parts, low, _ = nab_triage.stage1_parts(files)
    full = nab_triage.candidates(files, parts, low, "S1b")
    # cut right after a candidate (its own sample is the last one known), at three places
    cuts = sorted({int(full.index[np.argmin(np.abs(full.index - at))]) + 1 for at in (500, 900, 1300)})
    assert len(cuts) == 3
    for cut in cuts:
        parts, low, _ = nab_triage.stage1_parts(_cut(files, cut))
        early = nab_triage.candidates(_cut(files, cut), parts, low, "S1b")
        before = full.index < cut
        assert np.array_equal(full.file[before], early.file)
        assert np.array_equal(full.index[before], early.index)
        assert early.index.max() == cut - 1  # the candidate at the edge is compared too
        for name in nab_triage.FEATURES["full"]:
            assert np.allclose(full.features[name][before], early.features[name], equal_nan=True), (cut, name)


def test_the_harness_scores_the_default_as_evaluate_does_and_picks_per_fold(
    tmp_path: Path,
) -> None:
    data, windows = _corpus(tmp_path)
    result = run_harness("nab_triage.py", f"--data={data}", f"--windows={windows}", timeout=600)
    default = evaluate(load_corpus(data, windows)).splits["all"]
    assert result["default_score"] == round(default.scores["standard"] or 0.0, 2)
    assert result["stage1"]["default"]["score"] == result["default_score"]
    assert result["stage1"]["S1b"]["windows_found"] >= result["stage1"]["default"]["windows_found"]
    for scheme in ("leave_one_category_out", "five_folds"):
        cv = result["cross_validated"][scheme]
        assert len(cv["per_setting"]) == 12
        assert set(cv["selected"]["picks"]) == set(nab_cv.fold_schemes(FILES)[scheme].values())
        assert all(pick in cv["per_setting"] for pick in cv["selected"]["picks"].values())
