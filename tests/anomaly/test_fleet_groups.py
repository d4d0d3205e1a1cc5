"""The fleet detector scores every peer group at once (``anomaly.peergroups``); these tests hold it to the
group-by-group loop it replaced (``fleet_reference.GroupByGroupFleet``), to the bit."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.fleet import FleetDetector
from anomaly.peergroups import group_means, group_medians
from anomaly.series import Step
from tests.anomaly.fleet_reference import GroupByGroupFleet

POWER, CLOCK = "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK"


def random_fleet(rng: np.random.Generator) -> list[dict[str, str]]:
    """GPUs of Slurm jobs and inference replicas of 1 to 40 GPUs on two models, and idle GPUs, shuffled."""
    labels: list[dict[str, str]] = []
    for j in range(int(rng.integers(3, 14))):
        model = str(rng.choice(["H100", "A100"]))
        for i in range(int(rng.integers(1, 41))):
            if j % 3 == 2:
                workload = {"namespace": "inf", "pod": f"svc{j}-5d9c7b{j:04d}-x{i:04d}"}
            else:
                workload = {"slurm_job": str(j)}
            labels.append({"UUID": f"GPU-{j}-{i}", "modelName": model, **workload})
    labels += [{"UUID": f"GPU-idle-{i}", "modelName": "H100"} for i in range(int(rng.integers(0, 5)))]
    return [labels[i] for i in rng.permutation(len(labels))]


def random_values(rng: np.random.Generator, n: int, load: np.ndarray | None) -> np.ndarray:
    """Values following ``load`` (where given) with noise, some integer (ties), zeros of both signs, some
    outliers (faulty GPUs a group must not learn from), some NaN (not reported)."""
    x = 300.0 + rng.normal(0, 8, n) + (0.0 if load is None else 2.5 * np.nan_to_num(load, nan=40.0))
    x = np.where(rng.random(n) < 0.3, np.round(x / 4), x)
    x[rng.random(n) < 0.1] = rng.choice([0.0, -0.0])
    x[rng.random(n) < 0.05] += rng.choice([-250.0, 250.0])
    x[rng.random(n) < 0.05] = np.nan
    return x


def random_load(rng: np.random.Generator, n: int) -> np.ndarray | None:
    """No load, a load on every GPU, partly NaN, or mostly NaN (groups under ``min_peers`` GPUs with one)."""
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return None
    load = rng.uniform(0, 100, n)
    load = np.where(rng.random(n) < 0.25, np.round(load / 10) * 10, load)  # ties
    load[rng.random(n) < (0.0, 0.0, 0.3, 0.9)[kind]] = np.nan
    return load


@pytest.mark.parametrize("seed", range(40))
def test_every_group_at_once_scores_and_learns_as_the_group_by_group_loop_to_the_bit(seed: int) -> None:
    """Groups of 1 to 40 GPUs, NaNs, rows outside the data range, groups under ``min_peers``, a load absent,
    present or partly NaN, over ticks that teach load moments, the rows reordered half-way: the z-scores
    are the same bytes and the load moments learnt the same floats, in the same order."""
    rng = np.random.default_rng(seed)
    options = {
        "min_peers": int(rng.choice([1, 2, 4, 6])),
        "k": float(rng.choice([3.0, 6.0])),
        "min_relative_spread": float(rng.choice([0.0, 0.02, 0.2])),
        "min_deviation": {"DCGM_FI_DEV_POWER*": float(rng.choice([0.0, 30.0]))},
        "load_alpha": float(rng.choice([1.0 / 240.0, 0.5])),
    }
    new, old = FleetDetector([POWER, CLOCK], **options), GroupByGroupFleet([POWER, CLOCK], **options)
    labels = random_fleet(rng)
    n = len(labels)
    ids = np.arange(n, dtype=np.int64)
    for tick in range(12):
        if tick == 6:  # other group codes for the same groups: the moments follow the group, not the code
            order = rng.permutation(n)
            ids, labels = ids[order], [labels[i] for i in order]
        for query in (POWER, CLOCK):
            load = random_load(rng, n)
            value = random_values(rng, n, load)
            outside = rng.random(n) < 0.05 if rng.random() < 0.5 else None
            step = Step(query, float(tick), ids, labels, value, value, np.full(n, np.nan), "gauge", outside)
            got, expected = new.robust_z(step, load), old.robust_z(step, load)
            assert np.array_equal(got, expected, equal_nan=True)
            assert got.tobytes() == expected.tobytes()  # the signs of zeros too
            assert list(new._load_moments.items()) == list(old._load_moments.items())
    assert new._load_moments  # the load moments were learnt, not left empty on both sides


def test_group_medians_and_means_are_numpys_of_each_group_alone() -> None:
    """Groups of every size from 1 to 300 (pairwise sums of many shapes), ties, infinities, NaN, zeros of
    both signs: each group's median and mean are ``np.median`` and ``np.mean`` of its values alone."""
    rng = np.random.default_rng(7)
    sizes = np.r_[np.arange(1, 301), rng.integers(1, 40, 200)]
    group = np.repeat(np.arange(sizes.size), sizes)
    values = rng.normal(0, 1, group.size) * 10.0 ** rng.integers(-6, 9, group.size)
    values[rng.random(group.size) < 0.2] = rng.choice([0.0, -0.0, 1.0, np.inf, -np.inf])
    values[rng.random(group.size) < 0.002] = np.nan
    starts = np.cumsum(sizes) - sizes
    with np.errstate(invalid="ignore", over="ignore"):
        medians = [np.median(values[s : s + n]) for s, n in zip(starts, sizes, strict=True)]
        means = [np.mean(values[s : s + n]) for s, n in zip(starts, sizes, strict=True)]
        shuffled = rng.permutation(group.size)  # the medians' rows in any order
        got_medians = group_medians(values[shuffled], group[shuffled], sizes.size + 1)
        got_means = group_means(values, group, sizes.size + 1)
    assert got_medians[:-1].tobytes() == np.array(medians).tobytes()
    assert got_means[:-1].tobytes() == np.array(means).tobytes()
    assert np.isnan(got_medians[-1]) and np.isnan(got_means[-1])  # a group with no row
