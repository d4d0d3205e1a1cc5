"""The cross-validation harness: every fold's choice is scored on files it was not chosen on."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from anomaly.nab import FileScore, NabFile, detect_corpus, evaluate, load_corpus
from anomaly.univariate import Series
from tests.benchmarks.harness import BENCHMARKS, harness_module, run_harness
from tests.benchmarks.nab_corpus import FILES, NAB, small_corpus


@pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")
def test_the_cross_validated_score_uses_held_out_folds_and_the_baseline_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data, windows = small_corpus(tmp_path)
    result = run_harness("nab_cv.py", f"--data={data}", f"--windows={windows}")
    default = evaluate(load_corpus(data, windows)).splits["all"]
    assert result["files"] == len(FILES) and result["windows"] == default.windows
    assert result["all_files"]["off"] == round(default.scores["standard"] or 0.0, 2)
    by_category = result["cross_validated"]["leave_one_category_out"]
    assert sorted(by_category["picks"]) == sorted({n.split("/")[0] for n in FILES})
    assert by_category["entropy_off"] == result["all_files"]["off"]  # nothing chosen: no optimism
    # The other candidate in this process (the script's start and command line are the run's above).
    nab_cv = harness_module(monkeypatch, "nab_cv")
    nab_cv.main(*nab_cv._options([f"--data={data}", f"--windows={windows}", "--candidate=levels"]))
    (line,) = capsys.readouterr().out.splitlines()
    levels = json.loads(line)
    assert levels["candidate"] == "levels" and levels["all_files"]["off"] == result["all_files"]["off"]
    assert all(label == "off" or label.startswith("scales=") for label in levels["all_files"])
    assert levels["cross_validated"]["five_folds"]["levels_off"] == result["all_files"]["off"]


def test_a_part_or_ed_with_the_default_steps_the_default_once_for_the_whole_grid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The levels and surprise grids OR each setting's part with the default's alerts, as ``detect_corpus``
    does: the harness stepped the default again for each of their settings (13 times for levels)."""
    nab_cv = harness_module(monkeypatch, "nab_cv")
    rng = np.random.default_rng(5)
    values = 10.0 + rng.normal(0.0, 1.0, 700)
    values[500:] += 4.0  # a level shift, which the level breakout finds and the default may not
    t = np.arange(700, dtype=float) * 300
    files = [NabFile("cat/f.csv", Series("f.csv", t, values), ((480, 560),))]
    stepped = []

    def counted(*args: Any, **kwargs: Any) -> dict[str, npt.NDArray[np.bool_]]:
        stepped.append(kwargs)
        return detect_corpus(*args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(nab_cv, "detect_corpus", counted)
    table = nab_cv.grid_alerts(files, "levels")
    assert stepped == [{}] and list(table) == list(nab_cv.candidates("levels"))
    assert table["off"]["cat/f.csv"].tolist() == detect_corpus(files)["cat/f.csv"].tolist()
    for label in list(table)[1::5]:
        joined = detect_corpus(files, levels=nab_cv.candidates("levels")[label])
        assert table[label]["cat/f.csv"].tolist() == joined["cat/f.csv"].tolist(), label


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
