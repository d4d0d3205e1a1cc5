"""Spreading: whether two open incidents in sibling places of a cluster are one signal spreading, so that the
merge pass folds them together as the join path would have joined their alerts.

A new alert joins an incident that holds the same signal (alert name, kind, XID code) on two GPUs or more,
in its rack or, for a driver rolled out rack by rack, in another rack of its cluster
(``correlation.same_signal_spread``). Which incident holds two GPUs first depends on the order the alerts
arrive in, and Prometheus sends them in any order (per rule group, per evaluation): shuffled, a rollout's
first alerts on its second rack open an incident of their own before the first rack's incident holds two
nodes, and each rack's incident then grows alone. The merge pass asks the same question of the two
incidents, in both directions, so the result does not depend on that order.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from alerting.batch import OpenIncident
from alerting.correlation import same_signal_spread, spread_root
from alerting.faults import OUTAGE_KINDS
from alerting.member import Member, Signal
from alerting.topology import RACK_DEPTH, contains


def spread_candidates(inc: OpenIncident, others: Iterable[OpenIncident], window: timedelta) -> set[str]:
    """The incidents of ``others`` that are one fault spreading with ``inc``.

    Rooted in sibling places of one cluster (neither holds the other's root), every infrastructure alert of
    one of the two is a signal (no whole node's outage among them) that the other holds as
    ``same_signal_spread`` lets a new alert of it join (on two GPUs or more, no outage), and they began
    within ``window`` of each other (the onsets of each signal's alerts): alerts that rule evaluations may
    deliver in any order. A fault may raise several signals at once (an NVSwitch: XID 74 and NVLink errors
    on each GPU): each must spread.
    """
    if not spread_root(inc.root_path):
        return set()  # cheap test first: the merge pass asks this for every touched incident
    own = _signals(inc)
    return {o.id for o in others if o.id != inc.id and _one_spread(inc, own, o, window)}


def _one_spread(
    inc: OpenIncident, own: dict[Signal, Member] | None, other: OpenIncident, window: timedelta
) -> bool:
    """Whether ``inc`` (whose ``_signals`` are ``own``) and ``other`` are one fault spreading."""
    a, b = inc.root_path, other.root_path
    if not spread_root(b) or a[0] != b[0] or contains(a, b) or contains(b, a):
        return False
    theirs = _signals(other)
    for holder, signals, joined in ((inc, theirs, other), (other, own, inc)):
        if not signals or _beside_the_spread(own if holder is inc else theirs, signals):
            continue
        candidate = holder.candidate()
        if all(
            same_signal_spread(candidate, new, new.location.path) is not None
            and _within(_onsets(holder, signal), _onsets(joined, signal), window)
            for signal, new in signals.items()
        ):
            return True
    return False


def _beside_the_spread(held: dict[Signal, Member] | None, spreading: dict[Signal, Member]) -> bool:
    """Whether the holder's signals (``held``) include one that the other incident's (``spreading``, no
    outage) do not: a fault of its own beside the spread (an NVSwitch's XID 74 and NVLink errors on a node
    a driver rollout's XID 119 reached), not a piece of it. Folded whole, the rollout took that fault in
    where posted one alert per POST (its first node's incident was then a piece beside the switch's node);
    in one POST the rollout's incident was wider by the end (it holds the node) and its regrouping took
    only the XIDs 119 out of the switch's incident (``regrouping.regroup_spread``), as it now does
    posted one by one too."""
    if held is None or any(kind in OUTAGE_KINDS for _, kind, _ in spreading):
        return False  # GPUs lost on two nodes are a rack's partial outage, whatever else one node shows
    return any(signal not in spreading for signal in held)


def _signals(inc: OpenIncident) -> dict[Signal, Member] | None:
    """One of ``inc``'s infrastructure alerts per signal, in the order they joined; None when one is an outage
    of a whole node (whose XIDs are its evidence, not a signal spreading) or there are none. Workload
    symptoms do not count."""
    found: dict[Signal, Member] = {}
    for m in inc.members.values():
        if not m.is_infra:
            continue
        if m.is_outage and len(m.location.path) <= RACK_DEPTH + 1:
            return None
        found.setdefault(m.signal, m)
    return found or None


def _onsets(inc: OpenIncident, signal: Signal) -> tuple[float, float]:
    """The first and last onset of ``inc``'s infrastructure alerts of ``signal`` (POSIX seconds)."""
    times = [m.onset.timestamp() for m in inc.members.values() if m.is_infra and m.signal == signal]
    return min(times), max(times)


def _within(a: tuple[float, float], b: tuple[float, float], window: timedelta) -> bool:
    """Whether two spans of onsets come within ``window`` of each other."""
    gap = max(a[0], b[0]) - min(a[1], b[1])
    return gap <= window.total_seconds()
