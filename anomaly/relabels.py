"""Which GPU a series is about, and a GPU's series relabelled within one read followed to its new labels.

A GPU is its ``UUID`` (and MIG instance, ``GPU_I_ID``). A series without one (a query that aggregates by
``Hostname, gpu``, an exporter that labels by node and index only, a MIG instance served without its
parent's UUID) is its node (the first of ``NODE_LABELS`` set, else ``instance``: dcgm-exporter's
``Hostname`` or the scrape target) and its ``gpu`` index, as ``anomaly.ledger.gpu_key`` reads it. Such a
series is followed to new labels only where that is unambiguous (``SeriesIndex.expire``): one new series of
the node and index, and one it replaces; a node name repeated by two GPUs would otherwise merge them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence, Set

import numpy as np

from anomaly.sources import Frame
from anomaly.thresholds import IntArray
from gpuwarden.mig import INSTANCE_ID
from gpuwarden.model import NODE_LABELS

# A GPU: (its UUID, "", its MIG instance), or, without a UUID, ("", its node and index, its MIG instance).
GpuIdentity = tuple[str, str, str]


def gpu_identity(labels: Mapping[str, str]) -> GpuIdentity | None:
    """The GPU (and MIG instance) ``labels`` name; None where they name none (no UUID, no node or index)."""
    instance = labels.get(INSTANCE_ID, "")
    uuid = labels.get("UUID")
    if uuid:
        return (uuid, "", instance)
    gpu = labels.get("gpu")
    node = next((labels[k] for k in NODE_LABELS if labels.get(k)), labels.get("instance", ""))
    if not gpu or not node:
        return None
    return ("", f"{node}\x00{gpu}", instance)


def parking_key(labels: Mapping[str, str], key_label: str) -> str | None:
    """What a detector parks a series' state by (``key_label``, the UUID), or, where the series has no
    ``UUID`` and the key is the UUID, its node and index (``gpu_identity``); None: no GPU."""
    key = labels.get(key_label)
    if key or key_label != "UUID":
        return key or None
    gpu = gpu_identity(labels)
    return None if gpu is None else f"\x01{gpu[1]}\x00{gpu[2]}"


def renamed_to(
    olds: Sequence[tuple[float, str]], new: Mapping[str, float], matched: Set[str], answered: Sequence[str]
) -> str | None:
    """The metric a GPU's old series of one query goes on in where no new series of its own metric answers
    (``SeriesIndex.expire``): in a query of several metrics, the GPU renamed and relabelled at once (an
    exporter upgrade renaming its temperature as ``pod`` is added to every series of the GPU).

    ``olds``: when each of the GPU's old series of a metric no new series has was last read, and that
    metric; ``new``: when each of its new series was read, by metric; ``matched``: the metrics its other old
    series went on in, each to its own new series; ``answered``: the metric of each of its series the
    query's last read held. Followed only from one old series to one new series, of a metric none of the
    GPU's other series answers, read after it: two of each may be two metrics renamed (which to which?), and
    an old series of a metric the GPU still answers under other labels (a pod gone from a shared GPU) was not
    renamed.
    """
    if len(olds) != 1:
        return None
    to = [name for name in new if name not in matched and answered.count(name) == 1]
    seen, name = olds[0]
    if len(to) != 1 or new[to[0]] <= seen or name in answered:
        return None
    return to[0]


def metrics_answered(
    gpus: Iterable[tuple[str, GpuIdentity]], read: Callable[[str], Sequence[Mapping[str, str]]]
) -> dict[tuple[str, GpuIdentity], list[str]]:
    """The metric of each series each of ``gpus`` (a query and a GPU) has in the label sets ``read`` gives of
    its query's last read (``renamed_to``): each such query's looked at once, not once per GPU (an exporter
    upgrade renaming and relabelling every GPU of 10,000 at once)."""
    wanted: dict[str, set[GpuIdentity]] = {}
    for query, asked in gpus:
        wanted.setdefault(query, set()).add(asked)
    out: dict[tuple[str, GpuIdentity], list[str]] = {}
    for query, of in wanted.items():
        for labels in read(query):
            if (gpu := gpu_identity(labels)) is not None and gpu in of:
                out.setdefault((query, gpu), []).append(labels.get("__name__", ""))
    return out


def followed(frame: Frame, ids: IntArray) -> tuple[Frame, IntArray, dict[int, int]]:
    """``frame`` (of several steps) with each GPU relabelled within it as one row under its newest labels,
    its series' ids, and the ids so merged, each to the one that goes on (``SeriesIndex.follow``).

    A read of several steps (the catch-up after an outage, the warm-up's) holding a relabel (``pod`` added
    when a job lands) holds the GPU's old and new series; both were taken as answered to its end, the old one
    kept ``forget_after_seconds`` beside the new, which learnt the GPU anew while its old labels' alert fired
    on. Merged only where a GPU's rows of one metric that start or end within the read follow one another,
    none holding a sample at or after the next one's first (two pods sharing a GPU answer side by side: left
    as they are), or, of metrics met once each, its rows do so (a metric renamed).
    """
    if frame.timestamps.size < 2 or len(frame.labels) < 2:
        return frame, ids, {}
    samples = frame.samples
    # Only a row without a sample at the read's first step or at its last may be a GPU's old or new labels'
    # (none, most reads: nothing is looked at).
    edge = np.flatnonzero(~(samples[:, 0] & samples[:, -1]) & samples.any(axis=1))
    if edge.size < 2:
        return frame, ids, {}
    groups: dict[tuple[GpuIdentity, str], list[int]] = {}
    for i in edge.tolist():
        gpu = gpu_identity(frame.labels[i])
        if gpu is not None:
            groups.setdefault((gpu, frame.labels[i].get("__name__", "")), []).append(i)
    first = np.argmax(samples, axis=1)
    last = samples.shape[1] - 1 - np.argmax(samples[:, ::-1], axis=1)
    into = np.arange(len(frame.labels))
    moved: dict[int, int] = {}

    def chain(rows: list[int]) -> bool:
        """Merge ``rows`` into the newest where each ends before the next begins; whether they were."""
        rows = sorted(rows, key=lambda r: int(first[r]))
        if len(rows) < 2 or any(last[a] >= first[b] for a, b in itertools.pairwise(rows)):
            return False
        for r in rows[:-1]:
            into[r] = rows[-1]
            moved[int(ids[r])] = int(ids[rows[-1]])
        return True

    # Each metric's rows of a GPU (a query of several: its temperature and power relabelled together), then
    # a GPU's rows left, one of each metric (its metric renamed by an exporter upgrade).
    renamed: dict[GpuIdentity, list[int]] = {}
    for (gpu, _), rows in groups.items():
        if not chain(rows) and len(rows) == 1:
            renamed.setdefault(gpu, []).append(rows[0])
    for rows in renamed.values():
        chain(rows)
    if not moved:
        return frame, ids, {}
    places, inverse = np.unique(into, return_inverse=True)
    return frame.merged(inverse, places), ids[places], moved
