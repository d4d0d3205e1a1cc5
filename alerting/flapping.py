"""Flap detection with hysteresis: an alert that keeps changing state stops moving its incident.

An alert starts flapping when it changed state at least ``start_transitions`` times within ``window``
seconds, and stops only when that count falls to ``stop_transitions`` or fewer; the gap between the two
thresholds is the hysteresis that keeps the flag itself from flapping.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FlapPolicy:
    """Thresholds of the flap detector."""

    window_seconds: float = 600.0
    start_transitions: int = 6
    stop_transitions: int = 2

    def __post_init__(self) -> None:
        if self.stop_transitions >= self.start_transitions:
            raise ValueError("stop_transitions must be below start_transitions (hysteresis)")


def flap_state(
    policy: FlapPolicy, transitions: list[float], now: float, changed: bool, flapping: bool
) -> tuple[list[float], bool]:
    """Record a state change (when ``changed``) and return the kept transitions and the new flag."""
    kept = [t for t in transitions if now - t <= policy.window_seconds]
    if changed:
        kept.append(now)
    count = len(kept)
    if not flapping and count >= policy.start_transitions:
        return kept, True
    if flapping and count <= policy.stop_transitions:
        return kept, False
    return kept, flapping


def settles_after(policy: FlapPolicy, transitions: list[float]) -> float:
    """The time from which a flapping alert's flag may clear with no new change (``flap_state`` at a tick):
    once every transition but the last ``stop_transitions`` left the window. A millisecond early, so that
    rounding never makes it late; a new change moves it, and before it the tick has nothing to settle."""
    if len(transitions) <= policy.stop_transitions:
        return float("-inf")
    return sorted(transitions)[-policy.stop_transitions - 1] + policy.window_seconds - 0.001
