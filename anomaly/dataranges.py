"""Per-query data ranges (vmanomaly's reader ``data_range``): the values a query can take.

A query's ``data_range: [low, high]`` (``anomaly.queries[].data_range``; unset: unbounded, as in
vmanomaly) does two things to the findings of every detector that writes a band for the query:

* ``yhat``, ``yhat_lower`` and ``yhat_upper`` are clipped to the range (vmanomaly's ``clip_predictions``),
  so a utilisation band no longer reaches -88 on a Grafana panel;
* a value outside the range scores ``anomaly.score_outside_data_range`` (at least; vmanomaly's
  ``anomaly_score_outside_data_range``): a negative utilisation is a broken query, recording rule or
  exporter, whatever the learned band says.

Such a value also teaches no detector anything (``build_view`` marks it in ``Step.outside``; each learned
detector scores it, then undoes what it learned, as for a gap): learned, one utilisation of 808334905 held a
GPU's adaptive alert open for 85 minutes through the fast error (issue 4). A query without a range has no such
guard: its wild values are samples.

Decisions stay consistent with the band: an in-range value was outside the clipped band exactly when it
was outside the model's own band (clipping only moves an edge that no in-range value can pass), and an
out-of-range value is outside the clipped band and scores above 1. The one difference from vmanomaly: a
``yhat`` outside the range is clipped, not scored 0 (vmanomaly calls such a prediction uncertain; here the
model's score of an in-range value stands).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from anomaly.detectors import Findings
from anomaly.thresholds import FloatArray
from gpuwarden.config_anomaly import AnomalyConfig


class DataRanges:
    """The configured queries' data ranges, applied to a tick's findings."""

    def __init__(self, cfg: AnomalyConfig) -> None:
        self.ranges = {q.name: q.data_range for q in cfg.queries if q.data_range is not None}
        self.outside_score = cfg.score_outside_data_range

    def apply(self, found: Findings) -> Findings:
        """``found`` with its band clipped and out-of-range values scored; unchanged for a query without a
        range, or a finding that has no band of the query's values (the fleet's peer scores)."""
        bounds = self.ranges.get(found.query)
        if bounds is None or found.yhat is None:
            return found
        low, high = bounds
        with np.errstate(invalid="ignore"):
            outside = (found.value < low) | (found.value > high)  # NaN: a gap, not outside
        score = np.where(outside, np.maximum(found.score, self.outside_score), found.score)
        return dataclasses.replace(
            found,
            score=score,
            yhat=_clip(found.yhat, low, high),
            lower=_clip(found.lower, low, high),
            upper=_clip(found.upper, low, high),
            summary=_summaries(found, outside, low, high),
        )


def _clip(band: FloatArray | None, low: float, high: float) -> FloatArray | None:
    return None if band is None else np.clip(band, low, high)  # NaN (no band yet) stays NaN


def _summaries(found: Findings, outside: np.ndarray, low: float, high: float) -> str | list[str]:
    """The finding's summaries, saying so for the rows whose value is outside the range."""
    if not outside.any():
        return found.summary if isinstance(found.summary, str) else list(found.summary)
    span = f"[{_bound(low)}, {_bound(high)}]"
    return [
        f"{found.query} is {float(found.value[i]):g}, outside its data_range {span}: check the query and"
        " the exporter"
        if outside[i]
        else found.summary_at(i)
        for i in range(len(found.labels))
    ]


def _bound(value: float) -> str:
    return ("-inf" if value < 0 else "inf") if math.isinf(value) else f"{value:g}"
