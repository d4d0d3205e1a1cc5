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
from anomaly.seriessteps import KEPT
from anomaly.snapshot import Arrays, State


def coarse_state(coarse: CoarseSteps) -> State:
    """``coarse``'s learnt state, as copies (``restore_coarse`` reads it back)."""
    queries = [list(row) for row in coarse.learnt_queries()]
    series: list[list[Any]] = []
    parts: dict[str, list[np.ndarray]] = {key: [] for key in KEPT}
    for query, steps in coarse.series_steps():
        slots, labels = steps.held()
        series.append([query, steps.reach, [list(map(list, lab.items())) for lab in labels]])
        for key in KEPT:
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
        coarse.take_up_query(
            str(query), None if last is None else float(last), float(spacing), int(times), float(seen or 0.0)
        )
    first = 0
    for query, reach, labels in state.meta["series"]:
        rows = slice(first, first + len(labels))
        first += len(labels)
        steps = _series(coarse.source, str(query), labels, state.arrays, reach=float(reach), rows=rows)
        coarse.take_up_series(steps)
    if first != state.arrays["last"].size:
        raise ValueError(f"coarse steps: {first} series' labels, {state.arrays['last'].size} kept")


def _series(
    source: str, query: str, labels: list[Any], arrays: Arrays, *, reach: float, rows: slice
) -> SeriesSteps:
    """New steps of ``query`` holding ``labels``, their state the ``rows`` of ``arrays``."""
    n = len(labels)
    kept: dict[str, np.ndarray] = {}
    for key in KEPT:
        kept[key] = np.asarray(arrays[key][rows])
        if kept[key].shape != (n,):
            raise ValueError(f"coarse steps of {query}: {key} holds {kept[key].shape}, not {n} series")
    sets = [{str(k): str(v) for k, v in items} for items in labels]
    return SeriesSteps.restored(source, query, reach, sets, kept)
