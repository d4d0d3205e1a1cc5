"""The ``thermal`` detector: a GPU hotter than its own power draw explains (a failing cooler).

Temperature follows power through a thermal resistance and a lag of tens of seconds, so neither raw series
works alone: temperature moves with every workload change, and an idle GPU whose cooling fails shows no
clock slowdown until it is far too late (it never reaches the throttle point). Per GPU, this detector keeps
an online ridge regression of temperature on lagged power (exponentially weighted moments) and scores how far
the temperature is *above* what the power predicts, in units of the usual error (at least
``min_deviation`` degrees). A sample above the band at a power it has learnt at, or below it while the
samples have been hot since one there, teaches the regression nothing (others are winsorised at the band),
so a runaway never becomes the new normal, not even once the heat throttles the GPU to a power it never ran
at: its alert lasts while the GPU runs hot and resolves once the temperature is back where the power puts it.
Above any power its own line scored at (a GPU seen only idle starts its first job), the line is the ridge's
guess, unscored until the power has stayed there ``settle_seconds`` (the temperature may lag it longer than
``lag_seconds``) and the line learnt from it is within half a band: where at least ``min_peers`` GPUs of its
model (``peer_labels``) learnt their slope over a wide power range their own lines scored at (and are not
above it themselves), the sample is scored against their median slope instead, so a cooler failing at its
first job is seen (without such peers, once the power has stayed there ``settle_seconds``: a temperature
still climbing then is a failing cooler's). The temperature may lag its power up to a fifth of
``settle_seconds``: once the power has fallen, a sample is judged against the temperature a GPU of that lag
would still have (``_cooling``), so a GPU cooling down after a burst is not read hot.

State is kept in arrays by slot, one slot per temperature series scored (given on its first score, freed
when the series is forgotten): indexed by series id, they reached the highest temperature id, so six GPUs
numbered after 200,000 other series held 20 MB. Power rows are joined on ``key_label`` (``UUID``), and the
temperature series' slots looked up, once, and reused while both queries keep the same series. A forgotten
series' state is parked by its GPU (``key_label``) for a day, and taken up again when that GPU reports under
a new series (its node back from an outage longer than the service's ``forget_after_seconds``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import numpy as np

from anomaly.detectors import Findings
from anomaly.needs import POWER, TEMP
from anomaly.parked import ParkedRows
from anomaly.series import Step, View
from anomaly.slots import Slots
from anomaly.snapshot import State
from anomaly.steps import unlearned
from anomaly.thresholds import MAD_TO_SIGMA, BoolArray, FloatArray, IntArray
from gpuwarden.model import RecommendedAction

_INT_BYTES = sys.getsizeof(2**40)  # a series id or slot as a Python int in the map
# A node down longer than this was out for repair (a cooler or the GPU's board replaced): learnt anew.
_PARKED_SECONDS = 86_400.0
_SETTLED_LAGS = 5.0  # lags after which a first-order lag is within 1 % of its step (e**-5 = 0.7 %)
_FIELDS = (
    "n",
    "last",
    "lagged",
    "slow",
    "cooling",
    "mp",
    "mt",
    "mpp",
    "mpt",
    "dev",
    "pmin",
    "pmax",
    "ptop",
    "held_for",
    "hot_at",
    "hot_in",
    "risen_at",
    "settled_t",
    "settled_p",
    "pbot",
    "fell_at",
    "low_t",
    "low_p",
    "rest_t",
    "rest_p",
)


class ThermalDetector:
    """Temperature against lagged power, per GPU, vectorised."""

    name = "thermal"

    def __init__(
        self,
        temp_query: str = TEMP,
        power_query: str = POWER,
        *,
        key_label: str = "UUID",
        lag_seconds: float = 20.0,
        alpha: float = 0.01,
        k: float = 6.0,
        min_deviation: float = 3.0,
        ridge_watts: float = 10.0,
        warmup: int = 60,
        hold_seconds: float = 6 * 3600.0,
        peer_labels: Sequence[str] = ("modelName",),
        min_peers: int = 3,
        peer_tolerance: float = 0.25,
        settle_seconds: float = 600.0,
    ) -> None:
        self.temp_query, self.power_query, self.key_label = temp_query, power_query, key_label
        self.lag_seconds, self.alpha, self.k = lag_seconds, alpha, k
        self.min_deviation, self.ridge, self.warmup = min_deviation, ridge_watts**2, warmup
        self.ridge_watts, self.hold_seconds = ridge_watts, hold_seconds
        self.peer_labels, self.min_peers, self.peer_tolerance = tuple(peer_labels), min_peers, peer_tolerance
        self.settle_seconds = settle_seconds
        self.n = np.zeros(0)
        self.last = np.zeros(0)
        self.lagged = np.zeros(0)
        self.slow = np.zeros(0)  # its power lagged by the longest lag it allows for (``_slowest_lag``)
        self.cooling = np.zeros(0)  # the temperature a GPU of the slowest lag would have (``_cooling``)
        self.mp = np.zeros(0)
        self.mt = np.zeros(0)
        self.mpp = np.zeros(0)
        self.mpt = np.zeros(0)
        self.dev = np.zeros(0)
        self.pmin = np.zeros(0)  # the lagged power range it learnt at (from samples inside the band)
        self.pmax = np.zeros(0)
        self.ptop = np.zeros(0)  # the highest of it reached by a scored sample (not by guesses alone)
        self.held_for = np.zeros(0)  # the seconds its current hold has been hot (the samples' gaps summed)
        self.hot_at = np.zeros(0)  # its last sample above the band at a learnt power
        self.hot_in = np.zeros(0)  # its current run of hot samples' last score where it began inside the
        # learnt range (or carried on there, ``_carried``), else 0
        self.risen_at = np.zeros(0)  # when its power rose above any its line scored at (0: it is not)
        self.settled_t = np.zeros(0)  # its temperature and lagged power when that power had stayed there
        self.settled_p = np.zeros(0)  # ``settle_seconds`` (``_climbing``)
        self.pbot = np.zeros(0)  # the lowest power a scored sample learnt at (``ptop``'s other end)
        self.fell_at = np.zeros(0)  # when its power fell below any its line scored at (0: it is not)
        self.low_t = np.zeros(0)  # the lowest temperature it cooled to there, and its power lagged at the
        self.low_p = np.zeros(0)  # slowest lag then (``_rewarming``)
        self.rest_t = np.zeros(0)  # the temperature it settled at, at the lowest power it settled at in no
        self.rest_p = np.zeros(0)  # hot run, and that power lagged (0: none yet; ``_rested``)
        self._join: tuple[IntArray, IntArray, IntArray, IntArray, IntArray, IntArray] | None = None
        self._slot: Slots[int] = Slots()  # temperature series id <-> its row of the arrays
        self._gpu: list[str | None] = []  # each slot's GPU (``key_label``), to park its state when forgotten
        self._parked = ParkedRows(_PARKED_SECONDS)  # forgotten GPUs' state, by ``key_label``

    def _grow(self, needed: int) -> None:
        if needed <= self.n.size:
            return
        size = max(needed, 2 * self.n.size, 64)
        for name in _FIELDS:
            old = getattr(self, name)
            new = np.zeros(size)
            new[: old.size] = old
            setattr(self, name, new)

    def fit(self, view: View) -> None:
        """Online: nothing to refit."""

    def state_bytes(self) -> int:
        """Bytes of per-GPU state held: its arrays, a slot per temperature series scored (64 at least), the
        map of series ids to slots (its table and two integers an entry, and the list of slots' ids), each
        slot's GPU, and the state parked for forgotten GPUs."""
        index, keys = self._slot.index, self._slot.keys
        slots = sys.getsizeof(index) + _INT_BYTES * 2 * len(index) + sys.getsizeof(keys)
        gpus = sys.getsizeof(self._gpu)  # its strings are the labels' own
        arrays = sum(int(getattr(self, name).nbytes) for name in _FIELDS)
        return slots + gpus + arrays + self._parked.nbytes()

    def state(self) -> State:
        """Each slot's line and its temperature series id, each slot's GPU, and the state parked for
        forgotten GPUs (``anomaly.snapshot``)."""
        sids = np.array([-1 if sid is None else sid for sid in self._slot.keys], np.int64)
        parked, parked_arrays = self._parked.state(np.float64, len(_FIELDS))
        arrays = {name: getattr(self, name).copy() for name in _FIELDS}
        arrays.update(slot_series=sids, **parked_arrays)
        meta = {"free": self._slot.freed(), "gpus": list(self._gpu), "parked": parked}
        return State(meta, arrays)

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()``)."""
        rows = state.arrays["n"].shape[0]
        for name in _FIELDS:
            if state.arrays[name].shape != (rows,):
                raise ValueError(f"thermal {name}: shape {state.arrays[name].shape}, not ({rows},)")
        parked = ParkedRows.restored(
            _PARKED_SECONDS,
            "thermal",
            state.meta["parked"],
            state.arrays,
            dtype=np.float64,
            width=len(_FIELDS),
        )
        sids = state.arrays["slot_series"].tolist()
        self._slot = Slots.restored(
            [None if s < 0 else int(s) for s in sids], [int(i) for i in state.meta["free"]]
        )
        for name in _FIELDS:
            setattr(self, name, np.asarray(state.arrays[name], np.float64))
        self._gpu = [None if g is None else str(g) for g in state.meta["gpus"]]
        self._parked = parked
        self._join = None

    def judged_by(self, query: str) -> tuple[str, ...]:
        """The queries its alerts are judged by: temperature and power, read together or not at all."""
        return (self.temp_query, self.power_query)

    def forget(self, ids: IntArray) -> None:
        """Park the state of vanished series by GPU and free their slots (the cached join may name them).

        A node down longer than the service's ``forget_after_seconds`` lost its GPUs' lines: back, each
        warmed up anew and learnt what it read then for good, a cooler that failed while the node was down
        (the GPU at 100 C) included. A line is its GPU's hardware's: the same GPU, back, takes it up again."""
        if ids.size:
            self._join = None
        slots = [slot for sid in ids.tolist() if (slot := self._slot.index.get(sid)) is not None]
        for slot in slots:
            gpu, self._gpu[slot] = self._gpu[slot], None
            if gpu is not None and self.n[slot] > 0:
                row = np.array([getattr(self, name)[slot] for name in _FIELDS])
                # At most as many GPUs as it has slots (502 B a GPU parked, 200 B a slot): 2.5x its state.
                self._parked.park(gpu, float(self.last[slot]), row, self.n.size)
            self._slot.free(slot)
        self.n[slots] = 0

    def _unpark(self, slots: IntArray, labels: Sequence[Mapping[str, str]], at: float) -> None:
        """Give each slot new to its series the state its GPU had when it was forgotten, if any was parked."""
        self._gpu += [None] * (self.n.size - len(self._gpu))
        for slot, lab in zip(slots.tolist(), labels, strict=True):
            # An empty key names no GPU: parked under "", one GPU's line went to another's next series.
            if self._gpu[slot] is not None or not (gpu := lab.get(self.key_label)):
                continue
            self._gpu[slot] = gpu
            row = self._parked.take(gpu, at)
            if row is not None:
                for name, value in zip(_FIELDS, row.tolist(), strict=True):
                    getattr(self, name)[slot] = value

    def _slots(self, ids: IntArray) -> IntArray:
        """The slot of each temperature series id, a free one (or a new one) for an id not scored yet."""
        out = np.empty(ids.size, np.int64)
        for i, sid in enumerate(ids.tolist()):
            slot = self._slot.index.get(sid)
            out[i] = self._slot.take(sid) if slot is None else slot
        self._grow(int(out.max(initial=-1)) + 1)
        return out

    def _rows(self, temp: Step, power: Step) -> tuple[IntArray, IntArray, IntArray, IntArray]:
        """Rows of ``temp``, the matching rows of ``power`` (same key label), the temperature rows' slots and
        peer groups."""
        j = self._join
        if j is not None and _same(j[0], temp.ids) and _same(j[1], power.ids):
            return j[2], j[3], j[4], j[5]
        where = {lab.get(self.key_label): i for i, lab in enumerate(power.labels)}
        pairs = [(i, where.get(lab.get(self.key_label))) for i, lab in enumerate(temp.labels)]
        kept = [(i, p) for i, p in pairs if p is not None]
        rows_t = np.array([i for i, _ in kept], np.int64)
        rows_p = np.array([p for _, p in kept], np.int64)
        slots = self._slots(temp.ids[rows_t])
        labels = [temp.labels[i] for i in rows_t.tolist()]
        self._unpark(slots, labels, temp.at)
        groups = self._groups(labels)
        self._join = (temp.ids, power.ids, rows_t, rows_p, slots, groups)
        return rows_t, rows_p, slots, groups

    def _groups(self, labels: Sequence[Mapping[str, str]]) -> IntArray:
        """Each GPU's peer group (its model, ``peer_labels``), -1 for one that lacks them: it has no peers."""
        codes: dict[tuple[str, ...], int] = {}
        keys = [tuple(lab.get(name, "") for name in self.peer_labels) for lab in labels]
        return np.array([codes.setdefault(k, len(codes)) if all(k) else -1 for k in keys], np.int64)

    def detect(self, view: View) -> list[Findings]:
        """Score the newest temperature of every GPU that also reports power."""
        temp, power = view.latest.get(self.temp_query), view.latest.get(self.power_query)
        if temp is None or power is None or not temp.labels or not power.labels:
            return []
        # Dropped by the time read, each tick: by the latest any slot had read when a series was forgotten,
        # nothing was dropped while none was, and after a clock set back a day (a freed slot held the time
        # read before) every GPU parked was dropped as it was parked.
        self._parked.expire(temp.at)
        rows_t, rows_p, slots, groups = self._rows(temp, power)
        x_t, x_p = temp.value[rows_t], power.value[rows_p]
        # A GPU warmer than the room draws power: 0 W is a reading lost (dcgm-exporter's stale zeros), not a
        # sample. Scored, a GPU run at 70-400 W read 0 W for 5 minutes, idle, and scored 1.3 for all of them.
        ok = np.flatnonzero(np.isfinite(x_t) & np.isfinite(x_p) & (x_p > 0.0))
        rows, t, p = rows_t[ok], x_t[ok], x_p[ok]
        wild = slots[ok][_wild(temp, power, rows_t, rows_p)[ok]]
        with unlearned([getattr(self, name) for name in _FIELDS], wild):
            score, judged_ok = self._update(slots[ok], groups[ok], t, p, temp.at)
        full, judged = np.zeros(len(temp.labels)), np.zeros(len(temp.labels), np.bool_)
        full[rows], judged[rows] = score, judged_ok
        return [
            Findings(
                detector=self.name,
                query=self.temp_query,
                labels=temp.labels,
                ids=temp.ids,
                score=full,
                value=temp.value,
                judged=judged,
                # It scores only heat above what the power explains: every alert is the hot side's, so a
                # recovery is its score back under 1, not half its peak while still hot (``_Firing``).
                # Sideless, a runaway read 4.3 at its stalled job's idle (46 C, its line 33 C) recovered
                # from 18, and the job's resumption re-raised its alert mid-fault (`eval_gpu_faults`).
                sign=np.ones(len(temp.labels)),
                action=RecommendedAction.INVESTIGATE,
                summary="the GPU runs hotter than its power draw explains (cooling failing?)",
            )
        ]

    def _update(
        self, slots: IntArray, groups: IntArray, t: FloatArray, p: FloatArray, at: float
    ) -> tuple[FloatArray, BoolArray]:
        n = self.n[slots]
        fresh = n == 0
        gap = at - self.last[slots]
        lagged = np.where(fresh, p, _lag(self.lagged[slots], p, gap, self.lag_seconds))
        mp, mt = np.where(fresh, lagged, self.mp[slots]), np.where(fresh, t, self.mt[slots])
        mpp = np.where(fresh, lagged * lagged, self.mpp[slots])
        mpt = np.where(fresh, lagged * t, self.mpt[slots])
        var = np.maximum(mpp - mp * mp, 0.0)
        slope = (mpt - mp * mt) / (var + self.ridge)
        yhat = mt + slope * (lagged - mp)
        resid = t - yhat
        dev = self.dev[slots]
        band = np.maximum(self.k * dev, self.min_deviation)
        pmin, pmax = np.where(fresh, lagged, self.pmin[slots]), np.where(fresh, lagged, self.pmax[slots])
        # Above any power it learnt at, the prediction is the ridge's guess: seen only idle, its slope is
        # near 0 and a job's warmth read as 40 C too hot. Such a sample is no evidence: scored 0 and learnt
        # unclipped (as in the warm-up), so the slope comes from it.
        ptop, pbot = np.where(fresh, lagged, self.ptop[slots]), np.where(fresh, lagged, self.pbot[slots])
        # Below any power it scored at, too: seen only in its job, its slope shrunk to near 0, a stalled job's
        # idle read 35 C under its line there, and a cooler failing at that idle (33 C to 46 C) scored 0.
        # Not while a hot run that began at a power it knows throttled it there (that runaway is held).
        held_for, hot_at, throttled = self._hold(slots, fresh)
        fallen, ongoing = self._fallen(
            slots, lagged, pbot, ~throttled, at=at, z=(resid / band, (t - self.low_t[slots]) / band)
        )
        above = (lagged > pmax + self.ridge_watts) | self._unsettled(
            slots, lagged, ptop, at=at, z=resid / band
        )
        # Its line errs high below: a temperature above even it there is hot all the same (scored as before:
        # a runaway whose stalled job resumed throttled at 275 W, 100 C, read 0 by its climb from 46 C alone).
        guess, warm = above | fallen, (n >= self.warmup) & ~above
        strict_own = np.where(warm, np.maximum(resid, 0.0) / band, 0.0)
        own = np.where(warm, self._cooling(slots, (t, p, gap), (yhat, lagged)) / band, 0.0)
        # Not scored there, a cooler failing at (or during) its first job was learnt as that job's normal
        # heat: already failed, never flagged; failing as it ran, flagged, then learnt within 35 minutes, the
        # GPU at 103 C. Where its model's other GPUs have learnt their slope over a wide power range, such a
        # sample is scored against that slope, drawn on from its own line at the top of what it scored at.
        # Without such peers, a cooler failing as its first job ran is no longer flagged either (it was for
        # 35 minutes): unscored until the power settles, its heat is learnt as the job's.
        peer, peer_score = self._peer_scores(
            groups, (n, var, slope, ptop, pmin, band), t, lagged, mt + slope * (ptop - mp)
        )
        climbing, climb = self._climbs(
            slots, (t, self.slow[slots], slope), guess & (n >= self.warmup), (fallen, ongoing)
        )
        score = np.where(peer, peer_score, np.where(climbing, np.maximum(climb / band, own), own))
        score, strict = self._carried(
            slots,
            (score, np.where(peer, peer_score, strict_own)),
            self._not_as_peers(
                (slots, groups), (t, lagged, band), lagged < pbot - self.ridge_watts, throttled
            ),
            held_for,
        )
        # Learn from the sample winsorised at the band, so a dip teaches little; a sample above the band (an
        # alert's) at a power it has learnt at teaches nothing. Taught at the band, the error scale grew by
        # (k - 1) * alpha a tick (the band is k of it) and the intercept by alpha bands: a runaway held at
        # 92 C scored under 1 within 8 minutes and its alert resolved while the GPU still cooked. At a power
        # it never learnt at (a GPU seen only idle starts a job) its prediction is a guess: it learns as
        # before, or that alert would never end. Only above what it learnt at: the ridge shrinks the slope
        # towards zero, so below that its prediction errs high, never low; and a failing cooler throttles
        # the GPU down to a power it never ran at (a runaway at 630 W fell to 275 W at 100 C in
        # `eval_gpu_faults`), where a lower bound let the runaway teach: it scored under 1 after 20
        # minutes (its alert resolved after 32), the GPU at 100 C.
        # Below it only while the samples have been hot since one inside it (the runaway, hot, throttled
        # down): a GPU whose idle power fell (a driver, a lowered cap, MIG) is no runaway and learns as
        # before (without it, a GPU run at 90-400 W whose idle power fell to 20 W, its temperature as it
        # was, was flagged for 6 hours).
        # Known (a hot sample there is held) up to the highest power a scored sample learnt at: one reached
        # by guesses alone is not, as the GPU's temperature lags its power longer than ``lag_seconds`` (60 s,
        # not 20): its first job's guesses learnt the climb, and the job read hot at a power it "knew", held
        # for the 6-hour hold (before guesses went unscored it was not held there: 26 minutes over 1). Nor is
        # one its line scored while the temperature still climbed there (``_unsettled``).
        known = (lagged <= ptop + self.ridge_watts) & ((lagged >= pmin - self.ridge_watts) | throttled)
        cap = np.where(warm, band, np.inf)
        # A guess errs low (the ridge shrinks the slope), so a temperature below even it is no heat curve but
        # a power reading that was not the GPU's (a counter glitch at 1,400 W): learnt whole, its leverage
        # dragged the slope down and a later job at a power within it read hot and was held. Down to the band.
        # Below any power it scored at, the guess errs high: a temperature under it is its idle, learnt whole.
        floor = np.where((n >= self.warmup) & ~fallen, band, np.inf)
        t_used = yhat + np.clip(resid, -floor, cap)
        # A hold is bounded: a GPU that runs hotter for good at the same power (a hotter room, a worse slot or
        # fan curve) would otherwise hold its alert forever; once it has been hot for ``hold_seconds`` it
        # learns as before. One hold lasts across quiet samples between (the same GPU cool at idle between its
        # jobs), until none was hot for ``hold_seconds``. It counts the time spent hot, not the time since its
        # first hot sample: a few noisy samples hours before a cooler failed would have used up its hold.
        # Hot against its peers, it teaches nothing either (nor stretches the power it learnt at), held as
        # at a power it knows: the hold's end lets a GPU that is only worse than its peers learn its heat.
        # Climbing, by its climb alone: below what it scored at, hot against its line at a power it does not
        # know is a GPU whose idle power fell, its temperature as it was (held, flagged 6 hours), as before.
        hot = ((score >= 1.0) & (known | peer)) | (climbing & (climb >= band))
        anew = (hot_at <= 0.0) | (at - hot_at >= self.hold_seconds)
        held_for = np.where(hot, np.where(anew, 0.0, held_for + np.maximum(gap, 0.0)), held_for)
        held = hot & (held_for < self.hold_seconds)
        self.held_for[slots], self.hot_at[slots] = held_for, np.where(hot, at, hot_at)
        # A run begun climbing from where its stalled GPU had cooled to began below what it knows: not a
        # runaway throttled there, judged by its climb while it lasts.
        self.hot_in[slots] = np.where(hot & (throttled | ((lagged >= pmin) & ~fallen)), score, 0.0)
        self._rested(slots, (t, lagged), fresh, (n >= self.warmup) & ~hot & ~throttled & (score < 1.0))
        # A sample let off as cooling, hot against its line, teaches it nothing either: taught at the band, a
        # GPU whose power swung every minute (a 90 s lag) taught its line a failing cooler's heat at each
        # swing down, and the runaway scored over 1 for 19 of 140 ticks (never 4 in a row) at 116 C.
        w = np.where(held | ((strict >= 1.0) & (score < 1.0)), 0.0, np.maximum(self.alpha, 1.0 / (n + 1.0)))
        # Only a sample its line explains at ``lag_seconds`` widens the powers it knows: one let off as
        # cooling (a GPU whose idle power fell, its temperature as it was, read so for its first 4 ticks) made
        # that power known, and its settled heat read hot there and was held, learning nothing.
        learnt = (strict < 1.0) | (peer & ~held)
        self.pmin[slots] = np.where(learnt, np.minimum(pmin, lagged), pmin)
        self.pmax[slots] = np.where(learnt, np.maximum(pmax, lagged), pmax)
        # A power is known once its own line, not only its peers', scored a sample there under 1. In the
        # warm-up, once a sample there is no guess: a job begun in its last 5 minutes (a 90 s lag) made its
        # power known while the temperature climbed, and its settled heat read hot there, held 6 hours.
        scored = learnt & ((warm & ~fallen & (strict_own < 1.0)) | ((n < self.warmup) & ~guess))
        self.ptop[slots], self.pbot[slots] = (
            np.where(scored, np.maximum(ptop, lagged), ptop),
            np.where(scored, np.minimum(pbot, lagged), pbot),
        )
        self.mp[slots] = mp + w * (lagged - mp)
        self.mt[slots] = mt + w * (t_used - mt)
        self.mpp[slots] = mpp + w * (lagged * lagged - mpp)
        self.mpt[slots] = mpt + w * (lagged * t_used - mpt)
        # A guess's error is the guess's, not the GPU's: it leaves the error scale as it was.
        self.dev[slots] = np.where(
            fresh, 0.0, np.where(guess, dev, dev + w * (np.minimum(np.abs(resid), cap) - dev))
        )
        self.lagged[slots] = lagged
        self.last[slots] = at
        self.n[slots] = n + 1
        # Which it judged: a warm-up sample, or a guess neither its peers nor its climb judge, is scored 0 as
        # no evidence, no quiet read (``Findings.judged``): taken for one, a runaway whose job moved to a
        # heavier power recovered, and read back at its old power re-raised its alert mid-fault. Below what
        # it scored at, its line (erring high) judges only a sample hot against it.
        return score, (warm & ~fallen) | peer | climbing | (score >= 1.0)

    def _cooling(
        self,
        slots: IntArray,
        sample: tuple[FloatArray, FloatArray, FloatArray],
        line: tuple[FloatArray, FloatArray],
    ) -> FloatArray:
        """How far the temperature is above what its power explains, cooling allowed for: once its power has
        fallen, above the temperature a GPU of the slowest lag would still have (from where it was when the
        power fell, towards its line), else above its line.

        At a 90 s lag (the detector assumes 20 s) a healthy GPU cooling down after a 3-minute burst read up to
        3.9 at idle for 4 ticks, an alert raised. Its line, learnt from the burst's lagging climb, is too
        flat to say how warm the burst left it; where it was when the power fell does. A failing cooler's
        heat does not decay to the line, and a hot sample's (a runaway throttled from 186 C to 118 C, still
        70 C above its line) is none to decay from."""
        t, p, gap = sample
        yhat, lagged = line
        slow = np.where(self.n[slots] == 0, p, _lag(self.slow[slots], p, gap, self._slowest_lag()))
        self.slow[slots] = slow
        hot_at = self.hot_at[slots]
        fell = (slow > lagged + self.ridge_watts) & ~((hot_at > 0.0) & (hot_at >= self.last[slots]))
        decay = np.exp(-np.maximum(gap, 0.0) / self._slowest_lag())
        cooling = yhat + np.maximum(self.cooling[slots] - yhat, 0.0) * decay
        self.cooling[slots] = np.where(fell, cooling, t)
        return np.maximum(t - np.where(fell, cooling, yhat), 0.0)

    def _climbing(
        self, slots: IntArray, sample: tuple[FloatArray, FloatArray, FloatArray], guess: BoolArray
    ) -> tuple[BoolArray, FloatArray]:
        """Which samples are still a ``guess`` though their power has stayed above any their line scored at
        for ``settle_seconds`` (and not risen since), and how far their temperature is above the one it had
        then, moved by their line's slope for the power since (a throttled GPU draws less), both powers
        lagged at the slowest lag it allows for (a swing up and back leaves the GPU warm a while).

        Its line learns a first job's heat until it is within half a band, so a cooler failing as the job ran
        (twice worse over 30 minutes, no peers to vouch for a slope) was learnt as the job's heat while the
        GPU climbed to 108 C, never scored. A healthy GPU's temperature has settled by then (5 of the slowest
        lags); a failing cooler's keeps climbing."""
        t, slow, slope = sample
        risen = self.risen_at[slots]
        before = (risen > 0.0) & (self.last[slots] - risen >= self.settle_seconds)
        settled_t = np.where(before, self.settled_t[slots], t)
        settled_p = np.where(before, self.settled_p[slots], slow)
        self.settled_t[slots], self.settled_p[slots] = settled_t, settled_p
        climb = t - settled_t - np.maximum(slope, 0.0) * (slow - settled_p)
        return guess & before & (slow <= settled_p + self.ridge_watts), np.maximum(climb, 0.0)

    def _hold(self, slots: IntArray, fresh: BoolArray) -> tuple[FloatArray, FloatArray, BoolArray]:
        """Its hold so far: the seconds it has been hot, its last hot sample, and whether the sample before
        was hot in a run begun at a power it knows (a runaway throttles its GPU down to a power it never ran
        at: held there as at a power it knows)."""
        held_for = np.where(fresh, 0.0, self.held_for[slots])
        hot_at = np.where(fresh, 0.0, self.hot_at[slots])
        return held_for, hot_at, (hot_at > 0.0) & (hot_at >= self.last[slots]) & (self.hot_in[slots] > 0.0)

    def _carried(
        self,
        slots: IntArray,
        scores: tuple[FloatArray, FloatArray],
        below: BoolArray,
        held_for: FloatArray,
    ) -> tuple[FloatArray, FloatArray]:
        """The samples' scores and strict scores (``scores``), a runaway's run of hot samples carried on
        ``below`` any power their line scored at, right after a hot sample of a run begun at a power it knows
        (``_hold``'s throttled), where the line errs high and cannot tell a failed cooler from a healthy one:
        a sample read cool there is scored as that run's last (``hot_in``) while its hold lasts and once hot
        for the slowest lag it allows for (held_for: the GPU's heat, not a reading's spike), until its power
        is back where its line judges it, or its peers at that power (or, too few, its own rest there) read it
        as cool (``_not_as_peers``).

        A runaway hot at its job's power (97 C at 265 W, throttled) whose job stalled at 70 W (another
        node down) cooled to 46 C, 13 C above a healthy GPU's 33 C, far under the 68 C its line drew
        there: read 0 for the whole stall, its alert resolved after 12 minutes (a shorter stall: recovered,
        re-raised when the job resumed), the cooler still failed."""
        score, strict = scores
        carried = below & (held_for >= self._slowest_lag()) & (held_for < self.hold_seconds)
        score = np.where(carried & (score < 1.0), self.hot_in[slots], score)
        return score, np.where(carried, score, strict)

    def _not_as_peers(
        self,
        rows: tuple[IntArray, IntArray],
        sample: tuple[FloatArray, FloatArray, FloatArray],
        below: BoolArray,
        throttled: BoolArray,
    ) -> BoolArray:
        """Which samples of a hot run (``_hold``'s ``throttled``) ``below`` any power their line scored at
        are not as cool as their peers: hotter, their band allowed, than the median of at least
        ``min_peers`` GPUs of their model (``peer_labels``) at their power (within ``ridge_watts``, lagged)
        and in no such run; with too few such peers, not as cool as the GPU itself was at rest there
        (``_not_as_rested``). ``rows``: the samples' slots and peer groups.

        Where its line cannot judge, its peers can: a healthy GPU (a fan's 4-minute hiccup at its job's power,
        over as the job stalled) idled at its peers' 33 C, yet its hot run was carried (``_carried``) through
        the whole stall, an alert held on a healthy GPU (resolved 12 minutes into the stall before the carry).
        A runaway idles 13 C above them."""
        slots, groups = rows
        t, lagged, band = sample
        out = self._not_as_rested(slots, sample, below & throttled)
        if np.count_nonzero(~throttled) < self.min_peers:  # a fleet all in hot runs: none to ask
            return out
        for i in np.flatnonzero(below & throttled & (groups >= 0)).tolist():
            near = ~throttled & (groups == groups[i]) & (np.abs(lagged - lagged[i]) <= self.ridge_watts)
            if np.count_nonzero(near) >= self.min_peers:
                out[i] = t[i] > float(np.median(t[near])) + band[i]
        return out

    def _not_as_rested(
        self, slots: IntArray, sample: tuple[FloatArray, FloatArray, FloatArray], carried: BoolArray
    ) -> BoolArray:
        """Which samples of ``carried`` (a hot run below any power their line scored at) are not as cool as
        their GPU itself was at rest at that power (within ``ridge_watts``, lagged) before: hotter, their band
        allowed, than the temperature it settled at there in no hot run (``_rested``), or with no such rest.

        A lone GPU (too few peers of its model at its power, or none) was carried by ``_carried`` on the
        word of no one: repaired while its job stalled (or its node was down), it idled at the 33 C it had
        read at 70 W before the runaway, yet its alert was held (at 4.2, or 11.6) until the job resumed or
        the 6-hour hold ended. Its line cannot judge there (below any power it scored at it errs high: 6 hours
        in its job after that rest, it drew 59 C), but its own rest can, as its peers would: a failed cooler
        idles 13 C above it (46 C)."""
        t, lagged, band = sample
        rest_t, rest_p = self.rest_t[slots], self.rest_p[slots]
        known = carried & (rest_p > 0.0) & (np.abs(lagged - rest_p) <= self.ridge_watts)
        return np.where(known, t > rest_t + band, carried)

    def _rested(
        self,
        slots: IntArray,
        sample: tuple[FloatArray, FloatArray],
        fresh: BoolArray,
        quiet: BoolArray,
    ) -> None:
        """Keep each GPU's rest: the temperature of its newest ``quiet`` sample (warm, in no hot run, not hot)
        whose power has settled (lagged at ``lag_seconds`` and at the slowest lag it allows for, within
        ``ridge_watts``: a GPU of that lag has then cooled to it) at a power no higher than its rest's (within
        ``ridge_watts``), and that power; a fresh slot has none (a freed slot's is another GPU's)."""
        t, lagged = sample
        rest_p = np.where(fresh, 0.0, self.rest_p[slots])
        settled = quiet & (np.abs(self.slow[slots] - lagged) <= self.ridge_watts)
        rest = settled & ((rest_p <= 0.0) | (lagged <= rest_p + self.ridge_watts))
        self.rest_t[slots] = np.where(rest, t, np.where(fresh, 0.0, self.rest_t[slots]))
        self.rest_p[slots] = np.where(rest, lagged, rest_p)

    def _climbs(
        self,
        slots: IntArray,
        sample: tuple[FloatArray, FloatArray, FloatArray],
        guess: BoolArray,
        fallen: tuple[BoolArray, BoolArray],
    ) -> tuple[BoolArray, FloatArray]:
        """Which guesses are judged by their temperature's climb, above the power its line scored at
        (``_climbing``) or below it (``_rewarming``; ``fallen``: ``_fallen``'s), and that climb."""
        climbing, climb = self._climbing(slots, sample, guess)
        rewarming, rise = self._rewarming(slots, sample, fallen[0] & guess, fallen[1])
        return climbing | rewarming, np.where(rewarming, rise, climb)

    def _fallen(
        self,
        slots: IntArray,
        lagged: FloatArray,
        pbot: FloatArray,
        free: BoolArray,
        *,
        at: float,
        z: tuple[FloatArray, FloatArray],
    ) -> tuple[BoolArray, BoolArray]:
        """Which samples are below any power their line scored at (``free``: not a runaway throttled there)
        and still a guess there, and which of them fell before this sample (``_rewarming`` has a temperature
        to climb from): a guess until the power has stayed below it for ``settle_seconds``, the line (learnt
        from them) is within half a band of the sample either side (it errs high there, and so hides heat),
        and the temperature is within half a band of the lowest it cooled to (``z``: both in bands).

        Learnt whole, a cooler failing as the job stalled taught the line its climb while it was under a
        band: settled there once the power had stayed down 10 minutes, the line scored it 0.4, the GPU
        climbing on."""
        line, climb = z
        fell = self.fell_at[slots]
        below = (lagged < pbot - self.ridge_watts) & free
        ongoing = below & (fell > 0.0)
        fell = np.where(below, np.where(ongoing, fell, at), 0.0)
        self.fell_at[slots] = fell
        settled = (at - fell >= self.settle_seconds) & (np.abs(line) < 0.5) & (~ongoing | (climb < 0.5))
        return below & ~settled, ongoing

    def _rewarming(
        self,
        slots: IntArray,
        sample: tuple[FloatArray, FloatArray, FloatArray],
        fallen: BoolArray,
        ongoing: BoolArray,
    ) -> tuple[BoolArray, FloatArray]:
        """Which ``fallen`` samples are judged by how far their temperature has climbed from the lowest it
        cooled to since, moved by their line's slope for the power since (lagged at the slowest lag it allows
        for), and that climb. A rise of that power (a job resuming warms its GPU) starts it again from there.

        Seen only in its job, a GPU whose job stalled (another node of it down) idles below any power its
        line scored at, where the line, its slope shrunk by the ridge, drew 67 C over its 33 C: a cooler
        failing there (46 C at idle) scored 0. A healthy GPU only cools while its power stays down."""
        t, slow, slope = sample
        low_t, low_p = self.low_t[slots], self.low_p[slots]
        rose = slow > low_p + self.ridge_watts
        anew = ~ongoing | rose | (t <= low_t)
        low_t, low_p = np.where(anew, t, low_t), np.where(anew, slow, low_p)
        self.low_t[slots], self.low_p[slots] = low_t, low_p
        # Allowed for as it rises only: a GPU quicker than the slowest lag cooled while that power fell on.
        climb = t - low_t - np.maximum(slope, 0.0) * np.maximum(slow - low_p, 0.0)
        return fallen & ongoing & ~rose, np.maximum(climb, 0.0)

    def _slowest_lag(self) -> float:
        """The longest lag of temperature behind power it allows for: a power counts as settled after
        ``settle_seconds``, 5 lags of it (a first-order lag is then within 1 % of its step)."""
        return max(self.lag_seconds, self.settle_seconds / _SETTLED_LAGS)

    def _unsettled(
        self, slots: IntArray, lagged: FloatArray, ptop: FloatArray, *, at: float, z: FloatArray
    ) -> BoolArray:
        """Which samples are above any power their line scored at and still a guess there: until the power
        has stayed above it for ``settle_seconds`` and the line (learnt from them) is within half a band.

        The temperature may lag its power longer than ``lag_seconds`` (60-120 s, not 20): the samples of
        its climb, and of a short burst, sit under the line a settled temperature draws. Scored there, the
        line that learnt them made the power "known" while the temperature was still rising, and the job's
        settled heat read hot at it and was held (235-237 of 240 ticks over 1, the 6-hour hold)."""
        # A fresh slot's (``ptop`` is its power) is never above: a freed slot's time is not handed on.
        risen = self.risen_at[slots]
        risen = np.where(lagged > ptop + self.ridge_watts, np.where(risen > 0.0, risen, at), 0.0)
        self.risen_at[slots] = risen
        settled = (at - risen >= self.settle_seconds) & (z < 0.5)
        return (risen > 0.0) & ~settled

    def _peer_scores(
        self,
        groups: IntArray,
        own: tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray],
        t: FloatArray,
        lagged: FloatArray,
        at_top: FloatArray,
    ) -> tuple[BoolArray, FloatArray]:
        """Which samples are above any power their GPU scored at while its peers know their slope, and
        their score: the temperature over ``at_top`` (its own prediction at that top) plus the peers'
        slope times the watts above, in bands widened by the peers' slope error times those watts."""
        n, var, slope, ptop, pmin, band = own
        over = lagged - ptop
        first = (n >= self.warmup) & (over > self.ridge_watts)
        peer = first & (groups >= 0)
        peer_slope, tolerance = np.zeros(n.size), np.zeros(n.size)
        if peer.any():  # most ticks: every GPU at a power it scored at
            # Its slope its own: not the ridge's (a wide spread of power), and one its own line scored at
            # over 30 W, not a guess's: a GPU in its first job (or back from a burst of one) learnt its
            # slope from guesses, short while its temperature lags. Such peers vouched for each other: a
            # fleet of one model idle, then started together (a lag of 90 s), was held hot for 6 hours.
            scored_wide = ptop - pmin >= 3.0 * self.ridge_watts
            learnt = (n >= self.warmup) & (var >= 9.0 * self.ridge) & scored_wide & ~first
            for group in np.unique(groups[peer]).tolist():
                members = groups == group
                slopes = slope[learnt & members]
                if slopes.size < self.min_peers:
                    peer &= ~members
                    continue
                centre = max(float(np.median(slopes)), 0.0)
                spread = MAD_TO_SIGMA * float(np.median(np.abs(slopes - centre)))
                peer_slope[members] = centre
                tolerance[members] = self.peer_tolerance * centre + 3.0 * spread
        over = np.where(peer, over, 0.0)
        excess = t - (at_top + peer_slope * over)
        return peer, np.maximum(excess, 0.0) / (band + tolerance * over)


def _lag(lagged: FloatArray, p: FloatArray, gap: FloatArray, seconds: float) -> FloatArray:
    """``lagged`` moved towards the power ``p`` over ``gap`` seconds, a first-order lag of ``seconds``."""
    return lagged + (1.0 - np.exp(-np.maximum(gap, 0.0) / seconds)) * (p - lagged)


def _wild(temp: Step, power: Step, rows_t: IntArray, rows_p: IntArray) -> BoolArray:
    """Per pair (``temp``'s ``rows_t`` and ``power``'s ``rows_p``), whether its temperature or power is
    outside its query's data range."""
    wild = np.zeros(rows_t.size, np.bool_)
    if temp.outside is not None:
        wild |= temp.outside[rows_t]
    if power.outside is not None:
        wild |= power.outside[rows_p]
    return wild


def _same(a: IntArray, b: IntArray) -> bool:
    return a is b or (a.shape == b.shape and bool(np.array_equal(a, b)))
