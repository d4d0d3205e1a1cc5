from __future__ import annotations

import pytest

from alerting.flapping import FlapPolicy, flap_state


def test_flapping_starts_at_the_upper_threshold_and_stops_only_at_the_lower() -> None:
    policy = FlapPolicy(window_seconds=100, start_transitions=4, stop_transitions=1)
    kept: list[float] = []
    flapping = False
    history = []
    for t in (0, 10, 20, 30):
        kept, flapping = flap_state(policy, kept, t, True, flapping)
        history.append(flapping)
    assert history == [False, False, False, True]
    # 2 transitions left in the window: above the stop threshold, still flapping (hysteresis).
    kept, flapping = flap_state(policy, kept, 115, False, flapping)
    assert (len(kept), flapping) == (2, True)
    kept, flapping = flap_state(policy, kept, 131, False, flapping)
    assert (len(kept), flapping) == (0, False)


def test_policy_without_hysteresis_is_refused() -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        FlapPolicy(start_transitions=3, stop_transitions=3)
