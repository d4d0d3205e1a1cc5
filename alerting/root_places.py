"""Where an incident's stored root is, as the recurrence of resolved incidents looks it up.

A new infrastructure fault asks which incidents resolved within the reopen window may hold its node
(``alerting.recurrence``): those rooted at its cluster, its rack, its node, or a GPU of its node. The store
read that out of each resolved incident's ``root_target`` JSON, once per new node, with no index: a POST of
2,000 new nodes beside 8,000 incidents resolved within the day took 33-38 s to apply. Each incident row now
carries ``root_key`` (migration 0020), a digest of its root's place, indexed with its state, merge and
resolution time: the question is a lookup of the node's four places, whatever the number resolved. The digest
only narrows the read; the place itself, read back from ``root_target``, decides (two places with one digest
stay two).

A place is the root's kind and the fields the recurrence compares, as the JSON holds them (strings only: a
field missing, null or not a string matches nothing, as the JSON comparison did on SQLite; PostgreSQL's
read a number as its text, but ``topology.target_to_dict`` writes strings there): ``("cluster",
name)``, ``("rack", cluster, name)``, ``("node", cluster, name)``, ``("gpu", node)`` (a GPU's root names no
cluster: any cluster's node of that name). Other roots (a workload) have none.

Migration 0020 computes the same keys for the rows stored before it with its own copy of these rules: a
change here needs a migration that computes them again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

Place = tuple[str, ...]

_FIELDS: dict[str, tuple[str, ...]] = {
    "cluster": ("name",),
    "rack": ("cluster", "name"),
    "node": ("cluster", "name"),
    "gpu": ("node",),
}


def root_place(target: object) -> Place | None:
    """The place of a stored root (``topology.target_to_dict``), or None when it has none."""
    if not isinstance(target, Mapping):
        return None
    kind = target.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        return None
    fields = _FIELDS[kind]
    values = [v for v in (target.get(f) for f in fields) if isinstance(v, str)]
    if len(values) < len(fields):  # a field missing, null or not a string
        return None
    return (kind, *values)


def place_key(place: Place) -> str:
    """The digest stored in ``IncidentRow.root_key`` for ``place``: 32 hex digits of its SHA-256, of a
    size any index takes (a label value has no limit; PostgreSQL refuses index entries over ~2.7 KB)."""
    return hashlib.sha256(json.dumps(place).encode()).hexdigest()[:32]


def root_key(target: object) -> str | None:
    """``IncidentRow.root_key`` of a stored root: its place's digest, None when it has no place."""
    place = root_place(target)
    return None if place is None else place_key(place)
