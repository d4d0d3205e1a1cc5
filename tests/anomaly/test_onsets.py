from __future__ import annotations

import numpy as np

from anomaly.onsets import OnsetTracker


def run(tracker: OnsetTracker, flags: list[bool]) -> tuple[list[int], list[int]]:
    raised, resolved = [], []
    for i, flag in enumerate(flags):
        up, down = tracker.step(np.array([0]), np.array([flag]))
        if up[0]:
            raised.append(i)
        if down[0]:
            resolved.append(i)
    return raised, resolved


def test_a_sustained_anomaly_raises_one_alert():
    raised, _ = run(OnsetTracker(resolve_after=3), [False, True, True, True, True, False])
    assert raised == [1]


def test_a_flickering_score_does_not_re_raise_until_quiet_for_resolve_after_samples():
    raised, resolved = run(OnsetTracker(resolve_after=3), [True, False, True, False, False, False, True])
    assert raised == [0, 6]
    assert resolved == [5]
