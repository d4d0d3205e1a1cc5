"""The ablation harness: each declared change moves one thing of the default, and the report is the default's
scores where nothing changed."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from anomaly.nab import PROFILES, detect_corpus, evaluate, load_corpus, score_file
from anomaly.thresholds import AdaptiveThresholds
from anomaly.univariate import DEFAULT_PARAMS, Settings
from tests.benchmarks.harness import BENCHMARKS, run_harness, run_script
from tests.benchmarks.nab_corpus import FILES, NAB, small_corpus

sys.path.insert(0, str(BENCHMARKS))
from nab_ablation import ROUND2, combined, grid, round_grid


def _moved(setting: Settings) -> list[str]:
    """What ``setting`` changes against the default: the parts it turns off or moves, and which fields."""
    base, out = Settings(), []
    for part in ("params", "resolve_after", "breakout", "recurrence", "novelty", "entropy", "silence"):
        mine, default = getattr(setting, part), getattr(base, part)
        if mine == default:
            continue
        if mine is None or isinstance(mine, int):
            out.append(part)
            continue
        out += [f"{part}.{f.name}" for f in fields(mine) if getattr(mine, f.name) != getattr(default, f.name)]
    return out


def test_every_declared_change_moves_exactly_one_thing_of_the_default() -> None:
    table = grid()
    assert _moved(table.pop("off")) == []
    assert len(table) == 61
    for label, setting in table.items():
        moved = _moved(setting)
        if label.startswith("threshold="):  # the band, tail band and volatility floor alike
            assert moved == ["params.k", "params.volatility_k", "params.tail_k"], label
        else:
            assert len(moved) == 1, (label, moved)


def test_a_step_moves_by_half_and_double_within_the_setting_s_bounds() -> None:
    table = grid()
    assert table["k=x0.5"].params.k == DEFAULT_PARAMS.k / 2 and table["k=x2"].params.k == DEFAULT_PARAMS.k * 2
    assert table["seasonal_gain=x2"].params.seasonal_gain == 1.0  # at most 1
    assert table["resolve_after=x0.5"].resolve_after == 12 and table["resolve_after=x2"].resolve_after == 48
    assert isinstance(table["warmup=x0.5"].params.warmup, int)
    assert table["recurrence=off"].recurrence is None and table["novelty=off"].novelty is None


def test_the_threshold_step_divides_every_adaptive_score_by_its_factor() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(10.0, 1.0, 600)
    values[400:405] += 40.0
    stamps = 300.0 * np.arange(values.size)
    scores = []
    for setting in (Settings(), grid()["threshold=x2"]):
        model = AdaptiveThresholds(setting.params, capacity=1)
        scores.append(
            [model.update(np.array([0]), values[i : i + 1], stamps[i]).score[0] for i in range(600)]
        )
    default, doubled = np.array(scores[0]), np.array(scores[1])
    assert default.max() > 2.0
    np.testing.assert_allclose(doubled, default / 2.0, rtol=1e-9)


def test_combining_changes_keeps_each_and_round_two_holds_only_round_one_s_adopted() -> None:
    both = combined(("breakout_margin=x2", "breakout_rearm=x2", "resolve_after=x2", "novelty=off"))
    assert both.breakout is not None and both.breakout.margin == 0.04 and both.breakout.rearm == 400
    assert both.resolve_after == 48 and both.novelty is None and both.params == DEFAULT_PARAMS
    assert list(round_grid(2)) == ["off", *(["+".join(ROUND2)] if ROUND2 else [])]
    assert list(round_grid(1, "k=x2, novelty=off")) == ["off", "k=x2", "novelty=off"]


def test_an_unknown_change_is_refused_before_anything_is_scored() -> None:
    done = run_script("nab_ablation.py", "--only", "k=x3")
    assert done.returncode == 2 and done.stdout == ""
    assert "--only: no such change in round 1: k=x3" in done.stderr


@pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")
def test_the_default_row_is_the_default_detector_and_a_change_is_judged_against_it(tmp_path: Path) -> None:
    data, windows = small_corpus(tmp_path)
    result = run_harness("nab_ablation.py", f"--data={data}", f"--windows={windows}", "--only=breakout=off")
    files = load_corpus(data, windows)
    default = evaluate(files).splits
    assert result["files"] == len(FILES)
    assert result["default"]["all_files"] == round(default["all"].scores["standard"] or 0.0, 2)
    off, change = result["changes"]["off"], result["changes"]["breakout=off"]
    assert off["cv_gain"] == {"leave_one_category_out": 0.0, "five_folds": 0.0} and not off["adopted"]
    scored = [score_file(f, detect_corpus(files)[f.name], PROFILES["standard"]) for f in files]
    assert off["alerts"] == sum(s.alerts for s in scored)
    assert off["windows_found"] == sum(s.detected for s in scored)
    assert set(change) >= {"tune", "held_out", "cv_gain", "tune_prefers", "windows_lost", "adopted"}
    assert set(result["whole_grid_cross_validated"]) == {"leave_one_category_out", "five_folds"}
