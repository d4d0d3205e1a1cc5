"""The tables the index of open incidents (``alerting.incident_index``) files them under, and the rules that
file one incident there.

A table maps a key (a root, a workload, a GPU, a signal, a rack...) to the ids of the open incidents filed
under it. ``Filed`` keeps what one incident is filed under, so that it can be taken out again, and the counts
of its members per key: an incident is filed under some keys only once enough of its members share them (a
signal held twice may be a spread), so a member added or removed moves a count, and the incident goes into
or out of a table when its count crosses that least (``count_filing``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from collections.abc import Set as AbstractSet
from typing import Any

from alerting.faults import SYMPTOM_KINDS
from alerting.inventory import GpuKey
from alerting.member import Member, Signal
from alerting.topology import Path
from gpuwarden.model import WorkloadRef

WorkloadKey = tuple[object, str, str]
"""A workload's kind, namespace and name: workloads alike in these may be one (``shares_workload``)."""


class Filed:
    """What one incident is filed under (kept to take it out again), and its member counts."""

    __slots__ = (
        "gpus",
        "lost",
        "pathless",
        "ranks",
        "root",
        "signal_racks",
        "signals",
        "workloads",
        "xid_nodes",
    )

    def __init__(self) -> None:
        self.root: Path | None = None
        self.workloads: frozenset[WorkloadKey] = frozenset()
        self.gpus: frozenset[GpuKey] = frozenset()
        self.lost: frozenset[GpuKey] = frozenset()  # the GPUs its outages took (``OpenIncident.lost``)
        self.signals: dict[Signal, int] = {}  # members per signal (every member: a superset of the rules')
        self.ranks: dict[str, int] = {}  # placed workload symptoms per cluster of their GPUs
        self.pathless: dict[str, int] = {}  # members without a place in the topology, per alert name
        self.xid_nodes: dict[Signal, dict[Path, int]] = {}  # members per node of each XID signal
        self.signal_racks: dict[tuple[Signal, Path], int] = {}  # members per signal and known rack


def file_under(table: dict[Hashable, set[str]], key: Hashable, incident_id: str) -> None:
    """File ``incident_id`` under ``key`` of ``table``."""
    ids = table.get(key)
    if ids is None:
        ids = table[key] = set()
    ids.add(incident_id)


def unfile(table: dict[Hashable, set[str]], key: Hashable, incident_id: str) -> None:
    """Take ``incident_id`` out from under ``key`` of ``table``; the key goes with its last id."""
    ids = table.get(key)
    if ids is not None:
        ids.discard(incident_id)
        if not ids:
            del table[key]


def refile_keys(
    table: dict[Hashable, set[str]], incident_id: str, old: AbstractSet[Hashable], new: AbstractSet[Hashable]
) -> None:
    """File ``incident_id`` under the keys ``new`` of ``table`` instead of ``old``."""
    for key in old - new:
        unfile(table, key, incident_id)
    for key in new - old:
        file_under(table, key, incident_id)


def cross(
    table: dict[Hashable, set[str]], key: Hashable, incident_id: str, *, least: int, before: int, after: int
) -> None:
    """File ``incident_id`` under ``key`` of ``table`` when a count went from ``before`` to ``after``
    reaches ``least`` (out of it when it fell below)."""
    if before < least <= after:
        file_under(table, key, incident_id)
    elif after < least <= before:
        unfile(table, key, incident_id)


def count_filing(
    counts: dict[Any, int],
    key: Hashable,
    step: int,
    incident_id: str,
    tables: Iterable[tuple[dict[Hashable, set[str]], int]],
) -> int:
    """Add ``step`` to ``counts[key]``, and file ``incident_id`` under ``key`` in each table whose least
    count it now reaches (out of those it fell below); the count before."""
    before = counts.get(key, 0)
    after = before + step
    if after > 0:
        counts[key] = after
    else:
        counts.pop(key, None)
    for table, least in tables:
        cross(table, key, incident_id, least=least, before=before, after=after)
    return before


def workload_key(ref: WorkloadRef) -> WorkloadKey:
    """What a workload is filed under (``WorkloadKey``)."""
    return ref.kind, ref.namespace, ref.name


def pathless_name(member: Member) -> str | None:
    """The alert name a member without a place is filed under (``join_rank``'s rule for such alerts)."""
    return None if member.location.path else member.labels.get("alertname", "")


def rank_clusters(member: Member) -> set[str]:
    """The clusters of the GPUs a placed workload symptom (a stalled rank) runs on; none for other members."""
    if member.kind in SYMPTOM_KINDS and member.location.runs_on:
        return {gpu[0] for gpu in member.location.runs_on}
    return set()
