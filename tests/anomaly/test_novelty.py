from __future__ import annotations

import numpy as np
import pytest

from anomaly.novelty import ContextNovelty, NoveltyParams
from tests.anomaly.stepping import feed_one

PARAMS = NoveltyParams(levels=4, order=2, threshold=0.5, warmup=40, rearm=20)


def saw(cycles: int) -> list[float]:
    return [0.0, 1.0, 2.0, 3.0] * cycles  # levels 0, 1, 2, 3 in turn, over a range of 0..3


def test_a_repeating_pattern_raises_nothing_once_warmed_up():
    scores, raised = feed_one(ContextNovelty(PARAMS), saw(40))
    assert raised == []
    assert max(scores[40:]) == 0.0


def test_a_new_pattern_inside_the_known_range_raises():
    # 0 -> 3 -> 0 never happened in the saw: the change 3 -> 0 did, but 0 -> 3 is new
    scores, raised = feed_one(ContextNovelty(PARAMS), [*saw(20), 0.0, 3.0, *saw(5)])
    assert raised == [81]
    assert scores[81] >= 1.0


def test_a_pattern_raises_only_the_first_time_it_is_seen():
    odd = [0.0, 3.0, 0.0, 2.0]  # 0 -> 3 and 3 -> 0 -> 2 are new
    _, raised = feed_one(ContextNovelty(PARAMS), [*saw(20), *odd, *saw(10), *odd, *saw(10)])
    assert raised == [81]
    # the second occurrence comes 40 samples later, past the re-arm spell of 20, yet is familiar now
    scores, _ = feed_one(ContextNovelty(PARAMS), [*saw(20), *odd, *saw(10), *odd])
    assert max(scores[-4:]) == 0.0


def test_nothing_is_scored_or_raised_during_the_warm_up():
    scores, raised = feed_one(ContextNovelty(PARAMS), [5.0, -5.0, 0.0, 9.0, 1.0, 7.0, *saw(8)])
    assert len(scores) == 38 < PARAMS.warmup
    assert raised == [] and max(scores) == 0.0


def test_a_novelty_within_the_rearm_spell_of_another_does_not_raise_again():
    _, raised = feed_one(ContextNovelty(PARAMS), [*saw(20), 0.0, 3.0, 1.0, 3.0, *saw(2)])
    assert raised == [81]  # 1 -> 3 at 83 is new too, but comes 2 samples after the alert


def test_scores_of_earlier_samples_do_not_change_when_later_samples_arrive():
    rng = np.random.default_rng(7)
    values = list(np.round(rng.normal(size=300) * 3) + np.tile(np.arange(10.0), 30))
    short, _ = feed_one(ContextNovelty(PARAMS), values[:200])
    long, _ = feed_one(ContextNovelty(PARAMS), values)
    assert long[:200] == short
    assert max(long) >= 1.0  # the comparison is not between two all-zero lists


def test_series_are_independent_and_nan_samples_are_skipped():
    detector = ContextNovelty(PARAMS)
    ids = np.array([0, 1], dtype=np.int64)
    odd_one = [*saw(20), 0.0, 3.0]
    for i, v in enumerate(odd_one):
        out = detector.update(ids, np.array([v, saw(21)[i] if i < 81 else np.nan]))
    assert bool(out.raised[0]) and not bool(out.raised[1])
    assert out.score[1] == 0.0
    # the NaN left series 1 where it was: its next value continues the saw with nothing new
    out = detector.update(ids, np.array([0.0, 1.0]))
    assert out.score[1] == 0.0


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError):
        ContextNovelty(NoveltyParams(levels=0))


def sine(rows: int, period: int, level: float = 0.0) -> list[float]:
    return [level + float(np.sin(2 * np.pi * i / period)) for i in range(rows)]


def test_a_clean_periodic_series_raises_nothing_at_the_end_of_its_warm_up():
    # the range grows over the first quarter period, so the warm-up met its levels under other quantisations
    scores, raised = feed_one(ContextNovelty(PARAMS), sine(200, 32))
    assert raised == []
    assert max(scores) == 0.0


def test_a_daily_shape_under_the_default_parameters_raises_nothing_at_the_end_of_its_warm_up():
    # like NAB's art_daily_no_noise: 288 samples a day, a warm-up of 300 that ends early on the second day
    _, raised = feed_one(ContextNovelty(), sine(1500, 288))
    assert raised == []


def test_a_level_change_after_the_warm_up_and_a_quiet_spell_still_raises():
    values = [*sine(100, 16), *sine(40, 16, level=5.0)]
    scores, raised = feed_one(ContextNovelty(PARAMS), values)
    assert raised == [100]
    assert scores[100] >= 1.0


def test_a_series_still_meeting_new_contexts_at_the_end_of_its_warm_up_stays_muted_for_the_rearm_spell():
    rng = np.random.default_rng(3)
    noise = list(rng.uniform(0.0, 3.0, PARAMS.warmup))  # at 4 levels, new level changes until the end
    _, raised = feed_one(ContextNovelty(PARAMS), [*noise, *sine(40, 16, level=10.0)])
    assert all(i >= PARAMS.warmup + PARAMS.rearm - 1 for i in raised)


def test_values_whose_range_overflows_a_float_are_quantised_like_any_other():
    # A range from -1.7e308 to 1.7e308 is wider than the largest float: its width overflowed to inf and
    # every value inside it stopped the scoring with "cannot convert float NaN to integer".
    big = 1.7e308
    scaled = feed_one(ContextNovelty(PARAMS), [v * (big / 3) for v in saw(15)] + [-big, big, 0.1 * big, big])
    reference = feed_one(ContextNovelty(PARAMS), [*saw(15), -3.0, 3.0, 0.3, 3.0])
    assert scaled == reference


def test_a_novel_sample_scores_over_1_and_one_below_the_threshold_at_most_1() -> None:
    # order 2, threshold 0.5: one unseen context of two is novel; it scored exactly 1.0, which reads as
    # "not anomalous" where >1 means anomalous
    params = NoveltyParams(levels=8, order=2, threshold=0.5, warmup=40, rearm=1)
    scores, raised = feed_one(ContextNovelty(params), [*saw(20), 0.0, 3.0, *saw(5)])
    assert raised and all(scores[k] > 1.0 for k in raised)
    assert all(s <= 1.0 for k, s in enumerate(scores) if k not in raised)
