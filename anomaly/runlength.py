"""Bayesian online change-point detection: a series' run-length posterior, truncated, vectorised.

Adams and MacKay (2007), written here from the paper only (no code was read). At each sample the posterior
over the *run length* ``r`` (samples since the last change) is updated from the one before: every run either
grows by one, weighted by how well the values of that run predict the new sample, or ends (probability
``hazard``, a constant: a memoryless prior on the gap between changes) and a new run of length 0 starts.
Each run's values are Gaussian with unknown mean and variance under a Normal-Gamma prior, so a run's
predictive is a Student-t whose parameters follow the run's own values in closed form.

Unlike the adaptive band, which asks whether one value is far from the level, this asks whether the recent
values are better explained by a new distribution than by the old one: a level that moves inside the band,
a noisy series that goes quiet (its variance drops) or a quiet one that becomes noisy. Those are most of
the NAB windows the default misses (a disk that stops writing, a CPU's bursts that stop, a small level
shift), which is why this family was chosen (benchmarks/nab_runlength.py).

* The first ``warmup`` samples give the scale: their median and MAD (the mean absolute deviation when the
  MAD is 0, then 1e-9) standardise every value, ``(x - median) / scale``, optionally through ``asinh``
  (``transform="asinh"``), which makes a bursty series' bursts logarithmic; the prior is then fixed
  (mean 0, ``kappa`` 1, ``alpha`` 1, ``beta`` 1). At the end of the warm-up its samples are replayed, so
  the posterior at sample ``warmup`` is what it would have been from the first sample (no warm-up-end
  effect).
* Truncation: runs of ``horizon`` or more samples share one slot (the heavier of the two runs that meet
  there keeps its statistics), so a step costs ``O(horizon)`` per series.
* The score is the posterior mass of runs of ``delay`` to ``horizon - 1`` samples (the current one
  included), over ``threshold``: a change that has held at least ``delay`` samples and that they still
  support, so a spike shorter than ``delay`` that the old run explains again afterwards does not count
  (but one the old run cannot explain, a few samples many spreads out, makes the samples after it a new
  run: the Gaussian run is not robust to outliers, which ``asinh`` only softens). A run that began
  inside the warm-up (or with the series) is not a change and is left out. A score above 1 after ``rearm``
  quiet samples raises (the re-arm is also the mask after an onset); nothing raises before ``warmup``.

Not part of the default detector (opt-in): ``benchmarks/nab_runlength.py`` cross-validates a declared grid of
it OR-ed with the default over the NAB files here, and it lowers the default's 72.16 to 71.73 (a category
left out) and 71.79 (five folds). A run of i.i.d. Gaussian values is the wrong model for these series (a
daily cycle, autocorrelation and bursts all look like changes): at ``RunLengthParams()`` the posterior
supports a change at a median 36 % of a file's samples after the warm-up, so the part raises once on most
files, soon after the warm-up, and its re-arm then mutes it; benchmarks/README.md gives the figures.

Causal: a sample's score depends only on it and the samples before it. NaN and infinite samples are skipped
(score 0, no state change). State per series: the warm-up's values, the scale, and three floats per
run-length slot (``horizon + 1`` slots): about 3.9 KB at ``RunLengthParams()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import gammaln

from anomaly.replay import replay_alerts, replay_raised
from anomaly.steps import NEVER, BoolArray, FloatArray, IntArray, SeriesArrays, StepScores, rearmed

KAPPA0, ALPHA0, BETA0 = 1.0, 1.0, 1.0  # the prior in standardised units: mean 0, variance about 1


@dataclass(frozen=True, slots=True)
class RunLengthParams:
    """``hazard``, ``transform``, ``delay`` and ``rearm``: the best of ``benchmarks/nab_runlength.py``'s
    declared grid on all files (OR-ed with the default; cross-validated it lowers the score); ``threshold``,
    ``horizon`` and ``warmup`` were fixed before any run."""

    hazard: float = 1e-4
    transform: Literal["linear", "asinh"] = "asinh"
    delay: int = 20
    threshold: float = 0.9
    horizon: int = 128
    warmup: int = 100
    rearm: int = 1000

    def __post_init__(self) -> None:
        if not 0.0 < self.hazard < 1.0 or not 0.0 < self.threshold <= 1.0:
            raise ValueError("hazard must be in (0, 1) and threshold in (0, 1]")
        if not 1 <= self.delay < self.horizon or self.warmup < 2 or self.rearm < 1:
            raise ValueError("1 <= delay < horizon, warmup >= 2 and rearm >= 1 are required")
        if self.transform not in ("linear", "asinh"):
            raise ValueError("transform must be 'linear' or 'asinh'")


def log_total(logs: FloatArray) -> FloatArray:
    """``log(sum(exp(logs)))`` per row, kept finite by the row's largest term (every row has a finite one)."""
    top = logs.max(axis=1, keepdims=True)
    total: FloatArray = top + np.log(np.exp(logs - top).sum(axis=1, keepdims=True))
    return total


def standardised(values: FloatArray, center: FloatArray, scale: FloatArray, transform: str) -> FloatArray:
    """Values in the warm-up's units (rows of ``values`` against each row's centre and scale)."""
    z = (values - center) / scale
    return np.arcsinh(z) if transform == "asinh" else z


def warmup_scale(window: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per row of ``window`` (a series' warm-up values): its median and a robust, positive scale."""
    center = np.median(window, axis=1)
    spread = np.abs(window - center[:, None])
    scale = 1.4826 * np.median(spread, axis=1)
    scale = np.where(scale > 0.0, scale, 1.2533 * spread.mean(axis=1))
    return center, np.where(scale > 0.0, scale, 1e-9)


class RunLengthChange(SeriesArrays):
    """Streaming truncated run-length posterior per series (ids are small non-negative ints)."""

    FIELDS = (
        ("count", 0),
        ("center", np.nan),
        ("scale", np.nan),
        ("early", np.nan),
        ("logmass", -np.inf),
        ("mu", 0.0),
        ("beta", BETA0),
        ("top", 0.0),
        ("since", NEVER),
    )

    def __init__(self, params: RunLengthParams | None = None, capacity: int = 1024) -> None:
        self.params = p = params or RunLengthParams()
        slots = p.horizon + 1
        self.count = np.zeros(0, np.int64)
        self.center = np.zeros(0)
        self.scale = np.zeros(0)
        self.early = np.zeros((0, p.warmup))
        self.logmass = np.zeros((0, slots))
        self.mu = np.zeros((0, slots))
        self.beta = np.zeros((0, slots))
        self.top = np.zeros(0)  # samples in the longest slot's run (at least horizon once it holds one)
        self.since = np.zeros(0, np.int64)
        runs = np.arange(p.horizon, dtype=np.float64)
        alpha = ALPHA0 + runs / 2.0
        self._lg = gammaln(alpha + 0.5) - gammaln(alpha)  # the Student-t's constant for runs below horizon
        self._runs = runs
        self._grow(capacity)

    def update(self, ids: IntArray, values: FloatArray) -> StepScores:
        """One sample per id: score >1 when a change is supported (``raised``: whether it raises now)."""
        score, raised, rows, s, x = self._begin(ids, values)
        if rows.size:
            mass, live = self._learn(s, x)
            raised[rows], score[rows] = self.judge(self.params, s, mass, live, self.since)
        return StepScores(ids=ids, score=score, raised=raised)

    def judge(
        self, p: RunLengthParams, s: IntArray, mass: FloatArray, live: BoolArray, since: IntArray
    ) -> tuple[BoolArray, FloatArray]:
        """Which of the series ``s`` raise under ``p``'s ``delay``, ``threshold`` and ``rearm`` (``since``
        moved on), and their scores, from their posteriors ``mass`` (probabilities per slot)."""
        runs = np.arange(mass.shape[1])
        counted = (runs >= p.delay) & (runs < mass.shape[1] - 1)
        # a run that began with the series or inside its warm-up is not a change
        counted = counted[None, :] & (runs[None, :] <= self.count[s, None] - p.warmup)
        change = np.where(counted, mass, 0.0).sum(axis=1)
        value = np.where(live, change / p.threshold, 0.0)
        fires, since[s] = rearmed(live & (change >= p.threshold), since[s], p.rearm)
        return fires & live, value

    def _learn(self, s: IntArray, x: FloatArray) -> tuple[FloatArray, BoolArray]:
        """Take the finite samples ``x`` of the series ``s``; their posteriors after it (probabilities per
        slot; zeros during the warm-up) and whether each is judged (past its warm-up)."""
        p = self.params
        n = self.count[s]
        warming = n < p.warmup
        if warming.any():
            self.early[s[warming], n[warming]] = x[warming]
        self.count[s] = n + 1
        ready = s[n + 1 == p.warmup]
        if ready.size:
            self._start(ready)
        live = n + 1 > p.warmup
        mass = np.zeros((s.size, p.horizon + 1))
        if live.any():
            on = s[live]
            y = standardised(x[live, None], self.center[on, None], self.scale[on, None], p.transform)[:, 0]
            self._step(on, y)
            mass[live] = np.exp(self.logmass[on])
        return mass, live

    def _start(self, ids: IntArray) -> None:
        """The warm-up of ``ids`` is complete: its scale is set and its samples are replayed in order."""
        p = self.params
        self.center[ids], self.scale[ids] = warmup_scale(self.early[ids])
        self.logmass[ids] = -np.inf
        self.logmass[ids, 0] = 0.0
        self.mu[ids], self.beta[ids], self.top[ids] = 0.0, BETA0, 0.0
        y = standardised(self.early[ids], self.center[ids, None], self.scale[ids, None], p.transform)
        for i in range(p.warmup):
            self._step(ids, y[:, i])

    def _step(self, ids: IntArray, y: FloatArray) -> None:
        """One Adams-MacKay step of the series ``ids`` on their standardised samples ``y``."""
        p = self.params
        h = p.horizon
        mu, beta, logmass, top = self.mu[ids], self.beta[ids], self.logmass[ids], self.top[ids]
        runs = np.broadcast_to(self._runs, (ids.size, h))
        kappa = np.concatenate([KAPPA0 + runs, (KAPPA0 + top)[:, None]], axis=1)
        alpha = ALPHA0 + (kappa - KAPPA0) / 2.0
        top_alpha = alpha[:, h]
        lg = np.concatenate(
            [
                np.broadcast_to(self._lg, (ids.size, h)),
                (gammaln(top_alpha + 0.5) - gammaln(top_alpha))[:, None],
            ],
            axis=1,
        )
        scale2 = beta * (kappa + 1.0) / (alpha * kappa)
        dof = 2.0 * alpha
        error = y[:, None] - mu
        logpred = (
            lg - 0.5 * np.log(dof * math.pi * scale2) - (alpha + 0.5) * np.log1p(error**2 / (dof * scale2))
        )
        joint = logmass + logpred
        new_mu = (kappa * mu + y[:, None]) / (kappa + 1.0)
        new_beta = beta + kappa * error**2 / (2.0 * (kappa + 1.0))
        grown = joint + math.log1p(-p.hazard)
        out_mass = np.empty_like(logmass)
        out_mu, out_beta = np.empty_like(mu), np.empty_like(beta)
        out_mass[:, 0] = log_total(joint)[:, 0] + math.log(p.hazard)
        out_mu[:, 0], out_beta[:, 0] = 0.0, BETA0
        out_mass[:, 1:h] = grown[:, : h - 1]
        out_mu[:, 1:h], out_beta[:, 1:h] = new_mu[:, : h - 1], new_beta[:, : h - 1]
        # the longest slot: the run reaching horizon meets the one already there; the heavier keeps its values
        reaching, staying = grown[:, h - 1], grown[:, h]
        keep = staying >= reaching
        out_mass[:, h] = np.logaddexp(reaching, staying)
        out_mu[:, h] = np.where(keep, new_mu[:, h], new_mu[:, h - 1])
        out_beta[:, h] = np.where(keep, new_beta[:, h], new_beta[:, h - 1])
        out_top = np.where(keep & np.isfinite(staying), top + 1.0, float(h))
        out_mass -= log_total(out_mass)
        self.logmass[ids], self.mu[ids], self.beta[ids], self.top[ids] = out_mass, out_mu, out_beta, out_top


def raise_many(values: list[FloatArray], params: RunLengthParams | None = None) -> list[BoolArray]:
    """Alerts per series when each series' ``i``-th sample arrives at step ``i`` (as ``score_many`` does)."""
    return replay_alerts(RunLengthChange(params, capacity=max(len(values), 1)).update, values)


Learning = tuple[float, str, int, int]


def learning(p: RunLengthParams) -> Learning:
    """What of ``p`` the posterior depends on: settings alike in it learn alike."""
    return (p.hazard, p.transform, p.horizon, p.warmup)


def raise_grid(values: list[FloatArray], grid: list[RunLengthParams]) -> list[list[BoolArray]]:
    """``raise_many(values, params)`` for each ``params`` of ``grid``, with the posterior shared: settings
    that differ only in ``delay``, ``threshold`` and ``rearm`` are stepped once and judged apart."""
    groups: dict[Learning, list[int]] = {}
    for k, p in enumerate(grid):
        groups.setdefault(learning(p), []).append(k)
    found: list[list[BoolArray]] = [[] for _ in grid]
    for members in groups.values():
        heads = [grid[k] for k in members]
        detector = RunLengthChange(heads[0], capacity=max(len(values), 1))
        since = [np.full(max(len(values), 1), NEVER, np.int64) for _ in heads]

        def judged(ids: IntArray, step: FloatArray) -> list[BoolArray]:
            raised = [np.zeros(ids.size, np.bool_) for _ in heads]  # noqa: B023 - used within the loop
            _, _, rows, s, x = detector._begin(ids, step)  # noqa: B023
            if rows.size:
                mass, live = detector._learn(s, x)  # noqa: B023
                for head, params in enumerate(heads):  # noqa: B023
                    raised[head][rows] = detector.judge(params, s, mass, live, since[head])[0]  # noqa: B023
            return raised

        for k, alerts in zip(members, replay_raised(judged, values, len(heads)), strict=True):
            found[k] = alerts
    return found
