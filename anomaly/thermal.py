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

State is kept in arrays by slot (``anomaly.thermallines``); where its line is a guess, a sample is judged as
``anomaly.thermalguesses`` says, and hot runs are held and carried as ``anomaly.thermalholds`` says.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from anomaly.detectors import Findings
from anomaly.series import Step, View
from anomaly.steps import unlearned
from anomaly.thermalguesses import ThermalGuesses
from anomaly.thermalholds import ThermalHolds
from anomaly.thermallines import FIELDS, first_order_lag
from anomaly.thresholds import BoolArray, FloatArray, IntArray
from gpuwarden.model import RecommendedAction


class ThermalDetector(ThermalGuesses, ThermalHolds):
    """Temperature against lagged power, per GPU, vectorised."""

    name = "thermal"

    def fit(self, view: View) -> None:
        """Online: nothing to refit."""

    def judged_by(self, query: str) -> tuple[str, ...]:
        """The queries its alerts are judged by: temperature and power, read together or not at all."""
        return (self.temp_query, self.power_query)

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
        self._stepped_back(slots, temp.at)
        x_t, x_p = temp.value[rows_t], power.value[rows_p]
        # A GPU warmer than the room draws power: 0 W is a reading lost (dcgm-exporter's stale zeros), not a
        # sample. Scored, a GPU run at 70-400 W read 0 W for 5 minutes, idle, and scored 1.3 for all of them.
        ok = np.flatnonzero(np.isfinite(x_t) & np.isfinite(x_p) & (x_p > 0.0))
        rows, t, p = rows_t[ok], x_t[ok], x_p[ok]
        wild = slots[ok][(_wild(temp, power, rows_t, rows_p) | _beyond_squares(x_t, x_p))[ok]]
        # Past a float's range a reading's square overflows (``_SQUARE_SAFE``): it teaches nothing, and its
        # own score, not a number, is no judgement of it.
        with (
            unlearned([getattr(self, name) for name in FIELDS], wild),
            np.errstate(over="ignore", invalid="ignore"),
        ):
            score, judged_ok = self._update(slots[ok], groups[ok], t, p, temp.at)
        unjudged = ~np.isfinite(score)
        score, judged_ok = np.where(unjudged, 0.0, score), judged_ok & ~unjudged
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
        """Score each sample and learn from it: its line's prediction, its judgement (where that line is a
        guess too), its hold, then what it teaches; in that order, as each step reads the state the one
        before left."""
        line = self._predict(slots, t, p, at)
        judged = self._judge(slots, groups, line, t, p, at=at)
        held = self._held(slots, line, judged, t, at)
        self._learn(slots, line, judged, held, at)
        # Which it judged: a warm-up sample, or a guess neither its peers nor its climb judge, is scored 0 as
        # no evidence, no quiet read (``Findings.judged``): taken for one, a runaway whose job moved to a
        # heavier power recovered, and read back at its old power re-raised its alert mid-fault. Below what
        # it scored at, its line (erring high) judges only a sample hot against it.
        warm_own = judged.warm & ~judged.fallen
        return judged.score, warm_own | judged.peer | judged.climbing | (judged.score >= 1.0)

    def _predict(self, slots: IntArray, t: FloatArray, p: FloatArray, at: float) -> _Line:
        """Each sample's line as it was before the sample: its power lagged, its ridge's prediction and error,
        its band, and the powers it learnt and scored at. Read once, so that judging and learning (which
        rewrites it) see the same line."""
        n = self.n[slots]
        fresh = n == 0
        gap = at - self.last[slots]
        lagged = np.where(fresh, p, first_order_lag(self.lagged[slots], p, gap, self.lag_seconds))
        mp, mt = np.where(fresh, lagged, self.mp[slots]), np.where(fresh, t, self.mt[slots])
        mpp = np.where(fresh, lagged * lagged, self.mpp[slots])
        mpt = np.where(fresh, lagged * t, self.mpt[slots])
        var = np.maximum(mpp - mp * mp, 0.0)
        slope = (mpt - mp * mt) / (var + self.ridge)
        yhat = mt + slope * (lagged - mp)
        dev = self.dev[slots]
        return _Line(
            n=n,
            fresh=fresh,
            gap=gap,
            lagged=lagged,
            moments=(mp, mt, mpp, mpt),
            var=var,
            slope=slope,
            yhat=yhat,
            resid=t - yhat,
            dev=dev,
            band=np.maximum(self.k * dev, self.min_deviation),
            learnt=(np.where(fresh, lagged, self.pmin[slots]), np.where(fresh, lagged, self.pmax[slots])),
            scored=(np.where(fresh, lagged, self.pbot[slots]), np.where(fresh, lagged, self.ptop[slots])),
        )

    def _judge(
        self, slots: IntArray, groups: IntArray, line: _Line, t: FloatArray, p: FloatArray, *, at: float
    ) -> _Judged:
        """Each sample judged by its own line, or where that line is a guess (above or below any power it
        scored at), by its peers' slope; then by its climb and its carried run (``_scored``), which need to
        know which samples are guesses."""
        n, lagged, band, resid = line.n, line.lagged, line.band, line.resid
        pbot, ptop = line.scored
        # Above any power it learnt at, the prediction is the ridge's guess: seen only idle, its slope is
        # near 0 and a job's warmth read as 40 C too hot. Such a sample is no evidence: scored 0 and learnt
        # unclipped (as in the warm-up), so the slope comes from it.
        # Below any power it scored at, too: seen only in its job, its slope shrunk to near 0, a stalled job's
        # idle read 35 C under its line there, and a cooler failing at that idle (33 C to 46 C) scored 0.
        # Not while a hot run that began at a power it knows throttled it there (that runaway is held).
        held_for, hot_at, throttled = self._hold(slots, line.fresh)
        # At its rest's power too, where its line has drifted from that rest (``_drifted``): hours in its job
        # after it rested at idle, its line drew that idle 11 C too hot, a cooler failing there scored 0.7.
        drifted = self._drifted(slots, lagged, (n, line.moments[0], line.moments[1], line.slope), band)
        fallen, ongoing = self._fallen(
            slots,
            lagged,
            pbot,
            ~throttled,
            at=at,
            z=(resid / band, (t - self.low_t[slots]) / band),
            drifted=drifted,
        )
        above = (lagged > line.learnt[1] + self.ridge_watts) | self._unsettled(
            slots, lagged, ptop, at=at, z=resid / band
        )
        # Its line errs high below: a temperature above even it there is hot all the same (scored as before:
        # a runaway whose stalled job resumed throttled at 275 W, 100 C, read 0 by its climb from 46 C alone).
        guess, warm = above | fallen, (n >= self.warmup) & ~above
        strict_own = np.where(warm, np.maximum(resid, 0.0) / band, 0.0)
        own = np.where(warm, self._cooling(slots, (t, p, line.gap), (line.yhat, lagged)) / band, 0.0)
        # Not scored there, a cooler failing at (or during) its first job was learnt as that job's normal
        # heat: already failed, never flagged; failing as it ran, flagged, then learnt within 35 minutes, the
        # GPU at 103 C. Where its model's other GPUs have learnt their slope over a wide power range, such a
        # sample is scored against that slope, drawn on from its own line at the top of what it scored at.
        # Without such peers, a cooler failing as its first job ran is no longer flagged either (it was for
        # 35 minutes): unscored until the power settles, its heat is learnt as the job's.
        mp, mt = line.moments[0], line.moments[1]
        peer, peer_score = self._peer_scores(
            groups,
            (n, line.var, line.slope, ptop, line.learnt[0], band),
            t,
            lagged,
            mt + line.slope * (ptop - mp),
        )
        guessed = _Guessed(
            own=own,
            strict_own=strict_own,
            peer=peer,
            peer_score=peer_score,
            guess=guess,
            warm=warm,
            fallen=fallen,
            ongoing=ongoing,
            hold=(held_for, hot_at, throttled),
        )
        return self._scored(slots, groups, line, t, guessed, at=at)

    def _scored(
        self, slots: IntArray, groups: IntArray, line: _Line, t: FloatArray, judged: _Guessed, *, at: float
    ) -> _Judged:
        """``judged`` with its guesses judged by their climb where so, and a runaway's run carried below any
        power its line scored at: the score its alert is raised and held by. After ``_judge``: both need to
        know whether its temperature has settled since it was unseen (``_seen``), after ``_fallen``."""
        n, lagged, band, gap = line.n, line.lagged, line.band, line.gap
        fallen, ongoing, throttled = judged.fallen, judged.ongoing, judged.hold[2]
        # Read long enough since it was unseen (its node down) for its temperature to have followed its power:
        # until then a GPU back cold reads cool whether its cooler works or not. One back warmer than it had
        # cooled to in its stall was not cooled by the gap (a scrape or two lost): a cooler failing in the
        # gap, its climb measured from each reading for 10 minutes, scored 1.1 (3.3 from its idle). Nor was
        # one back within its band of its line at a power its line judges (readings lost at its job's power):
        # a cooler failing in a stall begun in the 10 minutes after read 0 for 4 minutes (lagging 90 s).
        # A gap recurring within ``settle_seconds`` of reads is a flapping exporter's, no outage (``_seen``).
        cooled = ~(ongoing & (t > self.low_t[slots])) & ~(judged.warm & ~fallen & (np.abs(line.resid) < band))
        # Back over half a band colder than it had cooled to, its power settled (no longer falling at the
        # slowest lag): no powered GPU cools so, it was off (a reboot), its restart not undone as a flap's.
        # Its power still falling, over half a band colder than the cooling it had left allows: lagging
        # 120 s (the slowest at the bound of ``settle_seconds``), off 6 minutes a minute into a stall at
        # 85 W, then scrapes lost 2 minutes after, its restart was undone and its warming from the room read
        # 1.33 for 23 minutes, every GPU of the node alerted; stalled at 150 W, 2.33.
        settled = self.slow[slots] <= lagged + self.ridge_watts
        low = (t < self.low_t[slots] - 0.5 * band) & (settled | self._unpowered(slots, t, band, lagged))
        seen, woke = self._seen(slots, line.fresh, gap, (cooled, cooled & low), at)
        climbing, climb = self._climbs(
            slots,
            (t, self.slow[slots], line.slope),
            judged.guess & (n >= self.warmup),
            (fallen, ongoing, seen, woke),
            now=(at, lagged),
        )
        own, peer, peer_score = judged.own, judged.peer, judged.peer_score
        score = np.where(peer, peer_score, np.where(climbing, np.maximum(climb / band, own), own))
        score, strict = self._carried(
            slots,
            (score, np.where(peer, peer_score, judged.strict_own)),
            self._not_as_peers(
                (slots, groups, seen),
                (t, lagged, band),
                lagged < line.scored[0] - self.ridge_watts,
                throttled,
            ),
            (judged.hold[0], gap),
        )
        return _Judged(
            **judged._asdict(), score=score, strict=strict, climbing=climbing, climb=climb, seen=seen
        )

    def _held(self, slots: IntArray, line: _Line, judged: _Judged, t: FloatArray, at: float) -> BoolArray:
        """Which samples are hot and within their hold (they teach their line nothing), keeping the hold's
        time, the run's last hot score and the GPU's rest: a runaway must not become its line's normal."""
        pmin, ptop = line.learnt[0], line.scored[1]
        lagged, band, gap = line.lagged, line.band, line.gap
        score, peer, climbing, climb = judged.score, judged.peer, judged.climbing, judged.climb
        held_for, hot_at, throttled = judged.hold
        # Known (a hot sample there is held) up to the highest power a scored sample learnt at: one reached
        # by guesses alone is not, as the GPU's temperature lags its power longer than ``lag_seconds`` (60 s,
        # not 20): its first job's guesses learnt the climb, and the job read hot at a power it "knew", held
        # for the 6-hour hold (before guesses went unscored it was not held there: 26 minutes over 1). Nor is
        # one its line scored while the temperature still climbed there (``_unsettled``).
        known = (lagged <= ptop + self.ridge_watts) & ((lagged >= pmin - self.ridge_watts) | throttled)
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
        self.held_for[slots], self.hot_at[slots] = held_for, np.where(hot, at, hot_at)
        # A run begun climbing from where its stalled GPU had cooled to began below what it knows: not a
        # runaway throttled there, judged by its climb while it lasts.
        self.hot_in[slots] = np.where(hot & (throttled | ((lagged >= pmin) & ~judged.fallen)), score, 0.0)
        quiet = (line.n >= self.warmup) & judged.seen & ~hot & ~throttled & (score < 1.0)
        self._rested(slots, (t, lagged), line.fresh, quiet)
        return hot & (held_for < self.hold_seconds)

    def _learn(self, slots: IntArray, line: _Line, judged: _Judged, held: BoolArray, at: float) -> None:
        """Teach each line its sample, winsorised at its band, and widen the powers it learnt and scored at:
        only by what it explains, so that neither a runaway nor a guess becomes its normal."""
        n, lagged, resid, band, dev = line.n, line.lagged, line.resid, line.band, line.dev
        (pmin, pmax), (pbot, ptop) = line.learnt, line.scored
        mp, mt, mpp, mpt = line.moments
        score, strict, peer, guess = judged.score, judged.strict, judged.peer, judged.guess
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
        cap = np.where(judged.warm, band, np.inf)
        # A guess errs low (the ridge shrinks the slope), so a temperature below even it is no heat curve but
        # a power reading that was not the GPU's (a counter glitch at 1,400 W): learnt whole, its leverage
        # dragged the slope down and a later job at a power within it read hot and was held. Down to the band.
        # Below any power it scored at, the guess errs high: a temperature under it is its idle, learnt whole.
        floor = np.where((n >= self.warmup) & ~judged.fallen, band, np.inf)
        t_used = line.yhat + np.clip(resid, -floor, cap)
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
        own_scored = judged.warm & ~judged.fallen & (judged.strict_own < 1.0)
        scored = learnt & (own_scored | ((n < self.warmup) & ~guess))
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
            line.fresh, 0.0, np.where(guess, dev, dev + w * (np.minimum(np.abs(resid), cap) - dev))
        )
        self.lagged[slots], self.last[slots] = lagged, at
        self.n[slots] = n + 1


def _wild(temp: Step, power: Step, rows_t: IntArray, rows_p: IntArray) -> BoolArray:
    """Per pair (``temp``'s ``rows_t`` and ``power``'s ``rows_p``), whether its temperature or power is
    outside its query's data range."""
    wild = np.zeros(rows_t.size, np.bool_)
    if temp.outside is not None:
        wild |= temp.outside[rows_t]
    if power.outside is not None:
        wild |= power.outside[rows_p]
    return wild


_SQUARE_SAFE = 1e150
"""Past this a reading's square (the line's moments hold power squared and power times temperature) is past
a float's range: a power of 1e160, learnt, made them inf, the line's slope NaN for good, and the GPU's heat
unjudged from then on. Scored, never learnt, as a value outside its query's data range."""


def _beyond_squares(t: FloatArray, p: FloatArray) -> BoolArray:
    """Per pair, whether its temperature or power is too large for the line's moments (``_SQUARE_SAFE``)."""
    with np.errstate(invalid="ignore"):
        return np.asarray((np.abs(t) > _SQUARE_SAFE) | (np.abs(p) > _SQUARE_SAFE), np.bool_)


class _Line(NamedTuple):
    """Each sample's line before it learns (``ThermalDetector._predict``)."""

    n: FloatArray  # the samples it learnt from
    fresh: BoolArray  # a slot's first sample
    gap: FloatArray  # seconds since its last sample
    lagged: FloatArray  # its power lagged at ``lag_seconds``
    moments: tuple[FloatArray, FloatArray, FloatArray, FloatArray]  # mp, mt, mpp, mpt
    var: FloatArray  # of its lagged power
    slope: FloatArray
    yhat: FloatArray  # the temperature its lagged power predicts
    resid: FloatArray  # the temperature above it
    dev: FloatArray  # its usual error
    band: FloatArray  # ``k`` of it, ``min_deviation`` at least
    learnt: tuple[FloatArray, FloatArray]  # pmin, pmax: the powers it learnt at
    scored: tuple[FloatArray, FloatArray]  # pbot, ptop: the powers a scored sample learnt at


class _Guessed(NamedTuple):
    """Each sample judged against its own line or its peers' slope (``ThermalDetector._judge``)."""

    own: FloatArray  # its score against its line, cooling allowed for
    strict_own: FloatArray  # its score against its line at ``lag_seconds``
    peer: BoolArray  # judged by its peers' slope
    peer_score: FloatArray
    guess: BoolArray  # its line a guess there (above or below any power it scored at)
    warm: BoolArray  # past its warm-up and not above
    fallen: BoolArray  # below any power it scored at, still a guess (``_fallen``)
    ongoing: BoolArray  # of those, fallen before this sample
    hold: tuple[FloatArray, FloatArray, BoolArray]  # held_for, hot_at, throttled (``_hold``)


class _Judged(NamedTuple):
    """``_Guessed`` with its climb and its carried run (``ThermalDetector._scored``)."""

    own: FloatArray
    strict_own: FloatArray
    peer: BoolArray
    peer_score: FloatArray
    guess: BoolArray
    warm: BoolArray
    fallen: BoolArray
    ongoing: BoolArray
    hold: tuple[FloatArray, FloatArray, BoolArray]
    score: FloatArray  # the score its alert is raised and held by
    strict: FloatArray  # the same without the cooling allowance
    climbing: BoolArray  # judged by its climb (``_climbs``)
    climb: FloatArray
    seen: BoolArray  # its temperature settled since it was unseen (``_seen``)
