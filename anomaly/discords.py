"""Subsequence discords online: a causal left matrix profile, the idea behind DAMP (Lu, Wu, Mueen, Zuluaga,
Keogh, KDD 2022, "Matrix Profile XXIV": online discord discovery), written here with numpy.

For each new sample the last ``m`` values form a subsequence; its *left matrix-profile value* is the
z-normalised Euclidean distance to its nearest neighbour among all earlier subsequences (those ending at
least ``m // 2`` samples before it are eligible: closer ones overlap it, trivial matches). A shape the series
has never shown before, whatever its level or scale, has a large value: a different family from the default
detector's value bands, which see values, not shapes.

* Dot products with every earlier subsequence are kept as one vector and moved one sample on per step
  (STOMP's running dot product: ``QT[j] <- QT[j-1] - x[k-1] x[j-1] + x[k+m-1] x[j+m-1]``), so a step costs
  O(subsequences held), no FFT; ``history`` caps how many are held (the oldest are dropped).
* Flat segments: a window's standard deviation is floored at ``floor`` x the spread of the warm-up's values
  before z-normalising, so a constant window normalises to zeros (distance 0 to another constant window,
  small to a quiet one) instead of dividing by zero or blowing sensor noise up to unit variance.
* ``m`` is fixed, or (``m=None``) the lag of the first peak of the warm-up's autocorrelation, clipped to
  ``m_range`` (the subsequence length is then known at the end of the warm-up, and the profile of the
  warm-up's subsequences is built then from the stored values: still causal).
* The raise rule: distances are divided by ``sqrt(m)`` (0 to 2); from ``warmup`` on, a value above
  ``factor`` x the largest value seen since the warm-up ended raises, once the reference has been learned
  for ``learn`` samples, and not within ``rest`` samples of the last raise; every value joins the reference
  (it never forgets, like ``RangeBreakout``), or with ``memory`` only the last ``memory`` samples' values
  count (the nearest-neighbour distances shrink as the history grows, so early values can mask later
  discords in a never-forgetting reference). ``seed`` > 0 lets the left matrix-profile values of the
  warm-up's last ``seed`` samples (computed when it ends) start the reference, so judging can begin at once.

Not part of the default detector: ``benchmarks/nab_discords.py`` declares its grid and cross-validates it
OR-ed with the default over the NAB files here. Causal: a sample's answer depends only on it and the samples
before it. State per series: the values and the per-subsequence mean, deviation and dot product of the
``history`` subsequences held (4 floats each).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from anomaly.steps import BoolArray, FloatArray


@dataclass(frozen=True, slots=True)
class DiscordParams:
    """One setting of the discord part; ``benchmarks/nab_discords.py`` declares the grid searched."""

    m: int | None = None
    m_range: tuple[int, int] = (8, 96)
    floor: float = 0.1
    factor: float = 1.0
    warmup: int = 300
    learn: int = 300
    seed: int = 0
    memory: int | None = None
    rest: int = 1000
    history: int | None = None

    def __post_init__(self) -> None:
        lo, hi = self.m_range
        if self.m is not None and self.m < 4:
            raise ValueError("m must be at least 4 samples (or None: from the warm-up)")
        if not 4 <= lo <= hi:
            raise ValueError("m_range must be (lo, hi) with 4 <= lo <= hi")
        if self.floor <= 0.0 or self.factor <= 0.0:
            raise ValueError("floor and factor must be > 0")
        longest = self.m or hi
        if self.warmup < 2 * longest or self.learn < 0 or self.rest < 1:
            raise ValueError("warmup must hold two of the longest subsequences; learn >= 0; rest >= 1")
        if not 0 <= self.seed <= self.warmup // 2 or (self.seed == 0 and self.learn == 0):
            raise ValueError("seed must be 0 to warmup / 2, and learn > 0 when seed is 0 (no reference)")
        if self.memory is not None and self.memory < 1:
            raise ValueError("memory must be >= 1 samples (or None: never forget)")
        if self.history is not None and self.history < 2 * longest:
            raise ValueError("history must hold at least two of the longest subsequences")


def first_peak(values: FloatArray, lo: int, hi: int) -> int:
    """The lag of the autocorrelation's first local maximum after it first drops below zero, clipped to
    ``[lo, hi]``; ``hi`` when there is none (no periodicity seen: the longest shape)."""
    x = values[np.isfinite(values)]
    x = x - x.mean() if x.size else x
    denom = float(np.dot(x, x))
    if x.size < 2 * lo or denom <= 0.0:
        return hi
    top = min(x.size // 2, 2 * hi)
    acf = np.array([np.dot(x[:-k], x[k:]) / denom for k in range(1, top + 1)])
    negative = np.flatnonzero(acf < 0.0)
    if not negative.size:
        return hi
    for k in range(int(negative[0]) + 1, top - 1):
        if acf[k] >= acf[k - 1] and acf[k] >= acf[k + 1] and acf[k] > 0.0:
            return int(min(max(k + 1, lo), hi))
    return hi


class LeftDiscord:
    """The left matrix profile of one series, sample by sample, and the discord raise rule."""

    def __init__(self, params: DiscordParams | None = None) -> None:
        self.params = p = params or DiscordParams()
        self.m: int | None = p.m
        self.count = 0
        self._raw: list[float] = []
        # values after the warm-up's affine scaling (z-distances do not change), x[:n] in use
        self._x = np.zeros(0)
        self._n = 0
        self._base = 0  # index in x of the first value after the warm-up's start (the first subsequence's)
        self._first = 0  # index in x of the oldest held subsequence's first value
        # per held subsequence [lo, hi), oldest first: 1 / floored sd, m mu / floored sd, |z|^2, and the dot
        # product of the latest subsequence with it
        self._lo = self._hi = 0
        self._inv = np.zeros(0)
        self._mmu = np.zeros(0)
        self._norm = np.zeros(0)
        self._qt = np.zeros(0)
        self._centre = 0.0
        self._scale = 1.0
        self._floor = p.floor
        self.reference = -math.inf  # the largest value judged against (never forgetting)
        self._recent: deque[tuple[int, float]] = (
            deque()
        )  # with ``memory``: a monotone queue of the window's maxima
        self._since = p.rest
        self.last = 0.0

    def update(self, value: float) -> tuple[float, bool]:
        """One sample: its left matrix-profile value (0 before one can be known) and whether it raises.
        NaN samples are skipped (0, no state change)."""
        if not math.isfinite(value):
            return 0.0, False
        p = self.params
        self.count += 1
        self._since += 1
        if self.count <= p.warmup:
            self._raw.append(value)
            if self.count == p.warmup:
                self._start()
            return 0.0, False
        score = self._step((value - self._centre) / self._scale)
        self.last = score
        return score, self._judge(score)

    def _judge(self, score: float) -> bool:
        """The raise rule for one value after the warm-up (``count`` and ``_since`` already moved on)."""
        p = self.params
        judged = self.count > p.warmup + p.learn
        reference = self.reference if p.memory is None else self._windowed()
        raised = judged and score > p.factor * reference and self._since >= p.rest
        if raised:
            self._since = 0
        self._remember(score)
        return raised

    def _remember(self, score: float) -> None:
        """Take a value into the reference: the never-forgetting maximum, or the last ``memory`` values'."""
        self.reference = max(self.reference, score)
        if self.params.memory is not None:
            recent = self._recent
            while recent and recent[-1][1] <= score:
                recent.pop()
            recent.append((self.count, score))

    def _windowed(self) -> float:
        """The largest of the values taken in over the last ``memory`` samples (-inf when none)."""
        assert self.params.memory is not None
        recent = self._recent
        while recent and recent[0][0] <= self.count - 1 - self.params.memory:
            recent.popleft()
        return recent[0][1] if recent else -math.inf

    def _start(self) -> None:
        """End of the warm-up: choose ``m``, scale the values, build the warm-up's subsequences."""
        p = self.params
        raw = np.asarray(self._raw, dtype=np.float64)
        self._raw = []
        if self.m is None:
            self.m = first_peak(raw, *p.m_range)
        self._centre = float(raw.mean())
        spread = float(raw.std())
        self._scale = spread if spread > 0.0 else max(abs(self._centre), 1.0)
        self._floor = p.floor * (1.0 if spread > 0.0 else 1e-6)
        x = (raw - self._centre) / self._scale
        for i, v in enumerate(x):
            score = self._step(float(v))
            if i >= p.warmup - p.seed:
                self._remember(score)

    def _step(self, v: float) -> float:
        """Append one scaled value; the new subsequence's nearest-neighbour distance / sqrt(m)."""
        m = self.m
        assert m is not None
        if self._n == self._x.size:
            self._compact()
        x = self._x
        x[self._n] = v
        self._n += 1
        n = self._n
        if n - self._base < m:
            return 0.0
        window = x[n - m : n]
        mu = float(window.mean())
        raw_sd = float(window.std())
        sd = max(raw_sd, self._floor)
        lo, hi = self._lo, self._hi  # held subsequences: [lo, hi) in the per-subsequence arrays
        held = hi - lo
        qt = self._qt
        if held:
            # slide every held dot product one sample on (in place, newest first so each reads the old
            # value); the oldest held subsequence's is computed anew
            first = self._first  # index in x of the oldest held subsequence's first value
            qt[lo + 1 : hi] = (
                qt[lo : hi - 1]
                - x[n - m - 1] * x[first : first + held - 1]
                + v * x[first + m : first + m + held - 1]
            )
            qt[lo] = float(np.dot(x[first : first + m], window))
        eligible = held - m // 2  # those ending at least m // 2 samples before this one
        score = 0.0
        if eligible > 0:
            e = slice(lo, lo + eligible)
            # |z_new - z_j|^2 = own + |z_j|^2 - 2 (qt_j - m mu mu_j) / (sd sd_j)
            own = m * (raw_sd / sd) ** 2
            d2 = own + self._norm[e] - (2.0 / sd) * (qt[e] * self._inv[e] - mu * self._mmu[e])
            score = math.sqrt(max(float(d2.min()), 0.0) / m)
        if hi == self._inv.size:
            self._compact_profile()
            lo, hi = self._lo, self._hi
            qt = self._qt
        self._inv[hi] = 1.0 / sd
        self._mmu[hi] = m * mu / sd
        self._norm[hi] = m * (raw_sd / sd) ** 2
        qt[hi] = float(np.dot(window, window))
        if held == 0:
            self._first = n - m
        self._hi = hi = hi + 1
        cap = self.params.history
        if cap is not None and hi - lo > cap:
            self._lo += hi - lo - cap
            self._first += hi - lo - cap
        return score

    def _compact(self) -> None:
        """Make room for more values: drop those no held subsequence needs, or double the buffer."""
        keep_from = min(self._first if self._hi > self._lo else self._n, max(self._n - self._needed(), 0))
        keep_from = max(keep_from, 0)
        tail = self._x[keep_from : self._n].copy()
        size = max(self._x.size, 2 * tail.size + 64)
        self._x = np.zeros(size)
        self._x[: tail.size] = tail
        self._n = tail.size
        self._first -= keep_from
        self._base -= keep_from

    def _needed(self) -> int:
        assert self.m is not None
        return self._hi - self._lo + self.m

    def _compact_profile(self) -> None:
        """Make room in the per-subsequence arrays (the held subsequences move to the front)."""
        lo, hi = self._lo, self._hi
        size = max(self._inv.size, 2 * (hi - lo) + 64)
        for name in ("_inv", "_mmu", "_norm", "_qt"):
            old = getattr(self, name)
            new = np.zeros(size)
            new[: hi - lo] = old[lo:hi]
            setattr(self, name, new)
        self._lo, self._hi = 0, hi - lo


def profile(values: FloatArray, params: DiscordParams | None = None) -> tuple[FloatArray, BoolArray, int]:
    """Left matrix-profile values and raises of one series, replayed sample by sample, and the ``m`` used."""
    detector = LeftDiscord(params)
    scores = np.zeros(values.size)
    raised = np.zeros(values.size, np.bool_)
    for i, v in enumerate(values.tolist()):
        scores[i], raised[i] = detector.update(v)
    return scores, raised, detector.m or 0


def raise_many(values: list[FloatArray], params: DiscordParams | None = None) -> list[BoolArray]:
    """Alerts per series (each series is independent, so replaying one after another is the same)."""
    return [profile(v, params)[1] for v in values]


def judge_profile(scores: FloatArray, params: DiscordParams) -> BoolArray:
    """The raise rule replayed over a series' left matrix-profile values (as ``profile`` returns them), so a
    grid of rules shares one profile; the same answers as ``LeftDiscord.update``. Needs ``seed`` 0 (the
    warm-up's values are not in ``scores``)."""
    if params.seed:
        raise ValueError("judge_profile needs seed=0: the warm-up's profile values are not kept")
    rule = LeftDiscord(params)
    raised = np.zeros(scores.size, np.bool_)
    for i, score in enumerate(scores.tolist()):
        rule.count += 1
        rule._since += 1
        if rule.count > params.warmup:
            raised[i] = rule._judge(score)
    return raised
