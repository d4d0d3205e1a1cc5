"""Flap detection with hysteresis: an alert that keeps changing state stops moving its incident.

An alert starts flapping when it changed state at least ``start_transitions`` times within ``window``
seconds, and stops only when that count falls to ``stop_transitions`` or fewer; the gap between the two
thresholds is the hysteresis that keeps the flag itself from flapping.

A slower cycle never counts as flapping (a thermal alert firing 200 s and resolved 200 s changes state three
times in 600 s) and, resolved for less than the quiet period, never lets its incident resolve: each "quiet"
and "firing again" was a Slack reply, some 18 an hour. ``folded`` tells such repeats apart: the first of
each is told, the next ones within the fold window, with nothing else between, only edit the message.
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
    """Record a state change (when ``changed``) and return the kept transitions and the new flag. One stamped
    after ``now`` (the wall clock was set back since) is kept as at ``now``: it leaves the window a window
    from now, not the step later."""
    kept = [min(t, now) for t in transitions if now - t <= policy.window_seconds]
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


# Timeline kinds that only say alerts already in the incident changed state: a slow flap's cycle (a thermal
# alert firing 200 s, resolved 200 s, under the flap threshold and the quiet period) writes nothing else.
CYCLE_KINDS = frozenset({"alert_firing", "alert_resolved", "quiet"})


@dataclass(frozen=True, slots=True)
class Folded:
    """A change folded as a repeat of its incident's cycle: told (its message edited in place), replied to
    nobody. How often, within ``within_seconds`` up to it, the incident's alerts fired again and went
    quiet."""

    fired_again: int
    went_quiet: int
    within_seconds: float


def folded(
    told: tuple[str, str, float],
    earlier: list[tuple[str, str, float]],
    batch: list[tuple[str, str, float]],
    window: float,
) -> Folded | None:
    """Whether the change telling event ``told`` (kind, message, at) repeats its incident's cycle, and how
    often it cycled: ``earlier`` are the incident's stored events of the last ``window`` seconds and
    ``batch`` those its transaction wrote (``told`` among them), oldest first.

    A repeat: a cycle event (``CYCLE_KINDS``) whose like (kind and message: the same alert firing again,
    the incident quiet again) is on the timeline within ``window``, with nothing but cycle events since it
    nor in its transaction. The first of each is told; anything else (an alert joining, a priority or root
    change, a person's note, a flap flagged) ends the run, and the next of the cycle is told again."""
    kind, message, at = told
    if window <= 0 or kind not in CYCLE_KINDS or any(k not in CYCLE_KINDS for k, _, _ in batch):
        return None
    recent = [e for e in earlier if at - e[2] <= window]
    for k, m, _ in reversed(recent):
        if k not in CYCLE_KINDS:
            return None
        if (k, m) == (kind, message):
            break
    else:
        return None
    seen = recent + batch
    return Folded(sum(k == "alert_firing" for k, _, _ in seen), sum(k == "quiet" for k, _, _ in seen), window)


def repeats_reopening(
    fingerprint: str, earlier: list[tuple[str, float, frozenset[str]]], now: float, window: float
) -> int:
    """Whether an incident's reopening by alert ``fingerprint`` at ``now`` only repeats its resolve / reopen
    cycle, and how often this alert reopened it: the number of its reopenings within ``window`` seconds that
    this alert came back with, this one included; 0 when it pages. ``earlier``: the incident's stored events
    (kind, at, the fingerprints of the alerts they say fired) of those seconds.

    A repeat: the incident already reopened within ``window`` and this alert fired again with one of those
    reopenings (it reopened it, or fired again in the same transaction). The first reopening, one after
    ``window`` without any, and one by an alert that did not come back with those (another fault, an alert
    that joined since) page. A reopening within ``window`` by another alert alone is not counted: the count
    says how often this alert's cycle reopened the incident, as its telling does."""
    if window <= 0:
        return 0
    recent = [e for e in earlier if now - e[1] <= window]
    reopened_at = {at for kind, at, _ in recent if kind == "reopened"}
    came_back = {at for _, at, fps in recent if at in reopened_at and fingerprint in fps}
    return len(came_back) + 1 if came_back else 0
