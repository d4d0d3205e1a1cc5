from __future__ import annotations

import random

import pytest

from alerting.flapping import FlapPolicy, flap_state, settles_after


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


@pytest.mark.parametrize("seed", range(20))
def test_a_flapping_alert_settles_at_no_tick_before_settles_after_says(seed: int) -> None:
    # The tick looks at a flapping alert only from then on: a settle before it would be missed.
    rng = random.Random(seed)
    policy = FlapPolicy(window_seconds=600, start_transitions=6, stop_transitions=2)
    start = 1_772_352_000.0 + rng.uniform(0, 1e6)  # timestamps of today's size: rounding as in serve
    transitions = sorted(start + rng.uniform(0, 900) for _ in range(rng.randint(0, 9)))
    at = settles_after(policy, transitions)
    for now in (start + k * 0.25 for k in range(6_400)):
        _, flapping = flap_state(policy, transitions, now, False, True)
        assert flapping or now >= at, (now, at)
        if now >= at + 0.002:
            assert not flapping, (now, at)
