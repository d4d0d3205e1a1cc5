"""What a PromQL source is asked: a named query, its series kind (counter or gauge) and whether its answer
filters series; the expression's text is read here, no request is made (``anomaly.promql`` reads them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from anomaly.sources import SeriesKind
from gpuwarden.promql_text import uncommented
from gpuwarden.range_guard import range_shape

# dcgm-exporter's counters whose names do not end in _TOTAL.
DCGM_COUNTERS = frozenset(
    {
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "DCGM_FI_DEV_RETIRED_SBE",
        "DCGM_FI_DEV_RETIRED_DBE",
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    }
)
_SELECTOR = re.compile(r"\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^{}]*\})?\s*")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_COMPARISON = re.compile(r"(?:==|!=|>=|<=|>(?!=)|<(?!=))(?!\s*(?i:bool)\b)")  # keywords are any case


def selected_metric(expr: str) -> str | None:
    """The metric of a bare selector (``X_TOTAL{gpu="0"}``: ``X_TOTAL``); None for any other expression."""
    match = _SELECTOR.fullmatch(uncommented(expr))
    return None if match is None else match.group(1)


def filters_series(expr: str) -> bool:
    """Whether ``expr`` compares without ``bool`` (``up == 0``, ``x > 90``): its series answer only the steps
    where they pass, so a series' absence between two of its answers is no coarser step. Comments are not
    read: ``x  # alert when > 90`` is no filter."""
    return _COMPARISON.search(_MATCHERS.sub("", uncommented(expr, blank_strings=True))) is not None


def inferred_kind(expr: str) -> SeriesKind:
    """``counter`` for a bare selector of a counter (``x_total``, ``X_TOTAL{gpu="0"}``, ``DCGM_COUNTERS``)."""
    name = selected_metric(expr)
    if name is None:
        return "gauge"
    return "counter" if name.lower().endswith("_total") or name in DCGM_COUNTERS else "gauge"


@dataclass(frozen=True, slots=True)
class PromQuery:
    """A named PromQL expression; the name becomes the ``for`` label of written-back scores.

    ``kind`` None: inferred from the expression (``inferred_kind``). ``guard``: the query's ``guard``
    setting (``gpuwarden.range_guard``); None: guarded when its shape is guarded unasked.
    """

    name: str
    expr: str
    step_seconds: float = 30.0
    kind: SeriesKind | None = None
    guard: bool | None = None

    @property
    def series_kind(self) -> SeriesKind:
        """The declared kind, or the one inferred from the expression."""
        return self.kind or inferred_kind(self.expr)

    @property
    def sent(self) -> tuple[str, bool]:
        """The expression sent to Prometheus, and whether it is guarded against its target going away
        (``rate(x[5m]) and x``: its series end at the target's first failed scrape)."""
        shape = range_shape(self.expr) if self.guard is not False else None
        if shape is None:
            return self.expr, False
        if shape.written_guard:
            return self.expr, True
        if self.guard or shape.self_guarded:
            return shape.guarded(self.expr), True
        return self.expr, False
