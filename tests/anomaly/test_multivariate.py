from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest

from anomaly.multivariate import MultivariateDetector, _ForestScorer
from anomaly.series import CounterRates, SeriesIndex, build_view
from anomaly.sources import Frame

QUERIES = ("temp", "power", "clock")


def view_of(x: np.ndarray, t: float, index: SeriesIndex, rates: CounterRates):
    labs = [{"UUID": f"GPU-{i}"} for i in range(x.shape[0])]
    frames = [Frame(q, labs, np.array([t]), x[:, [j]]) for j, q in enumerate(QUERIES)]
    return build_view(frames, index, rates, t)


def normal(rng: np.random.Generator, n: int) -> np.ndarray:
    load = rng.uniform(0, 1, n)
    return np.c_[40 + 30 * load, 100 + 500 * load, 1980 - 50 * load] + rng.normal(0, 1, (n, 3))


def test_nothing_is_scored_before_the_first_fit_and_an_odd_gpu_is_flagged_after():
    rng = np.random.default_rng(0)
    det = MultivariateDetector(QUERIES, trees=50)
    index, rates = SeriesIndex(), CounterRates()
    for t in range(20):
        findings = det.detect(view_of(normal(rng, 32), float(t), index, rates))
    assert not det.fitted and (findings[0].score == 0).all()
    det.fit(view_of(normal(rng, 32), 20.0, index, rates))
    assert det.fitted
    x = normal(rng, 32)
    x[5] = [85, 110, 1975]  # hot at idle power and full clock: each value is normal alone, not together
    found = det.detect(view_of(x, 21.0, index, rates))[0]
    odd = [lab["UUID"] for lab in found.labels].index("GPU-5")
    assert found.score[odd] > 1
    assert (np.delete(found.score, odd) < 1).mean() > 0.9


def test_gpus_missing_a_feature_are_left_out_of_the_batch():
    det = MultivariateDetector(QUERIES)
    index, rates = SeriesIndex(), CounterRates()
    x = np.ones((3, 3))
    x[1, 2] = np.nan
    labs, matrix = det.matrix(view_of(x, 0.0, index, rates))
    assert [lab["UUID"] for lab in labs] == ["GPU-0", "GPU-2"]
    assert matrix.shape == (2, 3)


def test_the_fast_forest_scorer_equals_scikit_learns_score_samples():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    probe = np.vstack([rng.normal(size=(60, 5)), rng.normal(8, 1, size=(4, 5))])
    for max_features in (1.0, 3):
        model = IsolationForest(n_estimators=30, max_features=max_features, random_state=1).fit(x)
        scorer = _ForestScorer.of(model, 5)
        assert scorer is not None
        np.testing.assert_allclose(scorer.score(probe), -model.score_samples(probe), rtol=1e-12)
