"""A PromQL answer read into a ``Frame``: its samples placed on the step grid asked for, in whole
milliseconds, and a payload of another shape translated into ``SourceError``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from anomaly.promquery import PromQuery
from anomaly.sources import Frame, SeriesKind
from gpuwarden.errors import SourceError


def _millis(seconds: float) -> int:
    """Epoch seconds as whole milliseconds, Prometheus' resolution.

    The step grid is computed on these integers: in floating point ``floor(1.2 / 0.2)`` is 5, so a window
    one step wide could hold no grid point. Rounding (not flooring) keeps ``4.35`` at 4350 ms, and windows
    that share an end (``(a, b]`` then ``(b, c]``) still split the grid with no gap and no overlap.
    """
    return round(seconds * 1000)


def _seconds(millis: int) -> str:
    """Whole milliseconds as a decimal seconds parameter: ``1767225600.2``, ``30``, never an exponent."""
    whole, frac = divmod(millis, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".")


def _labels(item: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in item.get("metric", {}).items()}


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _matrix_to_frame(query: PromQuery, data: Mapping[str, Any], grid: np.ndarray, source: str) -> Frame:
    name = query.name
    if data.get("resultType") != "matrix":
        raise SourceError(f"query {name}: expected a matrix, got {data.get('resultType')!r}", source=source)
    try:
        # No "result" at all is another shape, not an answer of no series (every series gone).
        return _read_matrix(name, data["result"], grid, query.series_kind)
    except (AttributeError, TypeError, ValueError, IndexError, KeyError) as exc:
        # A 200 of another shape (a proxy, a different API): the source is down, not the service.
        raise SourceError(
            f"query {name}: malformed matrix result: {type(exc).__name__}: {exc}", source=source
        ) from exc


def _read_matrix(name: str, result: Any, grid: np.ndarray, kind: SeriesKind) -> Frame:
    """Every series' points placed on ``grid``, all series at once: done series by series, with a few small
    arrays each, 100,000 series of one point took 5 s on a loaded machine, longer than a tick's read."""
    if not isinstance(result, list):
        raise TypeError(f"result is {type(result).__name__}, not a list")
    labels = [_labels(item) for item in result]
    points = [item.get("values") or () for item in result]
    flat = [p for series in points for p in series]
    values = np.full((len(result), grid.size), np.nan)
    if not flat:
        return Frame(name, labels, grid, values, kind)
    step = grid[1] - grid[0] if grid.size > 1 else 1.0
    stamps = np.array([float(p[0]) for p in flat])
    got = np.array([_number(p[1]) for p in flat])
    rows = np.repeat(np.arange(len(result)), np.fromiter(map(len, points), np.int64, len(points)))
    cols = np.rint((stamps - grid[0]) / step).astype(np.int64)
    keep = (cols >= 0) & (cols < grid.size)
    cells, got = rows[keep] * grid.size + cols[keep], got[keep]
    ordered = cells.size < 2 or bool((cells[1:] > cells[:-1]).all())  # the usual answer: no sort needed
    if not ordered and np.unique(cells).size < cells.size:
        # Two samples on one step: an HA pair merged without dedup (Thanos, a federating proxy), one replica
        # a scrape behind. Whichever came last was taken, so a counter read 5, 4, 5 across steps: a reset
        # and 4 new errors. The largest is taken: a counter's lagging replica is behind.
        np.fmax.at(values.reshape(-1), cells, got)
    else:
        values.reshape(-1)[cells] = got
    return Frame(name, labels, grid, values, kind, _present(values.shape, cells, got))


def _present(shape: tuple[int, ...], cells: np.ndarray, got: np.ndarray) -> np.ndarray | None:
    """Which cells of a matrix of ``shape`` hold a sample (``Frame.present``), where one of the samples
    ``got`` (at flat ``cells``) is NaN; None where none is. A series whose only sample in a window was
    ``NaN`` (0/0 in a query) is read as a gap row, and the warm-up's replay must read it so too."""
    if not np.isnan(got).any():
        return None
    present = np.zeros(shape, np.bool_)
    present.reshape(-1)[cells] = True
    return present
