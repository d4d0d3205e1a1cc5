"""Hierarchical temporal memory (HTM) anomaly scores, the Numenta NAB detector's family, made causal.

Written from the published descriptions only (no nupic or htm.core code was read): Ahmad et al. (2017),
"Unsupervised real-time anomaly detection for streaming data", for the pipeline; Cui, Ahmad and Hawkins
(2017) for the spatial pooler; Hawkins and Ahmad (2016) for the temporal memory (``anomaly.htm_memory``).
The parameter values are the published NAB ones (2,048 columns, 40 active, 32 cells per column, ...):

* encoder: a random distributed scalar encoder (bucket ``round((x - offset) / resolution)``; bucket ``b``
  sets the bits ``hash(b), ..., hash(b + active - 1)`` of ``value_bits``, so neighbouring buckets share
  all but one bit and far ones share almost none) next to a periodic time-of-day encoder (``day_active``
  contiguous bits of ``day_bits``, wrapping at midnight);
* spatial pooler: each column sees a random ``potential`` share of the input; its overlap is the number of
  its connected synapses (permanence >= ``sp_connected``) on active input bits, a matrix product; the
  ``active_columns`` largest overlaps win (global inhibition, no boosting, as NAB runs it), and each winner
  raises the permanences of its potential synapses on active bits and lowers the others';
* temporal memory (``anomaly.htm_memory``): the raw anomaly score is the share of active columns that no
  cell predicted;
* anomaly likelihood: the mean of the last ``short`` raw scores against the Gaussian of the raw scores of
  the last ``history`` samples (after the learning period); ``1 - Q(z)`` is the likelihood, and a
  likelihood of at least ``1 - tail`` is anomalous.

**Causal range** (NAB hands its detectors the file's minimum and maximum; a service does not have them):
nothing is encoded during the warm-up (NAB's probation period, the first 15 % of a file, which NAB does
not score). At its end the resolution is fixed at the warm-up's range over ``buckets`` (NAB's 130; at
least ``min_resolution``) and the model learns the buffered warm-up samples in order, then goes on
streaming. The range then grows by itself: the encoder has no edges, so a value beyond the warm-up's range
takes new buckets at the same resolution, and the model never re-encodes what it learned. A raw score is
therefore known at its own sample from the warm-up's end on; the warm-up's raw scores are known at its end
and only feed the likelihood's distribution (its first half is the learning period, left out of it).

Not part of the default detector: ``benchmarks/nab_htm.py`` scores it on NAB, alone and OR-ed with the
default, over a declared grid of the likelihood's settings. Alone (tune's pick) it scores 37.2 on the 41
files (Numenta HTM, given each file's range: 75.5); OR-ed with the default 72.39 cross-validated against
71.95, held-out 64.62 against 64.70 (benchmarks/README.md gives the figures and where it loses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from anomaly.htm_memory import TemporalMemory
from anomaly.steps import BoolArray, FloatArray, IntArray

SECONDS_PER_DAY = 86400.0
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True, slots=True)
class HtmParams:
    """The published NAB HTM settings (Ahmad et al. 2017; the encoder's ``buckets`` is NAB's 130)."""

    buckets: int = 130
    min_resolution: float = 0.001
    value_bits: int = 400
    value_active: int = 21
    day_bits: int = 54  # 21 bits spanning 9.49 hours (NAB's time-of-day radius)
    day_active: int = 21
    columns: int = 2048
    active_columns: int = 40
    potential: float = 0.8
    sp_connected: float = 0.2
    sp_inc: float = 0.003
    sp_dec: float = 0.0005
    cells: int = 32
    activation: int = 13
    min_threshold: int = 10
    new_synapses: int = 20
    max_synapses: int = 32
    initial_perm: float = 0.21
    tm_connected: float = 0.5
    tm_inc: float = 0.1
    tm_dec: float = 0.1
    seed: int = 1956

    def __post_init__(self) -> None:
        if self.buckets < 1 or not 0.0 < self.min_resolution < math.inf:
            raise ValueError("buckets must be >= 1 and min_resolution a positive finite number")
        if not 0 < self.value_active <= self.value_bits or not 0 < self.day_active <= self.day_bits:
            raise ValueError("each encoder needs 0 < active <= bits")
        if not 0 < self.active_columns <= self.columns or self.cells < 1:
            raise ValueError("need 0 < active_columns <= columns and cells >= 1")
        if not 0 < self.min_threshold <= self.activation or self.new_synapses > self.max_synapses:
            raise ValueError("need 0 < min_threshold <= activation and new_synapses <= max_synapses")


@dataclass(frozen=True, slots=True)
class LikelihoodParams:
    """Ahmad et al.'s anomaly likelihood and when it raises: ``tail`` is their epsilon; an anomalous sample
    raises after ``rearm`` samples with none (``benchmarks/nab_htm.py`` declares the grid). ``spread``: the
    short mean is judged against the Gaussian of the raw scores (``"raw"``, the paper's equations) or of
    the earlier short means (``"mean"``, narrower: a short mean varies less than one raw score). The defaults
    are the grid's pick on tune OR-ed with the default detector (also its best on all files); the paper's
    own setting is ``spread="raw", tail=1e-5``, which raised nothing on NAB here."""

    short: int = 10
    history: int = 8640
    tail: float = 1e-4
    rearm: int = 300
    spread: str = "mean"
    min_std: float = 0.01  # a perfectly predicted stretch has no spread; one unpredicted step is then news

    def __post_init__(self) -> None:
        if self.short < 1 or self.history < 2 or self.rearm < 1 or not 0.0 < self.tail < 0.5:
            raise ValueError("need short >= 1, history >= 2, rearm >= 1 and tail in (0, 0.5)")
        if self.spread not in ("raw", "mean"):
            raise ValueError("spread must be 'raw' (the raw scores' Gaussian) or 'mean' (the short means')")
        if not 0.0 < self.min_std < math.inf:
            raise ValueError("min_std must be a positive finite number")


def _hash_bits(keys: IntArray, bits: int, seed: int) -> IntArray:
    """A fixed pseudo-random bit position in ``[0, bits)`` for each integer key (splitmix64's finaliser)."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) * _MIX + np.uint64(seed)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(bits)).astype(np.int64)


class ScalarEncoder:
    """Random distributed scalar encoder: near values share bits, far ones (almost) none; no edges."""

    LIMIT = 2**40  # buckets beyond it share the edge bucket (a float's range exceeds int64's)

    def __init__(self, bits: int, active: int, resolution: float, offset: float, seed: int) -> None:
        self.bits, self.active, self.resolution, self.offset, self.seed = (
            bits,
            active,
            resolution,
            offset,
            seed,
        )

    def bucket(self, value: float) -> int:
        """The bucket of ``value``."""
        b = round(max(min((value - self.offset) / self.resolution, self.LIMIT), -self.LIMIT))
        return int(b)

    def encode(self, value: float) -> IntArray:
        """The active bit positions of ``value`` (sorted, without repeats)."""
        start = self.bucket(value) + self.LIMIT
        return np.unique(_hash_bits(np.arange(start, start + self.active), self.bits, self.seed))


def day_encoding(timestamp: float, bits: int, active: int) -> IntArray:
    """Periodic time-of-day encoding: ``active`` contiguous bits of ``bits``, wrapping at midnight (UTC)."""
    start = int((timestamp % SECONDS_PER_DAY) / SECONDS_PER_DAY * bits)
    return np.sort((start + np.arange(active)) % bits)


class SpatialPooler:
    """Cui, Ahmad and Hawkins' spatial pooler with global inhibition and no boosting. Permanences are kept
    column x input bit (a winner's row is contiguous to learn on), the connected synapses input bit x column
    (an overlap sums the active bits' rows)."""

    def __init__(self, inputs: int, params: HtmParams, rng: np.random.Generator) -> None:
        p = self.params = params
        potential = rng.random((inputs, p.columns)) < p.potential
        spread = rng.uniform(p.sp_connected - 0.1, p.sp_connected + 0.1, (inputs, p.columns))
        perm = np.where(potential, np.clip(spread, 0.0, 1.0), 0.0).astype(np.float32)
        self.potential = np.ascontiguousarray(potential.T)
        self.perm = np.ascontiguousarray(perm.T)
        self.connected = perm >= p.sp_connected
        self.tiebreak = rng.random(p.columns) * 0.5  # below 1: breaks ties only

    def overlap(self, active_inputs: IntArray) -> FloatArray:
        """Each column's connected synapses on the active input bits."""
        counts: FloatArray = self.connected[active_inputs].sum(axis=0, dtype=np.float64)
        return counts

    def compute(self, active_inputs: IntArray, learn: bool = True) -> IntArray:
        """The winning columns for the active input bits (sorted); learns on them when ``learn``."""
        p = self.params
        overlap = self.overlap(active_inputs) + self.tiebreak
        winners = np.sort(np.argpartition(-overlap, p.active_columns - 1)[: p.active_columns])
        if learn:
            change = np.full(self.perm.shape[1], -p.sp_dec, np.float32)
            change[active_inputs] = p.sp_inc
            rows = self.perm[winners] + change * self.potential[winners]
            np.clip(rows, 0.0, 1.0, out=rows)
            self.perm[winners] = rows
            self.connected[:, winners] = (rows >= p.sp_connected).T
        return winners


class HtmModel:
    """Encoder, spatial pooler and temporal memory for one series: ``step`` gives the raw anomaly score."""

    def __init__(self, resolution: float, offset: float, params: HtmParams | None = None) -> None:
        p = self.params = params or HtmParams()
        rng = np.random.default_rng(p.seed)
        self.encoder = ScalarEncoder(p.value_bits, p.value_active, resolution, offset, p.seed)
        self.pooler = SpatialPooler(p.value_bits + p.day_bits, p, rng)
        self.memory = TemporalMemory(p, rng)

    def encode(self, value: float, timestamp: float) -> IntArray:
        """The input bits of one sample: the value's, then the time of day's."""
        p = self.params
        day = day_encoding(timestamp, p.day_bits, p.day_active) + p.value_bits
        return np.concatenate([self.encoder.encode(value), day])

    def step(self, value: float, timestamp: float) -> float:
        """Learn one sample; its raw anomaly score (the share of its active columns not predicted)."""
        return self.memory.compute(self.pooler.compute(self.encode(value, timestamp)))


def raw_scores(
    values: FloatArray, timestamps: FloatArray, warmup: int, params: HtmParams | None = None
) -> FloatArray:
    """Raw anomaly scores of one series, the encoder's resolution learned over the first ``warmup`` samples
    (see the module's docstring). NaN and infinite samples are skipped (score 0, no state change)."""
    p = params or HtmParams()
    finite = np.isfinite(values)
    scores = np.zeros(values.size)
    head = np.flatnonzero(finite[:warmup])
    if values.size <= warmup or not head.size:
        return scores
    seen = values[head]
    resolution = max(float(seen.max() - seen.min()) / p.buckets, p.min_resolution)
    model = HtmModel(resolution, float(seen[0]), p)
    for i in np.flatnonzero(finite).tolist():
        scores[i] = model.step(float(values[i]), float(timestamps[i]))
    return scores


def _window_sums(series: FloatArray, first: IntArray) -> tuple[FloatArray, FloatArray]:
    """Per sample ``t``, the sum and the sum of squares of ``series[first[t] : t + 1]``."""
    t = np.arange(series.size)
    sums = np.concatenate([[0.0], np.cumsum(series)])
    squares = np.concatenate([[0.0], np.cumsum(series * series)])
    return sums[t + 1] - sums[first], squares[t + 1] - squares[first]


def likelihood_tail(raw: FloatArray, warmup: int, params: LikelihoodParams) -> FloatArray:
    """Per sample, ``Q(z)`` (one minus the anomaly likelihood): the short mean of the raw scores against the
    Gaussian of the last ``history`` raw scores (or short means) from the learning period's end
    (``warmup // 2``) on; 1 where fewer than two of them are known."""
    t = np.arange(raw.size)
    total, _ = _window_sums(raw, np.maximum(t + 1 - params.short, 0))
    recent = total / np.minimum(t + 1, params.short)
    series = raw if params.spread == "raw" else recent
    first = np.maximum(warmup // 2, t + 1 - params.history)
    count = t + 1 - first
    total, squares = _window_sums(series, np.minimum(first, t + 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        var = (squares - count * mean * mean) / (count - 1)
    std = np.maximum(np.sqrt(np.maximum(np.nan_to_num(var), 0.0)), params.min_std)
    z = np.nan_to_num((recent - mean) / std)
    tail = np.array([0.5 * math.erfc(v / math.sqrt(2.0)) for v in z.tolist()])
    return np.where(count >= 2, tail, 1.0)


def likelihood_alerts(raw: FloatArray, warmup: int, params: LikelihoodParams | None = None) -> BoolArray:
    """Alerts from raw scores: a sample whose likelihood reaches ``1 - tail`` after the warm-up raises when
    none did in the ``rearm`` samples before it (the re-arm counts from the last anomalous sample)."""
    p = params or LikelihoodParams()
    anomalous = likelihood_tail(raw, warmup, p) <= p.tail
    anomalous[:warmup] = False
    raised = np.zeros(raw.size, np.bool_)
    last = -p.rearm
    for i in np.flatnonzero(anomalous).tolist():
        raised[i] = i - last >= p.rearm
        last = i
    return raised
