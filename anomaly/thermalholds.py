"""How the ``thermal`` detector holds a hot run: the time it has been hot (``_hold``), a GPU cooling down
after its power fell (``_cooling``), and a runaway's run carried below any power its line scored at
(``_carried``) until its peers (``_not_as_peers``) or, too few, its own rest there (``_not_as_rested``,
``_rested``) read it as cool."""

from __future__ import annotations

import numpy as np

from anomaly.thermallines import ThermalLines, first_order_lag
from anomaly.thresholds import BoolArray, FloatArray, IntArray

# The hot reads that, with its peers or its rest reading it hotter, show a run shorter than the slowest lag is
# the GPU's heat rather than a reading's spike (``ThermalHolds._carried``): the reads that raise an alert
# (``pending_ticks``' default), so no alert a runaway raised just before its job stalled resolves in it.
_HEAT_READS = 3


class ThermalHolds(ThermalLines):
    """The thermal detector's hot runs, held and carried (``anomaly.thermal.ThermalDetector``)."""

    def _hold(self, slots: IntArray, fresh: BoolArray) -> tuple[FloatArray, FloatArray, BoolArray]:
        """Its hold so far: the seconds it has been hot, its last hot sample, and whether the sample before
        was hot in a run begun at a power it knows (a runaway throttles its GPU down to a power it never ran
        at: held there as at a power it knows)."""
        held_for = np.where(fresh, 0.0, self.held_for[slots])
        hot_at = np.where(fresh, 0.0, self.hot_at[slots])
        return held_for, hot_at, (hot_at > 0.0) & (hot_at >= self.last[slots]) & (self.hot_in[slots] > 0.0)

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
        slow = np.where(self.n[slots] == 0, p, first_order_lag(self.slow[slots], p, gap, self._slowest_lag()))
        self.slow[slots] = slow
        hot_at = self.hot_at[slots]
        fell = (slow > lagged + self.ridge_watts) & ~((hot_at > 0.0) & (hot_at >= self.last[slots]))
        decay = np.exp(-np.maximum(gap, 0.0) / self._slowest_lag())
        cooling = yhat + np.maximum(self.cooling[slots] - yhat, 0.0) * decay
        self.cooling[slots] = np.where(fell, cooling, t)
        return np.maximum(t - np.where(fell, cooling, yhat), 0.0)

    def _carried(
        self,
        slots: IntArray,
        scores: tuple[FloatArray, FloatArray],
        below: tuple[BoolArray, BoolArray],
        held: tuple[FloatArray, FloatArray],
    ) -> tuple[FloatArray, FloatArray]:
        """The samples' scores and strict scores (``scores``), a runaway's run of hot samples carried on
        ``below`` any power their line scored at, right after a hot sample of a run begun at a power it knows
        (``_hold``'s throttled), where the line errs high and cannot tell a failed cooler from a healthy one:
        a sample read cool there is scored as that run's last (``hot_in``) while its hold lasts and once hot
        for the slowest lag it allows for (``held``: the seconds hot and since the sample before; the GPU's
        heat, not a reading's spike), until its power is back where its line judges it, or its peers at that
        power (or, too few, its own rest there) read it as cool (``below``: not as cool, and whether they were
        asked, ``_not_as_peers``). A run hot for ``_HEAT_READS`` reads at the sample's interval, but not for
        the slowest lag, is carried only where they were asked and read it hotter.

        A runaway hot at its job's power (97 C at 265 W, throttled) whose job stalled at 70 W (another
        node down) cooled to 46 C, 13 C above a healthy GPU's 33 C, far under the 68 C its line drew
        there: read 0 for the whole stall, its alert resolved after 12 minutes (a shorter stall: recovered,
        re-raised when the job resumed), the cooler still failed. Its cooler failing 90 s before the stall (a
        90 s lag), it read 1.33, 3.33, 5.67, 1.33, an alert raised, then 0 through the stall: hot for less
        than the slowest lag (120 s), it was not carried. Hot for as many reads as raise an alert, and hotter
        than its peers at the stall's power, it is heat (a healthy GPU's hiccup idles as they do, let go at
        once); on no one's word (a lone GPU that never rested there), a fan's 90 s hiccup read 8.0 through
        the whole stall: a run that short is carried only on theirs. Two reads are not enough, the peers
        asked or not: a minute's work its power missed read hot twice, and still warm was read hotter."""
        score, strict = scores
        (not_cool, asked), (held_for, gap) = below, held
        short = (held_for >= (_HEAT_READS - 1) * np.maximum(gap, 0.0)) & asked
        carried = not_cool & ((held_for >= self._slowest_lag()) | short) & (held_for < self.hold_seconds)
        score = np.where(carried & (score < 1.0), self.hot_in[slots], score)
        return score, np.where(carried, score, strict)

    def _seen(
        self,
        slots: IntArray,
        fresh: BoolArray,
        gap: FloatArray,
        back: tuple[BoolArray, BoolArray],
        at: float,
    ) -> tuple[BoolArray, BoolArray]:
        """Which samples' temperatures have been read long enough to have settled: ``settle_seconds`` (5 of
        the slowest lags it allows for) since a ``fresh`` slot's first sample or the first after an outage (a
        lone ``gap`` longer than the slowest lag, ``back`` cooled: its node down, its GPU off and cooling
        meanwhile); and which settled just now (woke: not at the sample before). A gap shorter than
        ``settle_seconds`` begun less than that of reads after the gap before ended is a flapping exporter's,
        no outage (its GPU stayed powered): the clock stops over it (the time unread does not count) and a
        restart by the gap before is undone (``seen_was``). A longer gap is an outage whatever came before,
        and so is one it came back off from (``back``'s second: colder than a powered GPU cools), never
        undone.

        A GPU whose temperature lags 90 s, back cold from its node's 30-minute outage, read 33 C at first
        with its cooler still failed, no hotter than its rest plus its band (``_not_as_rested``): its carried
        run was let go and, climbing on to 46 C, it read 0 through its job's stall. Restarted at every gap,
        the wait never ended while a node's exporter flapped (2-6 reads in every 8-12): one gap as its job
        stalled (the GPU read cooler as its power fell) and a cooler failing then was measured from each
        read, then learnt at idle (10 of 40 flapping runs read 0 through a 40-minute stall). Stopped at any
        gap under ``settle_seconds`` instead (fix/flap), a healthy GPU powered off 2-9 minutes in a stall (one
        gap: a reboot) read 0.67-1.33 warming back from the room (0.01 restarted), and 1.0-1.33 where a gap
        read as flapping, scrapes lost just after the reboot or the reboot just after one, undid its restart
        or stopped the wait over it: a gap it came back off from is an outage. A clock set back is undone
        before (``_stepped_back``): read an hour ahead, every GPU read as not settled for an hour."""
        (cooled, off), clock, was = back, self.seen_at[slots], self.seen_was[slots]
        gapped_at = self.gapped_at[slots]
        unread = ~fresh & (gap > self._slowest_lag())
        short = unread & (gap < self.settle_seconds)
        # Back off (no powered GPU cools so), a gap is an outage however soon after the one before it.
        recurs = (gapped_at > 0.0) & (self.last[slots] - gapped_at < self.settle_seconds)
        flaps = short & recurs & ~off
        outage = unread & cooled & ~flaps
        # Flapping: the clock as if the gap before was none either, stopped over this one where it cooled.
        kept = np.where(was > 0.0, was, clock) + np.where(cooled, gap, 0.0)
        seen_at = np.where(fresh | outage, at, np.where(flaps, kept, clock))
        # A gap of ``settle_seconds`` or more, or one it came back off from, is an outage whatever follows:
        # its restart is never undone.
        undoable = outage & short & ~off
        self.seen_was[slots] = np.where(undoable, clock + gap, np.where(fresh | unread, 0.0, was))
        self.gapped_at[slots] = np.where(fresh, 0.0, np.where(unread, at, gapped_at))
        self.seen_at[slots] = seen_at
        # Woke: settled now, not at the sample before, and not by undoing the restart that kept it cold.
        cold_before = self.last[slots] - clock < self.settle_seconds
        seen = at - seen_at >= self.settle_seconds
        return seen, seen & cold_before & ~(flaps & (was > 0.0))

    def _not_as_peers(
        self,
        rows: tuple[IntArray, IntArray, BoolArray],
        sample: tuple[FloatArray, FloatArray, FloatArray],
        below: BoolArray,
        throttled: BoolArray,
    ) -> tuple[BoolArray, BoolArray]:
        """Which samples of a hot run (``_hold``'s ``throttled``) ``below`` any power their line scored at
        are not as cool as their peers: hotter, their band allowed, than the median of at least
        ``min_peers`` GPUs of their model (``peer_labels``) at their power (within ``ridge_watts``, lagged)
        and in no such run; with too few such peers, not as cool as the GPU itself was at rest there
        (``_not_as_rested``); either only once its temperature has settled since it was unseen. ``rows``: the
        samples' slots, peer groups and whether their temperatures have settled since they were unseen
        (``_seen``). With it, which were judged so: by peers or by a rest, not for want of either.

        Where its line cannot judge, its peers can: a healthy GPU (a fan's 4-minute hiccup at its job's power,
        over as the job stalled) idled at its peers' 33 C, yet its hot run was carried (``_carried``) through
        the whole stall, an alert held on a healthy GPU (resolved 12 minutes into the stall before the carry).
        A runaway idles 13 C above them."""
        slots, groups, settled = rows
        t, lagged, band = sample
        out, asked = self._not_as_rested(slots, sample, below & throttled, settled)
        if np.count_nonzero(~throttled) < self.min_peers:  # a fleet all in hot runs: none to ask
            return out, asked
        # Not before its temperature has settled since it was unseen: back cold from its node's outage, a
        # failed cooler whose temperature lags 90 s read 33 C, no hotter than its peers' median plus its band,
        # and was let go at once, climbing on to 46 C (13 C over its peers) unflagged.
        for i in np.flatnonzero(below & throttled & (groups >= 0) & settled).tolist():
            near = ~throttled & (groups == groups[i]) & (np.abs(lagged - lagged[i]) <= self.ridge_watts)
            if np.count_nonzero(near) >= self.min_peers:
                out[i], asked[i] = t[i] > float(np.median(t[near])) + band[i], True
        return out, asked

    def _not_as_rested(
        self,
        slots: IntArray,
        sample: tuple[FloatArray, FloatArray, FloatArray],
        carried: BoolArray,
        settled: BoolArray,
    ) -> tuple[BoolArray, BoolArray]:
        """Which samples of ``carried`` (a hot run below any power their line scored at) are not as cool as
        their GPU itself was at rest at that power (within ``ridge_watts``, lagged) before: hotter, their band
        allowed, than the temperature it settled at there in no hot run (``_rested``), or with no such rest,
        or with a temperature not ``settled`` since it was unseen (``_seen``: a GPU back cold from its node's
        outage reads cool before its failed cooler has warmed it).

        A lone GPU (too few peers of its model at its power, or none) was carried by ``_carried`` on the
        word of no one: repaired while its job stalled (or its node was down), it idled at the 33 C it had
        read at 70 W before the runaway, yet its alert was held (at 4.2, or 11.6) until the job resumed or
        the 6-hour hold ended. Its line cannot judge there (below any power it scored at it errs high: 6 hours
        in its job after that rest, it drew 59 C), but its own rest can, as its peers would: a failed cooler
        idles 13 C above it (46 C). With it, which had such a rest to ask."""
        t, lagged, band = sample
        rest_t, rest_p = self.rest_t[slots], self.rest_p[slots]
        known = carried & settled & (rest_p > 0.0) & (np.abs(lagged - rest_p) <= self.ridge_watts)
        return np.where(known, t > rest_t + band, carried), known

    def _rested(
        self,
        slots: IntArray,
        sample: tuple[FloatArray, FloatArray],
        fresh: BoolArray,
        quiet: BoolArray,
    ) -> None:
        """Keep each GPU's rest: the temperature of its newest ``quiet`` sample (warm, its temperature
        settled since it was unseen, in no hot run, not hot) whose power has settled (lagged at
        ``lag_seconds`` and at the slowest lag it allows for, within ``ridge_watts``: a GPU of that lag has
        then cooled to it) at a power no higher than its rest's (within ``ridge_watts``), and that power; a
        fresh slot has none (a freed slot's is another GPU's).

        The newest, not the coolest: a cold start or a cold room's night would stay its rest for good, and a
        repaired GPU idling as before read hotter than it. Nor one read back cold from its node's outage:
        its power settles at once (both lags caught up over the outage), so a GPU lagging 90 s rested at the
        29 C of its first read, 4 C under its idle, and its repaired runaway was carried on against it."""
        t, lagged = sample
        rest_p = np.where(fresh, 0.0, self.rest_p[slots])
        settled = quiet & (np.abs(self.slow[slots] - lagged) <= self.ridge_watts)
        rest = settled & ((rest_p <= 0.0) | (lagged <= rest_p + self.ridge_watts))
        self.rest_t[slots] = np.where(rest, t, np.where(fresh, 0.0, self.rest_t[slots]))
        self.rest_p[slots] = np.where(rest, lagged, rest_p)
