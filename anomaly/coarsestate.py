"""What ``CoarseSteps`` has learnt of a source's answer steps, kept in the state snapshot.

A coarser step is believed only once its spacings cover ``MIN_STEPS`` asked steps (a filter's answers fall on
a grid by chance), but the warm-up reads an hour: 12 steps at a 300 s step, where an answer every second step
shows 5 spacings (10 asked steps). So a new process never saw the step from the warm-up, read the empty steps
between two answers as gaps for the next 20 steps, and scored otherwise than the process it replaced (restart
fuzz, coarse answers alone: 1 of 30 seeds in scores, 3 in firing alerts); a save made while a run of
spacings was being counted started it again from the warm-up's hour, and the step was seen later.

Kept per query: its last answered step, its run of spacings and the step seen; per series that is not
``steady`` (each one step after its previous answer: known by count, not by slot), its labels, last answer,
value there, run and step seen. Not kept: the hashes of series answered once (``hash`` differs from one
process to the next), each series' slot, and ``FilterPeriods``' returns (a warning only). The state is taken
up before the warm-up's read; that read, which holds the steps before the save again, counts only the
answers after each one's last (``CoarseSteps.keep``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomaly.coarsesteps import CoarseSteps, SeriesSteps
from anomaly.snapshot import Arrays, State

_ARRAYS = ("last", "value", "spacing", "times", "seen")


def coarse_state(coarse: CoarseSteps) -> State:
    """``coarse``'s learnt state, as copies (``restore_coarse`` reads it back)."""
    names = sorted({*coarse._last, *coarse._run, *coarse.seen})
    queries = [
        [q, coarse._last.get(q), *coarse._run.get(q, (0.0, 0)), coarse.seen.get(q, 0.0)] for q in names
    ]
    series: list[list[Any]] = []
    parts: dict[str, list[np.ndarray]] = {key: [] for key in _ARRAYS}
    for query, steps in sorted(coarse._series.items()):
        slots = sorted(steps._slots.values())
        series.append(
            [query, steps.reach, [list(map(list, (steps._labels[s] or {}).items())) for s in slots]]
        )
        for key in _ARRAYS:
            parts[key].append(getattr(steps, key)[slots])
    arrays: Arrays = {
        key: np.concatenate(chunks) if chunks else np.zeros(0, np.int64 if key == "times" else np.float64)
        for key, chunks in parts.items()
    }
    return State({"queries": queries, "series": series}, arrays)


def restore_coarse(coarse: CoarseSteps, state: State) -> None:
    """Take up ``state`` (``coarse_state``) in ``coarse``, a new process' (nothing read yet);
    ``ValueError``, ``KeyError`` or ``TypeError`` where it does not fit."""
    for query, last, spacing, times, seen in state.meta["queries"]:
        if last is not None:
            coarse._last[str(query)] = float(last)
        coarse._run[str(query)] = (float(spacing), int(times))
        if seen:
            coarse.seen[str(query)] = float(seen)
    first = 0
    for query, reach, labels in state.meta["series"]:
        rows = slice(first, first + len(labels))
        first += len(labels)
        steps = _series(SeriesSteps(coarse.source, str(query), float(reach)), labels, state.arrays, rows)
        coarse._series[steps.query] = steps
        if steps.longest:
            coarse.series_seen[steps.query] = steps.longest
    if first != state.arrays["last"].size:
        raise ValueError(f"coarse steps: {first} series' labels, {state.arrays['last'].size} kept")


def _series(steps: SeriesSteps, labels: list[Any], arrays: Arrays, rows: slice) -> SeriesSteps:
    """``steps`` (new) holding ``labels``, their state the ``rows`` of ``arrays``."""
    query = steps.query
    n = len(labels)
    size = max(64, n)
    for key in _ARRAYS:
        kept = np.asarray(arrays[key][rows])
        if kept.shape != (n,):
            raise ValueError(f"coarse steps of {query}: {key} holds {kept.shape}, not {n} series")
        whole = np.zeros(size, getattr(steps, key).dtype)
        whole[:n] = kept
        setattr(steps, key, whole)
    steps.last[n:] = np.nan
    sets = [{str(k): str(v) for k, v in items} for items in labels]
    steps._slots = {tuple(sorted(lab.items())): slot for slot, lab in enumerate(sets)}
    steps._labels = [*sets, *([None] * (size - n))]
    steps._free = list(range(size - 1, n - 1, -1))
    steps.longest = float(steps.seen.max(initial=0.0))
    steps._told = bool(steps.longest)  # warned by the process before
    return steps
