"""Medians and means of many groups of rows at once, each equal to the bit to ``np.median`` / ``np.mean`` of
that group's values alone: the fleet detector's peer groups (625 jobs of 16 GPUs on 5 queries, 3,125 groups a
tick) in a few array operations rather than a Python loop of ``np.median`` calls."""

from __future__ import annotations

import numpy as np

from anomaly.thresholds import FloatArray, IntArray


def group_medians(values: FloatArray, group: IntArray, groups: int) -> FloatArray:
    """Per group (``group`` per row, 0 to ``groups`` - 1), the median of its rows' ``values`` as ``np.median``
    of them alone gives it; NaN for a group with no row, or with a NaN among its values."""
    order = np.lexsort((values, group))  # by group, then value (NaN last, as ``np.sort``)
    return ranked_medians(values[order], group[order], groups)


def ranked_medians(ranked: FloatArray, group: IntArray, groups: int) -> FloatArray:
    """``group_medians`` of values already by group, then value (in a lexsort's order, or rows of it): no
    sort."""
    n = np.bincount(group, minlength=groups)
    start = np.cumsum(n) - n
    median = np.full(groups, np.nan)
    some = np.flatnonzero(n)
    first, count = start[some], n[some]
    low = ranked[first + (count - 1) // 2]
    # ``np.median`` is ``np.mean`` of the middle one or two values: 0.0 plus their sum (so a -0.0 reads
    # 0.0), over their count; two middle ones summed alone only (their sum may overflow, as np.median's).
    mid = 0.0 + low
    even = count % 2 == 0
    mid[even] = (0.0 + (low[even] + ranked[(first + count // 2)[even]])) / 2
    mid[np.isnan(ranked[first + count - 1])] = np.nan  # a NaN sorts last; np.median gives NaN
    median[some] = mid
    return median


def group_means(values: FloatArray, group: IntArray, groups: int) -> FloatArray:
    """Per group (0 to ``groups`` - 1), the mean of its rows' ``values`` in their order as ``np.mean`` of them
    alone gives it; NaN for a group with no row. ``group`` must not decrease (each group's rows together).

    ``np.mean`` sums pairwise, its pairs set by the count; so the groups of each size are summed together as
    the rows of one array, whose sums along the row numpy takes pairwise row by row, the same to the bit."""
    n = np.bincount(group, minlength=groups)
    start = np.cumsum(n) - n
    mean = np.full(groups, np.nan)
    for size in np.unique(n[n > 0]).tolist():
        which = np.flatnonzero(n == size)
        mean[which] = np.mean(values[start[which, None] + np.arange(size)], axis=1)
    return mean
