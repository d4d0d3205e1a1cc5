"""A query of the ``anomaly`` section (``anomaly.queries[k]``): its PromQL, step, kind, guard and the range of
values it can take (``data_range``), read and refused here with what to write instead.

Part of ``gpuwarden.config_anomaly``, which holds the section and checks the queries together
(``check_anomaly_queries``).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AllowInfNan, Field, field_validator

from gpuwarden.config_rules import Section
from gpuwarden.limits import MAX_INTERVAL_SECONDS
from gpuwarden.numerals import AS_WRITTEN, NUMBER, written_as_digits
from gpuwarden.yamlfile import shown_value

_Bound = Annotated[float, AllowInfNan(True)]  # a data range's end may be inf (NaN is refused before)


class AnomalyQueryConfig(Section):
    """A named PromQL query read by the anomaly service; the name is the `for` label of its scores."""

    name: str
    expr: str
    step_seconds: float = Field(
        30.0,
        ge=0.001,
        le=MAX_INTERVAL_SECONDS,
        description="the range query's step; PromQL's resolution is a millisecond (a smaller step was"
        " sent as 1 ms without a word)",
    )
    kind: Literal["gauge", "counter"] | None = Field(
        None,
        description=(
            "counter: scored as increases and rates (resets handled), which the DBE, NVLink and XID-counter"
            " signatures need; unset: counter when expr is a bare selector of a name ending in _total (any"
            " case) or a DCGM counter named otherwise (DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION, ...), else gauge"
        ),
    )
    direction: Literal["up", "down", "both"] | None = None
    min_deviation: float | None = Field(None, ge=0)
    adaptive: bool | None = Field(
        None,
        description=(
            "whether the adaptive detector scores this query; unset: when its name matches"
            " anomaly.adaptive_metrics (flags, counters and temperatures are read by other detectors)"
        ),
    )
    data_range: tuple[_Bound, _Bound] | None = Field(
        None,
        description=(
            "[low, high]: the values the query can take (vmanomaly's data_range): bands and yhat are clipped"
            " to it and a value outside it scores anomaly.score_outside_data_range; `inf`/`-inf` for no"
            " bound; unset: unbounded. For a `kind: counter` query it bounds the per-second rate scored"
        ),
    )

    guard: bool | None = Field(
        None,
        description=(
            "keep a point only while the range function's series has a current sample (`rate(x[5m]) and x`),"
            " so a target that goes away (a pod deleted) ends its series at once instead of ramping it down"
            " over the range, which the adaptive detector took for a drop. Unset: on for fn(selector[range])"
            " alone or under avg/min/max (by/without); off for sum and count, whose members' ramps are their"
            " share of the total, and for any other expression (it is sent as written). true: also under sum"
            " or count (when each of their series is one target's: sum by (pod)); false: expr is sent as"
            " written"
        ),
    )

    @field_validator("data_range", mode="before")
    @classmethod
    def _low_below_high(cls, value: object) -> object:
        return parse_data_range(value)


_DATA_RANGE_FIX = (
    "write [low, high]: two numbers, or inf / -inf for no bound, low below high (e.g. [0, inf] for a"
    " metric that cannot be negative, [0, 100] for a percentage)"
)


def parse_data_range(value: object) -> tuple[float, float] | None:
    """A query's ``data_range`` as two floats, low < high, or ``ValueError`` saying what to write."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{value!r} is not a pair; {_DATA_RANGE_FIX}")
    bounds = tuple(_bound(v) for v in value)
    low, high = bounds[0], bounds[1]
    if not low < high:
        raise ValueError(f"low {value[0]!r} is not below high {value[1]!r}; {_DATA_RANGE_FIX}")
    return low, high


def _bound(value: object) -> float:
    """One end of a data range: a number, or text written as the command line writes one (2e3, which YAML
    leaves as text; ``gpuwarden.numerals``), or inf / -inf (any case); never NaN or a bool.

    A number past a float's range is no bound in its sign, however written: YAML reads an unquoted
    ``1.0e+999`` as inf, ``float()`` reads ``'1e999'`` so, and no finite value lies beyond an integer of 400
    digits either. Refusing the text (fix/sigsmall) while YAML's float passed only made the operator write
    ``inf``, the bound they had already given."""
    if isinstance(value, str):
        return _text_bound(value)
    if not isinstance(value, int | float) or isinstance(value, bool) or _is_nan(value):
        raise ValueError(f"{shown_value(value)} is not a number; {_DATA_RANGE_FIX}")
    try:
        return float(value)
    except OverflowError:  # an integer of hundreds of digits
        return math.inf if value > 0 else -math.inf


def _is_nan(value: float) -> bool:
    """Whether ``value`` is NaN (``math.isnan`` converts an int, and fails on one too large)."""
    return isinstance(value, float) and math.isnan(value)


_INFINITIES = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


def _text_bound(text: str) -> float:
    """A data range's end written as text: a number as an option takes one, or an infinity."""
    if text.lower() in _INFINITIES:
        return _INFINITIES[text.lower()]
    if NUMBER.fullmatch(text):
        return float(text)  # '1e999': inf, no bound (``_bound``)
    digits = written_as_digits(text, whole=False)
    if digits is not None:  # ' 5', '1_000': what float() reads and an option refuses
        raise ValueError(f"{text!r} is not a number {AS_WRITTEN}; write {digits}")
    raise ValueError(f"{text!r} is not a number; {_DATA_RANGE_FIX}")
