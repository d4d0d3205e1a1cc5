from __future__ import annotations

import random

import pytest

from alerting.flapping import FlapPolicy, Folded, flap_state, folded, repeats_reopening, settles_after


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


QUIET = ("quiet", "all alerts resolved; waiting for the quiet period")
FIRING = ("alert_firing", "alert GPUThermalSlowdown (n1, 0) firing")
RESOLVED = ("alert_resolved", "alert GPUThermalSlowdown (n1, 0) resolved")


def _at(events: list[tuple[str, str]], start: float, every: float) -> list[tuple[str, str, float]]:
    return [(kind, message, start + k * every) for k, (kind, message) in enumerate(events)]


def test_the_first_quiet_and_firing_again_are_told_and_their_repeats_folded_with_counts() -> None:
    # A thermal alert 200 s on, 200 s off: opened, then quiet, firing again, quiet, ... 200 s apart.
    opening = [("opened", "incident opened"), ("alert_added", "alert X firing"), ("priority", "P2")]
    cycle = [RESOLVED, QUIET, FIRING]
    timeline = _at(opening, 0, 0) + [
        (kind, message, 200.0 * (k // 3 + 1)) for k, (kind, message) in enumerate(cycle * 4)
    ]
    told = []
    for k, event in enumerate(timeline):
        if event[0] in ("quiet", "alert_firing"):
            batch = [e for e in timeline if e[2] == event[2] and timeline.index(e) <= k]
            earlier = [e for e in timeline if e[2] < event[2]]
            told.append((event[0], folded(event, earlier, batch, 3600)))
    assert [f is None for _, f in told] == [True, True, False, False, False, False, False, False]
    assert told[-1] == ("alert_firing", Folded(fired_again=4, went_quiet=4, within_seconds=3600))


@pytest.mark.parametrize(
    ("between", "window", "gap", "is_folded"),
    [
        pytest.param([], 3600, 400, True, id="a-repeat"),
        pytest.param([("note", "note by bob: looking")], 3600, 400, False, id="a-note-between"),
        pytest.param([("priority", "priority P1: ...")], 3600, 400, False, id="a-priority-change-between"),
        pytest.param([("flapping_stopped", "x")], 3600, 400, False, id="a-flap-flag-between"),
        pytest.param([], 3600, 3700, False, id="its-like-older-than-the-window"),
        pytest.param([], 0, 400, False, id="folding-off"),
    ],
)
def test_a_cycle_event_is_folded_only_as_a_repeat_with_nothing_else_between(
    between: list[tuple[str, str]], window: float, gap: float, is_folded: bool
) -> None:
    earlier = [(*QUIET, 0.0), (*FIRING, 1.0), *_at(between, 2, 0)]
    now = (*QUIET, gap)
    assert (folded(now, earlier, [(*RESOLVED, gap), now], window) is not None) is is_folded


def test_a_cycle_event_whose_transaction_also_did_something_else_is_told() -> None:
    earlier = [(*QUIET, 0.0), (*FIRING, 100.0)]
    now = (*QUIET, 200.0)
    assert folded(now, earlier, [(*RESOLVED, 200.0), now], 3600) is not None
    joined = ("alert_added", "alert GPULost (n1, 1) firing", 200.0)
    assert folded(now, earlier, [joined, (*RESOLVED, 200.0), now], 3600) is None


_A, _B = frozenset({"a"}), frozenset({"b"})


@pytest.mark.parametrize(
    ("earlier", "fingerprint", "window", "said"),
    [
        pytest.param([("alert_added", 0.0, _A)], "a", 3600, 0, id="the-first-reopening-pages"),
        pytest.param([("alert_added", 0.0, _A), ("reopened", 800.0, _A)], "a", 3600, 2, id="a-repeat"),
        pytest.param(
            [("reopened", 800.0, _A), ("alert_firing", 800.0, _B)], "b", 3600, 2, id="back-with-that-one"
        ),
        pytest.param([("reopened", 800.0, _A), ("alert_added", 900.0, _B)], "b", 3600, 0, id="joined-since"),
        pytest.param([("reopened", 800.0, _A)], "b", 3600, 0, id="another-alert"),
        pytest.param([("reopened", 800.0, _A), ("reopened", 1600.0, _A)], "a", 3600, 3, id="counted"),
        pytest.param(
            [("reopened", 800.0, _A), ("reopened", 1600.0, _B)], "a", 3600, 2, id="another-alerts-not-counted"
        ),
        pytest.param(
            [("reopened", 800.0, _B), ("alert_firing", 800.0, _A), ("reopened", 1600.0, _B)],
            "a",
            3600,
            2,
            id="counted-where-it-came-back",
        ),
        pytest.param([("reopened", 800.0, _A)], "a", 1500, 0, id="after-a-calm-of-the-window"),
        pytest.param([("reopened", 800.0, _A)], "a", 0, 0, id="off"),
    ],
)
def test_a_reopening_repeats_the_cycle_only_by_alerts_that_came_back_with_a_reopening_within_the_window(
    earlier: list[tuple[str, float, frozenset[str]]], fingerprint: str, window: float, said: int
) -> None:
    assert repeats_reopening(fingerprint, earlier, 2400.0, window) == said
