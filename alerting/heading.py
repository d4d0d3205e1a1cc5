"""Heading: where an incident's root is headed while the alerts of one transaction join it, as the batch's
recompute will place it (``root_cause``), so that the next alert of the same transaction sees it there, as
it would had it come in a later POST (a rule evaluation posts a whole rack's alerts in one batch)."""

from __future__ import annotations

from collections.abc import Iterable

from alerting.batch import OpenIncident
from alerting.correlation import Candidate
from alerting.impact import live_root_cause
from alerting.inventory import Inventory
from alerting.member import Member
from alerting.merging import beside_sibling_down
from alerting.root_cause import evidence
from alerting.topology import common_ancestor, contains


def held_outage(inc: OpenIncident) -> bool:
    """Whether ``inc`` holds an outage (a member that takes capacity, on a node or one of its GPUs, or of
    an outage kind anywhere): asked before a new member joins, from its gathered facts (no walk of them)."""
    facts = inc.facts()
    return facts.outage_kind or bool(facts.node_outage)


def head_root(
    inc: OpenIncident,
    member: Member,
    candidates: Iterable[Candidate],
    inventory: Inventory | None,
    *,
    had_outage: bool,
) -> None:
    """Move the root path of ``inc``, which the infrastructure alert ``member`` just joined, where the batch's
    recompute will put it; ``had_outage``: whether ``inc`` held an outage before it came (``held_outage``)."""
    path = member.location.path
    members = inc.members.values()
    root = inc.root_path
    if not root and not evidence(members, member):
        # An incident its job's stalls opened, now rooted where the recompute will root it: the next fault
        # of this batch joins only if this one explains it, not because it hits the job too (two unrelated
        # faults on the job's GPUs are two incidents; their stalls follow their GPUs). A fault that began
        # after the symptoms and takes nothing is evidence (``evidence``): the root stays the workload.
        root = live_root_cause(members, inventory)[0]
    elif root and member.is_outage and not had_outage:
        # Its first outage: the root goes among outages, where it is (NVLink errors spread over a rack, then
        # a node of it down: that node), or stays wider where an earlier fault spread takes it (heat).
        # Once per incident: later outages head it by the rule below (batch fuzz seed 3055).
        root = live_root_cause(members, inventory)[0]
    elif (
        root
        and not contains(root, path)
        and (member.is_outage or not had_outage)
        and not evidence(members, member)
    ):
        # Among outages when there are any; not by a fault that began after a workload's symptom it holds,
        # which is evidence and moves no root (batch fuzz seed 3154).
        root = common_ancestor([root, path]) or root
    elif root and not contains(root, path) and not evidence(members, member):
        # Beside an outage, a fault outside its root (its node's stale exporter beside a GPU lost) moves
        # the root only as the recompute finds it: asked of what lies outside the root alone, not of each
        # alert that joins (batch fuzz seed 3008).
        root = live_root_cause(members, inventory)[0]
    inc.root_path = root
    if beside_sibling_down(inc, member, candidates):
        inc.root_path = path[:-1]  # the rack's, as the merge pass will make it
