"""The confirmation harness: its rules only delay or drop the default's alerts, each as declared."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from anomaly.nab import NabFile, detect_corpus, load_corpus
from anomaly.univariate import score_together
from tests.benchmarks.harness import BENCHMARKS
from tests.benchmarks.nab_corpus import NAB, small_corpus

sys.path.insert(0, str(BENCHMARKS))
from nab_confirm import QUIET, budget, confirm, detect, episodes, grid, vote


def _series(length: int, bursts: dict[int, list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Onsets and scores: 0.5 everywhere, each burst's scores from its onset on."""
    score, raised = np.full(length, 0.5), np.zeros(length, np.bool_)
    for t, values in bursts.items():
        score[t : t + len(values)] = values
        raised[t] = True
    return raised, score


def test_the_grid_is_the_default_and_eighteen_distinct_rules() -> None:
    rules = grid()
    assert rules["off"] is None
    assert len(rules) == 19 and len(set(rules.values())) == 19


def test_an_episode_ends_at_the_next_onset_or_after_the_default_re_arm() -> None:
    raised, score = _series(200, {10: [2.0, 2.0], 20: [1.5], 100: [3.0]})
    assert episodes(raised, score) == [(10, 20), (20, 21 + QUIET - 1), (100, 101 + QUIET - 1)]


def test_confirm_sends_an_episode_where_it_grew_or_persisted_and_drops_a_blip() -> None:
    raised, score = _series(300, {10: [1.2, 1.3, 1.1], 100: [1.2, 0.5, 4.0], 200: [1.1]})
    assert np.flatnonzero(confirm(raised, score, 3, math.inf)).tolist() == [12]
    assert np.flatnonzero(confirm(raised, score, 2, 3.0)).tolist() == [11, 102]
    np.testing.assert_array_equal(confirm(raised, score, 1, math.inf), raised)


def test_a_budget_spent_asks_the_next_alert_to_beat_the_recent_scores() -> None:
    raised, score = _series(1000, {10: [5.0], 100: [3.0, 6.0], 200: [2.0], 600: [1.5]})
    sent = budget(raised, score, 288, 1)
    assert np.flatnonzero(sent).tolist() == [10, 101, 600]  # 200 never beat 6.0; 600 had the budget again


def test_a_vote_waits_for_enough_views_within_the_lookback() -> None:
    raised, score = _series(100, {10: [2.0, 2.0, 2.0, 2.0]})
    other = np.full(100, 0.5)
    other[5] = 3.0  # five samples before the onset
    other[12] = 3.0
    assert np.flatnonzero(vote(raised, score, [other], 2, 0)).tolist() == [12]
    assert np.flatnonzero(vote(raised, score, [other], 2, 5)).tolist() == [10]
    assert not vote(raised, score, [other, other], 3, 0)[:12].any()
    np.testing.assert_array_equal(vote(raised, score, [other], 1, 0), raised)


pytestmark_nab = pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[NabFile]:
    return load_corpus(*small_corpus(tmp_path_factory.mktemp("nab")))


@pytestmark_nab
def test_off_is_the_default_detector_and_every_rule_only_delays_or_drops(files: list[NabFile]) -> None:
    scored = score_together([f.series for f in files])
    others = [[s.score, s.score] for s in scored]  # the views' scores: only their shape matters here
    default = detect_corpus(files)
    off = detect(files, None, scored, others)
    for name, raised in default.items():
        np.testing.assert_array_equal(off[name], raised)
    for rule in grid().values():
        for f, s in zip(files, scored, strict=True):
            sent = detect([f], rule, [s], [[s.score, s.score]])[f.name]
            assert sent.sum() <= s.raised.sum()
            onsets = np.flatnonzero(s.raised)
            for t in np.flatnonzero(sent):  # sent at or after an onset of the default, never before its first
                assert onsets.size and t >= onsets[0]
