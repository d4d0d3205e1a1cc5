"""Cross-validated NAB score of the default detector run on differences of each series too: one JSON line.

Issue 4's NAB target (twenty-fifth session, nab24). Every earlier part judged the value itself (or a smoothed
or windowed copy of it). Here the whole default detector (adaptive thresholds, range breakout, daily and
weekly recurrence mute, contextual novelty; nothing retuned) also runs on a residual of each series, and its
alert onsets are OR-ed with the default's:

* ``diff``: the first difference, the value minus the one before it (a step becomes one spike, so a level
  shift leaves no wide band behind it, and a change of slope or of noise stands out from a drifting level);
* ``day`` / ``week``: a causal seasonal-naive forecast's residual, the value minus the last value stamped at
  least one day (one week) earlier (``searchsorted`` on the timestamps, so irregular sampling is handled;
  samples with no such earlier value are left out of the residual series).

A residual at raw index ``t`` is known at ``t`` (it uses only ``t`` and earlier samples), which is where its
onset is placed: causal. With ``quiet`` = q, a residual onset is left out when the default raised in the q raw
samples up to it (``nab_multiscale.after_quiet``: the same event seen again).

Shaped on the tune split only (``anomaly.nab.is_tuning_file``; ``--tune`` prints tune's score per setting and
nothing else). There (default 78.77, 94 alerts, 52 FPs, 31 of 33 windows) every residual OR-ed without quiet
found one window more and paid 39 to 63 FPs for it (diff 76.20, day 72.14, week 71.17; day + week 64.51 with
both tune misses found); quiet 1,000 kept the window and cut most of them (diff 80.29, 61 FPs, finds
ec2_cpu_utilization_53ea38's second window; day 80.39, 60 FPs, exchange-2_cpc's window, a genuine crossing at
raw 295: the value rising against the day before, score 0.49 -> 1.17; diff + day 81.91, both; week 75.64);
quiet 2,000 / 4,000 gave diff 77.86 (the window lost), day 80.89, week 77.93, day + week 80.22. So quiet 0 is
left out of the grid.

The grid (declared and committed before the first cross-validated run; 10 settings and the default alone):
residuals (diff) / (day) / (week) / (diff, day) / (day, week) x ``quiet`` 1,000 / 4,000.

``--frozen LABEL`` prints, for one setting and the default, the standard, low-FP and low-FN scores of tune,
held-out and all files and the standard score per category and split, with windows found and FPs: the one
held-out look after freezing (the setting frozen on tune: the grid's best tune score).

Cross-validation as ``nab_multiscale.py`` (``nab_cv.py``'s ``grid_report`` via
``nab_rebaseline.print_report``): leave one category out and five folds by name hash; the bar is +1.5 points
over the default in both schemes.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nab_multiscale import after_quiet, per_setting, settings_corpus, settings_parser, settings_report

from anomaly.nab import NabFile
from anomaly.univariate import Series, score_many

#: Lag of each residual in seconds; ``None``: the sample before (first difference).
LAGS: dict[str, float | None] = {"diff": None, "day": 86_400.0, "week": 604_800.0}
RESIDUALS: tuple[tuple[str, ...], ...] = (("diff",), ("day",), ("week",), ("diff", "day"), ("day", "week"))
QUIET = (1000, 4000)


@dataclass(frozen=True, slots=True)
class Residuals:
    """One setting: which residual copies run, and the quiet after a default onset."""

    kinds: tuple[str, ...]
    quiet: int = 0


def grid() -> dict[str, Residuals | None]:
    """The declared grid, plus the default alone (``off``)."""
    out: dict[str, Residuals | None] = {"off": None}
    for kinds, quiet in itertools.product(RESIDUALS, QUIET):
        out[f"{'+'.join(kinds)},quiet={quiet}"] = Residuals(kinds, quiet)
    return out


def residual(series: Series, lag: float | None) -> tuple[Series, npt.NDArray[np.int64]]:
    """The residual series and, per residual sample, the raw index it belongs to (and is known at).

    ``lag`` ``None``: ``x[t] - x[t - 1]`` from ``t = 1``; else ``x[t] - x[s]`` with ``s`` the last sample
    stamped at or before ``timestamps[t] - lag``, for the ``t`` that have one."""
    values, stamps = series.values, series.timestamps
    if lag is None:
        at = np.arange(1, len(values), dtype=np.int64)
        earlier = at - 1
    else:
        before = np.searchsorted(stamps, stamps - lag, side="right") - 1
        at = np.flatnonzero(before >= 0).astype(np.int64)
        earlier = before[at]
    out = Series(name=f"{series.name}~{lag}", timestamps=stamps[at], values=values[at] - values[earlier])
    return out, at


def combine(
    default: npt.NDArray[np.bool_],
    copies: dict[str, tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]],
    setting: Residuals,
) -> npt.NDArray[np.bool_]:
    """One file's alerts: the default's onsets and each residual copy's (its raised flags and raw indices)."""
    out = default.copy()
    for kind in setting.kinds:
        raised, at = copies[kind]
        out[after_quiet(default, at[np.asarray(raised, bool)], setting.quiet)] = True
    return out


def detect_all(
    files: list[NabFile], settings: dict[str, Residuals | None]
) -> tuple[dict[str, dict[str, npt.NDArray[np.bool_]]], dict[str, float]]:
    """Alerts per setting and file, and seconds per setting (the default's pass and its copies' passes)."""
    tick = time.perf_counter()
    default = {f.name: s.raised for f, s in zip(files, score_many([f.series for f in files]), strict=True)}
    base = time.perf_counter() - tick
    kinds = sorted({k for s in settings.values() if s is not None for k in s.kinds})
    copies: dict[str, dict[str, tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]]] = {}
    cost: dict[str, float] = {}
    for kind in kinds:
        tick = time.perf_counter()
        pairs = [residual(f.series, LAGS[kind]) for f in files]
        scored = score_many([series for series, _ in pairs])
        copies[kind] = {
            f.name: (np.asarray(s.raised, bool), at)
            for f, s, (_, at) in zip(files, scored, pairs, strict=True)
        }
        cost[kind] = time.perf_counter() - tick
    return per_setting(files, settings, (default, base), (copies, cost), lambda s: s.kinds, combine)


def main() -> None:
    parser = settings_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    started = time.perf_counter()
    files = settings_corpus(parser, args)
    alerts, seconds = detect_all(files, grid())
    settings_report(parser, args, (files, alerts, seconds), "nab_residual", "nab_residual", started)


if __name__ == "__main__":
    main()
