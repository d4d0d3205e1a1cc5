"""The parts' vote harness: its vote is causal and raises once per agreement, and every declared setting is
OR-ed with the default and cross-validated against it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from anomaly.nab import evaluate, load_corpus
from tests.benchmarks.harness import BENCHMARKS, run_harness
from tests.benchmarks.nab_corpus import FILES, NAB, small_corpus

sys.path.insert(0, str(BENCHMARKS))
from nab_vote import combine, grid, voting


def _alerts(length: int, *at: int) -> np.ndarray:
    out = np.zeros(length, np.bool_)
    out[list(at)] = True
    return out


def test_the_grid_is_the_plain_or_and_five_votes() -> None:
    assert grid() == {
        "any": (1, 1),
        "vote=2,within=12": (2, 12),
        "vote=2,within=48": (2, 48),
        "vote=2,within=288": (2, 288),
        "vote=3,within=48": (3, 48),
        "vote=3,within=288": (3, 288),
    }


def test_two_parts_agreeing_within_the_window_raise_once_at_the_second_alert() -> None:
    parts = [_alerts(40, 5), _alerts(40, 10), _alerts(40)]
    assert np.flatnonzero(voting(parts, 2, 6)).tolist() == [10]
    assert not voting(parts, 2, 5).any()  # 5's vote lasts samples 5 to 9
    assert not voting(parts, 3, 30).any()


def test_a_part_that_raises_twice_is_one_vote() -> None:
    assert not voting([_alerts(30, 3, 8), _alerts(30)], 2, 20).any()


def test_the_vote_reads_no_later_sample() -> None:
    rng = np.random.default_rng(7)
    parts = [rng.random(300) < 0.03 for _ in range(5)]
    whole = voting(parts, 2, 12)
    for cut in (1, 50, 151, 299):
        assert np.array_equal(voting([p[:cut] for p in parts], 2, 12), whole[:cut])


def test_a_new_agreement_after_the_votes_lapse_raises_again() -> None:
    parts = [_alerts(60, 2, 40), _alerts(60, 4, 41)]
    assert np.flatnonzero(voting(parts, 2, 10)).tolist() == [4, 41]


def test_any_is_every_part_s_alerts_as_they_are() -> None:
    parts = [_alerts(20, 3), _alerts(20, 4), _alerts(20, 15)]
    assert np.flatnonzero(combine(parts, 1, 1)).tolist() == [3, 4, 15]


@pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")
def test_every_declared_setting_is_or_ed_with_the_default_and_only_the_tune_pick_reads_held_out(
    tmp_path: Path,
) -> None:
    data, windows = small_corpus(tmp_path)
    result = run_harness("nab_vote.py", f"--data={data}", f"--windows={windows}", "--held-out")
    default = evaluate(load_corpus(data, windows)).splits
    settings = result["settings"]
    assert list(settings) == ["off", *grid()]
    assert settings["off"]["all_files"] == round(default["all"].scores["standard"] or 0, 2)
    for label, row in settings.items():  # the default's alerts are in every OR-ed setting
        assert row["windows_found"] >= settings["off"]["windows_found"], label
        assert row["alerts"] >= settings["off"]["alerts"], label
    assert settings["any"]["alerts"] >= max(row["alerts"] for row in settings.values())
    for scheme in ("leave_one_category_out", "five_folds"):
        assert result["cross_validated"][scheme]["off"] == settings["off"]["all_files"]
    assert sorted(result["cross_validated"]["leave_one_category_out"]["picks"]) == sorted(
        {n.split("/")[0] for n in FILES}
    )
    assert set(result["held_out"]) == {"off", result["frozen_on_tune"]}
    assert result["held_out"]["off"] == round(default["held_out"].scores["standard"] or 0, 2)
    assert set(result["parts"]) == {"levels", "surprise", "art", "runlength", "neighbours"}
