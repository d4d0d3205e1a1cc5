"""The key a series is known by (its query and its label set, the labels sorted by name), as JSON values in
a snapshot, and the keys of a snapshot saved before the labels were sorted."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from anomaly.thresholds import FloatArray

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def series_key(query: str, labels: Mapping[str, str]) -> SeriesKey:
    """The key a series is known by in ``SeriesIndex``: its query and its label set, sorted by name.

    A series is its label set: the same labels in another order (a remote read, a relabel rule, a proxy
    merging answers) are the same series, as to ``ids_for``'s cache (dict equality) and to Prometheus."""
    return (query, tuple(sorted(labels.items())))


def key_state(key: SeriesKey) -> list[object]:
    """``key`` as JSON values: ``[query, [[name, value], ...]]`` (``restored_key`` reads it back)."""
    return [key[0], [list(item) for item in key[1]]]


def restored_key(raw: Sequence[object]) -> SeriesKey:
    """The series key ``key_state`` gave ``raw`` of (its labels sorted: a snapshot of an older version kept
    them in the order they came in)."""
    query, items = raw
    if not isinstance(items, list):
        raise ValueError(f"a series key's labels are {items!r}, not a list of pairs")
    return (str(query), tuple(sorted((str(name), str(value)) for name, value in items)))


def sorted_keys(keys: list[SeriesKey | None], last_seen: FloatArray) -> list[SeriesKey | None]:
    """``keys`` with their labels sorted (``series_key``). A snapshot of an older version kept them in the
    order they came in, so it may hold one label set twice, in two orders: the one seen last takes the sorted
    key, the others a key in an order no read is looked up by (their own where it is not the sorted one), so
    that their ids are forgotten ``forget_after`` later and their detectors told, as of any series gone."""
    out: list[SeriesKey | None] = [None if k is None else (k[0], tuple(sorted(k[1]))) for k in keys]
    groups: dict[SeriesKey, list[int]] = {}
    for sid, key in enumerate(out):
        if key is not None:
            groups.setdefault(key, []).append(sid)
    for key, sids in groups.items():
        if len(sids) == 1:
            continue
        sids.sort(key=lambda sid: float(last_seen[sid]) if np.isfinite(last_seen[sid]) else -np.inf)
        taken = {key}
        for sid in sids[:-1]:
            own = keys[sid]
            orders = itertools.chain([own[1]] if own is not None else [], itertools.permutations(key[1]))
            labels = next(order for order in orders if (key[0], order) not in taken)
            out[sid] = (key[0], labels)
            taken.add((key[0], labels))
    return out
