import math

import numpy as np
import pytest

from anomaly.rangeedges import RangeEdges
from anomaly.sources import Frame

STEP = 30.0
WINDOW = 300.0


def masked(missing: list[int], *, guarded: bool) -> list[int]:
    """Steps of a 40-step read of one series (present from its first step) that come back scored."""
    ts = 1_767_225_600.0 + STEP * np.arange(40)
    values = np.ones((1, ts.size))
    values[0, missing] = math.nan
    frame = Frame("requests", [{"pod": "a"}], ts, values)
    out = RangeEdges(forget_after=3600).mask(frame, WINDOW, STEP, guarded=guarded)
    return np.flatnonzero(np.isfinite(out.values[0])).tolist()


@pytest.mark.parametrize(
    ("guarded", "blanked"), [(True, []), (False, list(range(21, 32)))], ids=["guarded", "bare"]
)
def test_one_missing_point_of_a_guarded_query_is_a_missed_scrape_not_a_new_run(guarded, blanked):
    # Guarded (`rate(x[5m]) and x`), a failed scrape leaves a step with no point while the window still
    # holds the samples before it; unguarded, a missing point means the series was absent for the range.
    kept = masked([20], guarded=guarded)
    assert [k for k in range(40) if k not in kept and k != 20] == blanked


def test_two_missing_points_of_a_guarded_query_start_a_new_run_as_for_any_query():
    kept = masked([20, 21], guarded=True)
    assert [k for k in range(40) if k not in kept and k not in (20, 21)] == list(range(22, 33))
