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
from alerting.correlation import RACK_DEPTH, Member, Signal, same_signal_spread
from alerting.topology import Path, contains


def spread_candidates(inc: OpenIncident, others: Iterable[OpenIncident], window: timedelta) -> set[str]:
    """The incidents of ``others`` that are one signal spreading with ``inc``.

    Rooted in sibling places of one cluster (neither holds the other's root), every infrastructure alert of
    one of the two is one signal (no whole node's outage among them), the other holds that signal as
    ``same_signal_spread`` lets a new alert of it join (on two GPUs or more, no node's outage), and they
    began within ``window`` of each other (the onsets of that signal's alerts): alerts that rule
    evaluations may deliver in any order.
    """
    if not _spread_root(inc.root_path):
        return set()  # cheap test first: the merge pass asks this for every touched incident
    sole = _sole_signal(inc)
    return {o.id for o in others if o.id != inc.id and _one_spread(inc, sole, o, window)}


def _one_spread(inc: OpenIncident, sole: Member | None, other: OpenIncident, window: timedelta) -> bool:
    """Whether ``inc`` (whose ``_sole_signal`` is ``sole``) and ``other`` are one signal spreading."""
    a, b = inc.root_path, other.root_path
    if not _spread_root(b) or a[0] != b[0] or contains(a, b) or contains(b, a):
        return False
    for holder, new, joined in ((inc, _sole_signal(other), other), (other, sole, inc)):
        if new is None or same_signal_spread(holder.candidate(), new, new.location.path) is None:
            continue
        if _within(_onsets(holder, new.signal), _onsets(joined, new.signal), window):
            return True
    return False


def _spread_root(root: Path) -> bool:
    """A root that a spread of one signal may have: a rack, or a node where racks are unknown (the join
    path's test for the incident it rolls up)."""
    return RACK_DEPTH <= len(root) <= RACK_DEPTH + 1


def _sole_signal(inc: OpenIncident) -> Member | None:
    """One of ``inc``'s infrastructure alerts when all of them are one signal and none is an outage of a whole
    node (whose XIDs are its evidence, not a signal spreading); else None. Workload symptoms do not count."""
    found: Member | None = None
    for m in inc.members.values():
        if not m.is_infra:
            continue
        if m.is_outage and len(m.location.path) <= RACK_DEPTH + 1:
            return None
        if found is None:
            found = m
        elif m.signal != found.signal:
            return None
    return found


def _onsets(inc: OpenIncident, signal: Signal) -> tuple[float, float]:
    """The first and last onset of ``inc``'s infrastructure alerts of ``signal`` (POSIX seconds)."""
    times = [m.onset.timestamp() for m in inc.members.values() if m.is_infra and m.signal == signal]
    return min(times), max(times)


def _within(a: tuple[float, float], b: tuple[float, float], window: timedelta) -> bool:
    """Whether two spans of onsets come within ``window`` of each other."""
    gap = max(a[0], b[0]) - min(a[1], b[1])
    return gap <= window.total_seconds()
