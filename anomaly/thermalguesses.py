"""How the ``thermal`` detector judges a sample where its line is only a guess: at a power above or below any
its line scored at, by the climb of its temperature (``_climbing``, ``_rewarming``) or its peers' slope
(``_peer_scores``), until the power has settled there (``_unsettled``, ``_fallen``)."""

from __future__ import annotations

import numpy as np

from anomaly.thermallines import ThermalLines
from anomaly.thresholds import MAD_TO_SIGMA, BoolArray, FloatArray, IntArray


class ThermalGuesses(ThermalLines):
    """The thermal detector's judgement where its line is a guess (``anomaly.thermal.ThermalDetector``)."""

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

    def _fallen(
        self,
        slots: IntArray,
        lagged: FloatArray,
        pbot: FloatArray,
        free: BoolArray,
        *,
        at: float,
        z: tuple[FloatArray, FloatArray],
        drifted: BoolArray,
    ) -> tuple[BoolArray, BoolArray]:
        """Which samples are below any power their line scored at, or at a rest their line has drifted from
        (``drifted``, ``_drifted``), (``free``: not a runaway throttled there) and still a guess there, and
        which of them fell before this sample (``_rewarming`` has a temperature to climb from): a guess until
        the power has stayed below it for ``settle_seconds``, the line (learnt from them) is within half a
        band of the sample either side (it errs high there, and so hides heat), and the temperature is within
        half a band of the lowest it cooled to (``z``: both in bands).

        Learnt whole, a cooler failing as the job stalled taught the line its climb while it was under a
        band: settled there once the power had stayed down 10 minutes, the line scored it 0.4, the GPU
        climbing on."""
        line, climb = z
        fell = self.fell_at[slots]
        below = ((lagged < pbot - self.ridge_watts) | drifted) & free
        ongoing = below & (fell > 0.0)
        fell = np.where(below, np.where(ongoing, fell, at), 0.0)
        self.fell_at[slots] = fell
        settled = (at - fell >= self.settle_seconds) & (np.abs(line) < 0.5) & (~ongoing | (climb < 0.5))
        return below & ~settled, ongoing

    def _drifted(
        self,
        slots: IntArray,
        lagged: FloatArray,
        line: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
        band: FloatArray,
    ) -> BoolArray:
        """Which samples are at their GPU's rest power (``_rested``: within ``ridge_watts``, lagged) where its
        line (``line``: the samples it learnt, its mean power and temperature, its slope) draws that rest
        over a ``band`` hotter than the GPU rested at: the line has drifted from its rest, and errs high
        there as below any power it scored at (``_fallen``).

        Its line's moments are exponentially weighted: hours in its job after it rested at idle, the idle
        samples had faded and the ridge had shrunk its slope, and its line drew that idle 11-30 C too hot,
        yet the idle stayed a power it had scored at, judged by that line. Back from its node's outage to its
        job stalled at that idle, a cooler failed while the node was down heated the GPU to 46 C, 13 C over
        its 33 C rest: it read 0.36-0.75 against its line's 42-44 C, unflagged until the job resumed 8
        minutes later (`eval_gpu_faults` seed 1505)."""
        n, mp, mt, slope = line
        rest_t, rest_p = self.rest_t[slots], self.rest_p[slots]
        at_rest = (n > 0) & (rest_p > 0.0) & (np.abs(lagged - rest_p) <= self.ridge_watts)
        return at_rest & (mt + slope * (rest_p - mp) > rest_t + band)

    def _climbs(
        self,
        slots: IntArray,
        sample: tuple[FloatArray, FloatArray, FloatArray],
        guess: BoolArray,
        fallen: tuple[BoolArray, BoolArray, BoolArray, BoolArray],
        *,
        now: tuple[float, FloatArray],
    ) -> tuple[BoolArray, FloatArray]:
        """Which guesses are judged by their temperature's climb, above the power its line scored at
        (``_climbing``) or below it (``_rewarming``; ``fallen``: ``_fallen``'s, and whether the temperature
        has settled since it was unseen, ``_seen``), and that climb."""
        climbing, climb = self._climbing(slots, sample, guess)
        rewarming, rise = self._rewarming(
            slots, sample, fallen[0] & guess, fallen[1], (~fallen[2], fallen[3]), now=now
        )
        return climbing | rewarming, np.where(rewarming, rise, climb)

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

    def _rewarming(
        self,
        slots: IntArray,
        sample: tuple[FloatArray, FloatArray, FloatArray],
        fallen: BoolArray,
        ongoing: BoolArray,
        unseen: tuple[BoolArray, BoolArray],
        *,
        now: tuple[float, FloatArray],
    ) -> tuple[BoolArray, FloatArray]:
        """Which ``fallen`` samples are judged by how far their temperature has climbed from the lowest it
        cooled to since, moved by their line's slope for the power since (lagged at the slowest lag it allows
        for), and that climb. A rise of that power (a job resuming warms its GPU) starts it again from there.
        A cold sample (``unseen``'s first: not settled since it was unseen, back from its node's outage)
        climbs from its GPU's rest at that power (``_rested``), or with none, from itself, and so does the
        first settled since (``unseen``'s second, ``_seen``'s woke), the lowest from there on.

        Seen only in its job, a GPU whose job stalled (another node of it down) idles below any power its
        line scored at, where the line, its slope shrunk by the ridge, drew 67 C over its 33 C: a cooler
        failing there (46 C at idle) scored 0. A healthy GPU only cools while its power stays down, but one
        back cold from its node's outage warms from the room to its idle: lagging 90 s, it read 29 C first
        and its climb to its 33 C idle scored 1.33, never settling, a thermal alert on every GPU of the node
        held for the 6-hour hold. Under its rest, a healthy GPU warming up climbs no band above it. The
        lowest it cooled to is kept through the cold reads (not the last of them): a gap taken for an outage
        is undone as a flapping exporter's at the next (``_seen``), and a cooler failing in the reads between
        climbs from that low on (from the last of them, 3 of 40 flapping runs read 0 through the stall)."""
        t, slow, slope = sample
        (cold, woke), low_t, low_p = unseen, self.low_t[slots], self.low_p[slots]
        at, lagged = now
        rose = slow > low_p + self.ridge_watts
        anew = ~ongoing | rose | (t <= low_t)
        low_t, low_p = np.where(anew, t, low_t), np.where(anew, slow, low_p)
        # Where its cooling to that lowest began (``_unpowered``): its last read before the fall (its lags
        # agree there, where its power had settled), moved by a rise, not by the cooler reads of one fall.
        began = ~fallen | rose | woke
        self.cooled_at[slots] = np.where(began, at, self.cooled_at[slots])
        self.cooled_t[slots] = np.where(began, t, self.cooled_t[slots])
        self.cooled_p[slots] = np.where(began, np.minimum(lagged, slow), self.cooled_p[slots])
        rest_t, rest_p = self.rest_t[slots], self.rest_p[slots]
        rested = (rest_p > 0.0) & (np.abs(slow - rest_p) <= self.ridge_watts)
        from_t = np.where(rested, rest_t, t)  # where a cold sample climbs from
        self.low_t[slots], self.low_p[slots] = np.where(woke, from_t, low_t), np.where(woke, slow, low_p)
        low_t, low_p = np.where(cold | woke, from_t, low_t), np.where(cold | woke, slow, low_p)
        # Allowed for as it rises only: a GPU quicker than the slowest lag cooled while that power fell on.
        climb = t - low_t - np.maximum(slope, 0.0) * np.maximum(slow - low_p, 0.0)
        return fallen & ongoing & ~rose, np.maximum(climb, 0.0)

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

    def _unpowered(self, slots: IntArray, t: FloatArray, band: FloatArray, lagged: FloatArray) -> BoolArray:
        """Which samples read colder, by over half a band, than their GPU could have cooled to powered: below
        the lowest it had cooled to (``_rewarming``'s) by more than its thermal resistance, at most what that
        cooling showed, times the fall of its power since, at any lag from ``lag_seconds`` to the slowest.
        Only where it was read without a gap from the read its cooling began at to the read before (its
        power unread in a gap, its lags are guesses)."""
        low_t, low_p = self.low_t[slots], self.low_p[slots]
        from_t, from_p = self.cooled_t[slots], self.cooled_p[slots]
        # Lagged at any of those lags, a falling power lies between its fast and slow lags: from the read its
        # cooling began at to the lowest, the GPU's lagged power fell by at least ``from_p - low_p`` (the
        # lower lag there, the slower at the lowest), and its temperature by ``from_t - low_t``, so its
        # resistance is at most their ratio; since the lowest, its lagged power fell by at most ``low_p``
        # less the lower lag now, and a powered GPU cooled by at most the resistance times that.
        read = (self.cooled_at[slots] > 0.0) & (self.cooled_at[slots] >= self.gapped_at[slots])
        fell = read & (from_p > low_p + self.ridge_watts) & (from_t > low_t)
        resistance = (from_t - low_t) / np.where(fell, from_p - low_p, 1.0)
        now = np.minimum(lagged, self.slow[slots])
        left = np.where(fell, resistance * np.maximum(low_p - now, 0.0), np.inf)
        return t < low_t - left - 0.5 * band
