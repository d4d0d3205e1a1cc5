"""Rack spread: which open incidents of a known rack's nodes are one signal spreading over it (one hot GPU on
each of three nodes: its cooling), as the merge pass (``alerting.merging``) folds them into the rack's.

A node's incident counts with the signal it held when the spread reached its third node, whatever else came
on that node after, where the rack's incident would have taken that in (``root_facts.explains``: a stale
exporter, the node down). Posted one per POST, the rack's incident formed at the third node and a stale
exporter of that node posted after joined it; in one POST it joined the node's incident before the merge
pass, which then left that node out, and the rack's heat stayed three incidents (batch fuzz seeds 2103,
2207). An alert already on the node when the spread reached it still keeps that node's incident apart, as it
did posted one by one.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from alerting.batch import OpenIncident
from alerting.faults import RACK_CAUSED
from alerting.member import Member, onset_key
from alerting.root_facts import RootFacts, explains, root_facts
from alerting.topology import RACK_DEPTH, UNKNOWN, Path
from gpuwarden.model import FaultKind

SPREAD_NODES = 3
"""Nodes of one rack on which the same signal (one hot GPU each) makes it the rack's fault (cooling, power
delivery): one such GPU on each of two nodes is two faults, as ``correlation`` keeps them; on three, the
rack's. A declared rule, like Alertmanager's grouping by alert name, not a value tuned on data."""

Spread = tuple[str, FaultKind]  # (alert name, kind)


def node_signals(inc: OpenIncident, since: datetime) -> list[Spread]:
    """The signals of ``inc`` that may spread over its rack: (alert name, kind) of its members of a kind
    the rack causes (``RACK_CAUSED``), no outage, one of them firing having begun since ``since``; none
    unless ``inc`` is rooted on a node (or GPU) of a known rack. A workload's symptoms do not count (as in
    ``spreading``): a service's latency that joined its hot GPU before the rack's third hot node came (one
    POST) kept that GPU out of the rack's heat (batch fuzz seed 1452)."""
    root = inc.root_path
    if len(root) <= RACK_DEPTH or root[1] == UNKNOWN:
        return []
    found: set[Spread] = set()
    for m in inc.members.values():
        if m.is_infra and m.kind in RACK_CAUSED and not m.is_outage and m.firing and m.onset >= since:
            found.add((m.labels.get("alertname", ""), m.kind))
    return sorted(found)


def rack_spread(
    inc: OpenIncident,
    others: Iterable[OpenIncident],
    signal: Spread,
    since: datetime,
    taken_since: Callable[[OpenIncident], datetime | None] = lambda _: None,
) -> set[str]:
    """The incidents of ``others`` (in ``inc``'s rack) that hold ``signal`` spreading over ``SPREAD_NODES``
    nodes or more of it with ``inc``, as ``_counted`` reads each; empty when ``inc`` is not one of them.
    ``taken_since``: when the faults of another incident that takes one in (its node's, ``_wider_taker``)
    began; they count as its own other faults, as the merge pass makes them one (batch fuzz seed 4044)."""
    rack = inc.root_path[:RACK_DEPTH]
    held = [
        (o, _of_signal(o, signal))
        for o in [inc, *others]
        if o.root_path[:RACK_DEPTH] == rack
        and len(o.root_path) > RACK_DEPTH
        and signal in node_signals(o, since)
    ]
    facts = root_facts(m for _, same in held for m in same)
    eligible = [(o, same) for o, same in held if _explained(rack, facts, o, signal)]
    besides = {o.id: _other_since(o, signal, taken_since(o)) for o, _ in eligible}
    reached = _reached_at(eligible, besides)
    if reached is None:
        return set()
    counted = {o.id for o, same in eligible if _counted(same, besides[o.id], reached)}
    return counted - {inc.id} if inc.id in counted else set()


def _of_signal(inc: OpenIncident, signal: Spread) -> list[Member]:
    """Its infrastructure members of ``signal``, in onset order."""
    return sorted(
        (m for m in inc.members.values() if m.is_infra and (m.labels.get("alertname", ""), m.kind) == signal),
        key=onset_key,
    )


def _others(inc: OpenIncident, signal: Spread) -> list[Member]:
    """Its infrastructure members other than ``signal``'s."""
    return [
        m for m in inc.members.values() if m.is_infra and (m.labels.get("alertname", ""), m.kind) != signal
    ]


def _explained(rack: Path, facts: RootFacts, inc: OpenIncident, signal: Spread) -> bool:
    """Whether the rack's incident of ``signal`` would take in every other fault of ``inc`` (a stale
    exporter, its node down), as it does one posted after it formed."""
    return all(explains(rack, lambda: facts, m) for m in _others(inc, signal))


def _other_since(inc: OpenIncident, signal: Spread, taken: datetime | None) -> datetime | None:
    """When ``inc``'s first fault other than ``signal`` began, or ``taken`` when earlier; None when it holds
    none and ``taken`` is None."""
    onsets = [m.onset for m in _others(inc, signal)]
    return min([*onsets, taken] if taken is not None else onsets, default=None)


def _reached_at(
    held: Sequence[tuple[OpenIncident, list[Member]]], besides: dict[str, datetime | None]
) -> datetime | None:
    """When the signal reached its ``SPREAD_NODES``-th node, counting a node's incident only while it held
    nothing else (posted one by one, the merge pass found it so then); None when it never did. One sweep in
    onset order: a rack's incidents that never spread are not compared pairwise at every merge pass."""
    spans = sorted(  # each alert of the signal on its node: an incident the merge pass grew holds several
        ((m.onset, besides[o.id], m.location.path[: RACK_DEPTH + 1]) for o, same in held for m in same),
        key=lambda span: span[0],
    )
    ending: list[tuple[datetime, int]] = []  # (when it stops counting, index into spans)
    nodes: Counter[Path] = Counter()
    counted = 0  # nodes with an incident counting now
    for i, (began, other, node) in enumerate(spans):
        while ending and ending[0][0] < began:  # another fault came before ``began``: no longer clean
            gone = spans[heapq.heappop(ending)[1]][2]
            nodes[gone] -= 1
            counted -= nodes[gone] == 0
        if other is not None and other < began:
            continue  # it held another fault before the signal came to it
        counted += nodes[node] == 0
        nodes[node] += 1
        if other is not None:
            heapq.heappush(ending, (other, i))
        if counted >= SPREAD_NODES:
            return began
    return None


def _counted(same: Sequence[Member], other: datetime | None, reached: datetime) -> bool:
    """Whether an incident whose ``signal`` alerts are ``same`` and whose other faults began at ``other``
    (``_other_since``) goes into the rack's incident: it held only the signal when the spread reached its
    third node, or when the signal came to its node after that (it joined the rack's then)."""
    return bool(same) and (other is None or other >= max(reached, same[0].onset))
