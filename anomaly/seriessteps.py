"""One query's series whose answers come on a coarser step than asked: each one's last answer, its run of
equal spacings and the step seen, and its last answer read again over its empty steps.

``anomaly.coarsesteps`` says why (series at different phases of a coarser step leave no step of the query
empty, and each read as lost at every other step) and how long a series is kept; ``CoarseSteps`` holds one
``SeriesSteps`` per query. Kept apart for size; its log lines keep the ``anomaly.coarsesteps`` logger.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import islice

import numpy as np

from anomaly.sources import Frame
from anomaly.spacingrule import MIN_STEPS, confirms, off_grid, spacing_run
from anomaly.thresholds import BoolArray, FloatArray, IntArray

# The coarser-step check's logger, whichever of its two modules writes a line.
logger = logging.getLogger("anomaly.coarsesteps")

RECENT = 4  # reads whose label sets' slots are kept: series at up to four phases of a coarser step
LONGEST = 7200.0  # seconds a series is kept for its next answer at most: twice Thanos' coarsest step
# Hashes of series answered once kept per query at most: what two hours of 1,000 such series a read hold at
# step 30 s (about 25 MiB); at shorter steps the oldest go first.
ONCE_MOST = 250_000
# The per-series arrays (by slot) a snapshot keeps (``anomaly.coarsestate``; ``SeriesSteps.restored``).
KEPT = ("last", "value", "spacing", "times", "seen")


Key = tuple[tuple[str, str], ...]
Steady = tuple[Sequence[Mapping[str, str]], float, FloatArray]  # label sets, their last step, values there


def _repeated(ts: FloatArray, answered: BoolArray, step: float) -> BoolArray:
    """The steps that answer the series of the step before, which answered those of the one before it.

    Such a step only moves those series' last answers on (each spacing is one step, followed at the step
    before): it need not be looked at while none is coarse. A catch-up read of 11,000 steps took 4 s,
    looked at step by step. The last step is always looked at."""
    skip = np.zeros(ts.size, np.bool_)
    if ts.size > 2 and (np.abs(np.diff(ts) - step) < step / 2).all():
        skip[1:] = (answered[:, 1:] == answered[:, :-1]).all(axis=0)
        skip[1:] &= skip[:-1].copy()
        skip[-1] = False
    return skip


class SeriesSteps:
    """One query's series, in arrays by slot: the last answer of each, its run of equal coarser spacings and
    the step seen (0: none).

    ``steady``: the label sets of the last read, its last step and their values there, while each of those
    series answered that step one step after its previous answer and none of the query's series is coarse:
    a read of the same series at the next steps, all answered, changes nothing and is not looked at further.
    """

    def __init__(self, source: str, query: str, reach: float = LONGEST) -> None:
        """``reach``: the most seconds a series is kept for its next answer (20 steps at least)."""
        self.source, self.query = source, query
        self._slots: dict[Key, int] = {}
        self._labels: list[Mapping[str, str] | None] = []
        self._free: list[int] = []
        self.last = np.zeros(0)  # the series' last answered step (NaN: a free slot)
        self.value = np.zeros(0)  # its value there
        self.spacing = np.zeros(0)  # its run's spacing in seconds (0: its last was one step; NaN: not known)
        self.times = np.zeros(0, np.int64)  # spacings of that run in a row
        self.seen = np.zeros(0)  # the step it answers on (0: none seen)
        self.steady: Steady | None = None
        self.longest = 0.0
        self.reach = reach
        self._told = False
        self._recent: list[tuple[Sequence[Mapping[str, str]], IntArray]] = []  # newest first
        # Series answered once, let go of 20 steps after it: their sorted labels' hash -> that answer's step,
        # kept ``reach`` for a next answer (100 B each, against 1 KB for a label set and its slot).
        self._once: dict[int, float] = {}
        self._pruned = -np.inf

    def held(self) -> tuple[list[int], list[Mapping[str, str]]]:
        """The slots of the series it holds, in order, and their label sets (``anomaly.coarsestate``)."""
        slots = sorted(self._slots.values())
        return slots, [self._labels[s] or {} for s in slots]

    @classmethod
    def restored(
        cls,
        source: str,
        query: str,
        reach: float,
        labels: Sequence[Mapping[str, str]],
        kept: Mapping[str, np.ndarray],
    ) -> SeriesSteps:
        """One holding ``labels``, series ``i`` in slot ``i`` with its state at ``i`` of each ``KEPT`` array
        of ``kept`` (as many as ``labels``), as the process before this one learnt it."""
        steps = cls(source, query, reach)
        n = len(labels)
        size = max(64, n)
        for key in KEPT:
            whole = np.zeros(size, getattr(steps, key).dtype)
            whole[:n] = kept[key]
            setattr(steps, key, whole)
        steps.last[n:] = np.nan
        steps._slots = {tuple(sorted(lab.items())): slot for slot, lab in enumerate(labels)}
        steps._labels = [*labels, *([None] * (size - n))]
        steps._free = list(range(size - 1, n - 1, -1))
        steps.longest = float(steps.seen.max(initial=0.0))
        steps._told = bool(steps.longest)  # warned by the process before
        return steps

    def carry(self, frame: Frame, step: float, *, told: bool) -> Frame:
        """``frame`` with each coarse series' last answer over its empty steps before its next answer is due
        (rows added for the series absent from the read); ``told``: the query's step was warned of."""
        ts, values = frame.timestamps, frame.values
        answered = np.isfinite(values)
        if self._steady(frame, step) and answered.all():
            self.steady = (frame.labels, float(ts[-1]), np.ascontiguousarray(values[:, -1]))
            return frame
        if self.steady is not None:  # those series answered up to then one step apart: not known by slot
            self._unsteady(self.steady, step, told=told)
            self.steady = None
        slots = self._slots_for(frame.labels)
        row_of = np.full(self.last.size, -1, np.int64)
        row_of[slots] = np.arange(slots.size)
        out = values
        carried: list[tuple[IntArray, int, FloatArray]] = []  # slots absent from the read, column, values
        skip = _repeated(ts, answered, step)
        coarse = bool(self.seen.any())
        followed = float(self.last[slots].max(initial=-np.inf))  # answers up to it were (``_after_last``)
        for j, t in enumerate(ts.tolist()):
            if skip[j] and not coarse:
                continue
            if j and skip[j - 1]:
                before = self._after_last(
                    np.flatnonzero(answered[:, j - 1]), slots, float(ts[j - 1]), followed
                )
                self.last[slots[before]], self.value[slots[before]] = ts[j - 1], values[before, j - 1]
            rows = self._after_last(np.flatnonzero(answered[:, j]), slots, t, followed)
            coarse = self._follow(slots[rows], t, step, told=told) or coarse
            self.last[slots[rows]], self.value[slots[rows]] = t, values[rows, j]
            every = self._carried_step(step)
            with np.errstate(invalid="ignore"):
                due = np.flatnonzero((every > 0) & (self.last < t) & (t < self.last + every - step / 2))
            if not due.size:
                continue
            if out is values:
                out = values.copy()
            row = row_of[due]
            out[row[row >= 0], j] = self.value[due[row >= 0]]
            carried.append((due[row < 0], j, self.value[due[row < 0]]))
        self._forget(float(ts[-1]), step)
        self.longest = float(self.seen.max(initial=0.0))
        # Every series read answered its last step one step after its previous answer, and none is coarse,
        # on its way to being seen so, or answered once only, in the last 20 steps: every series answers
        # every step (again). One whose last answer is older is kept through it, for its next answer.
        with np.errstate(invalid="ignore"):
            recent = ts[-1] - self.last <= MIN_STEPS * step
        runs = self.longest or (recent & ~(self.spacing == 0)).any()
        if not runs and (self.spacing[slots] == 0).all() and (self.last[slots] == ts[-1]).all():
            self._reset(frame.labels, float(ts[-1]), np.ascontiguousarray(values[:, -1]))
        return frame if out is values else self._with(frame, out, carried)

    def _after_last(self, rows: IntArray, slots: IntArray, t: float, followed: float) -> IntArray:
        """The ``rows`` whose series last answered before ``t`` (or never): an answer at or before a series'
        last was followed already, by the process before this one (a warm-up's hour read over a snapshot's
        state, ``anomaly.coarsestate``); counted again, its spacing went back and its run started anew.
        ``followed``: the newest last answer of the read's series (none is looked at after it)."""
        if t > followed:
            return rows
        known = self.last[slots[rows]] >= t
        return rows[~known] if known.any() else rows

    def _carried_step(self, step: float) -> FloatArray:
        """Per slot, the step its last answer is read again over (0: none): the step seen for it, else, for a
        series new to the query (answered once) or on its way to the shortest step seen of the query's
        series, that step.

        A series relabelled among series at different phases (a GPU's job ended and its ``pod`` label went)
        takes ten answers to be seen on its step: it was absent from every other read until then, and
        ``GpuLost`` fired for a GPU answering every scrape. A filter's series is not carried so: it passes
        where it answers."""
        seen = self.seen[self.seen > 0]
        if not seen.size or self.reach <= MIN_STEPS * step:
            return self.seen
        shortest = float(seen.min())
        joining = (self.seen == 0) & (np.isnan(self.spacing) | (self.spacing == shortest))
        return np.where(joining, shortest, self.seen)

    def _with(self, frame: Frame, out: FloatArray, carried: list[tuple[IntArray, int, FloatArray]]) -> Frame:
        """``frame`` with the values ``out``, and a row for each series absent from it that was ``carried``
        (its slots, the column, their values)."""
        labels = list(frame.labels)
        # A carried answer is a sample: where the frame says which cells hold one, so does the result.
        present = None if frame.present is None else frame.present | ~np.isnan(out)
        absent = np.concatenate([c[0] for c in carried])
        if absent.size:
            added, index = np.unique(absent, return_inverse=True)
            more = np.full((added.size, frame.timestamps.size), np.nan)
            more[index, np.concatenate([np.full(c[0].size, c[1]) for c in carried])] = np.concatenate(
                [c[2] for c in carried]
            )
            labels.extend(self._labels[slot] or {} for slot in added.tolist())
            out = np.vstack([out, more])
            present = None if present is None else np.vstack([present, ~np.isnan(more)])
        return Frame(frame.query, labels, frame.timestamps, out, frame.kind, present)

    def _unsteady(self, steady: Steady, step: float, *, told: bool) -> None:
        """The steady series by slot again, each last answered at the steady reads' last step.

        A series kept for its next answer (``_reset``) that came back at a step where another left is among
        them, though their count did not change: its spacing is counted there (it answered that step when it
        came back at the last steady read, as one answering on a coarser step does), else its run was lost."""
        labels, at, latest = steady
        slots = self._slots_for(labels)
        back = np.isfinite(self.last[slots])  # a new slot's last is -inf
        self.spacing[slots[~back]], self.times[slots[~back]] = 0.0, 0
        self._follow(slots[back], at, step, told=told)
        self.last[slots], self.value[slots] = at, latest

    def _reset(self, labels: Sequence[Mapping[str, str]], at: float, latest: FloatArray) -> None:
        """Nothing kept by slot but the series absent from ``labels`` that answered once or after a gap (their
        next answer may be an hour off): ``labels`` answered at ``at`` (``latest``), each one step after its
        previous."""
        self.steady = (labels, at, latest)
        self._recent.clear()
        kept = np.isfinite(self.last) & ~(self.spacing == 0)
        self._slots = {
            tuple(sorted((self._labels[s] or {}).items())): s for s in np.flatnonzero(kept).tolist()
        }
        self._labels = [lab if keep else None for lab, keep in zip(self._labels, kept.tolist(), strict=True)]
        self._free = np.flatnonzero(~kept).tolist()
        self.last[~kept] = np.nan

    def _steady(self, frame: Frame, step: float) -> bool:
        """Whether ``frame`` reads as many series as the steady ones at the steps after the last read.

        Counted, not compared (comparing 250,000 label sets took 0.14 s a read): a series swapped for
        another at the same step is taken as answering on, and one back there after an absence has its
        spacing counted at the last steady read when the count changes (``_unsteady``); a series that
        leaves, or one that comes back, alone changes the count."""
        if self.steady is None:
            return False
        labels, at, _ = self.steady
        spacings = np.diff(frame.timestamps, prepend=at)
        return len(labels) == len(frame.labels) and bool((np.abs(spacings - step) < step / 2).all())

    def _slots_for(self, labels: Sequence[Mapping[str, str]]) -> IntArray:
        """Each label set's slot; new ones get a free slot with nothing known.

        The last few reads' label sets are kept with their slots: series at different phases answer in
        turns, so a read's label sets are most often those of a read a few steps before (compared in C,
        at a tenth of the cost of hashing each)."""
        for old, slots in self._recent:
            if len(old) == len(labels) and old == labels:
                return slots
        out = np.empty(len(labels), np.int64)
        for i, lab in enumerate(labels):
            key = tuple(sorted(lab.items()))  # one series whatever its keys' order
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = self._free.pop() if self._free else self._grow()
                self._labels[slot] = lab
                # Not answered yet (-inf: forgotten at the end of the read if it is not), or last answered
                # once, 20 steps or more ago; no spacing known.
                last = self._once.pop(hash(key), -np.inf) if self._once else -np.inf
                self.last[slot], self.spacing[slot], self.times[slot], self.seen[slot] = last, np.nan, 0, 0
            out[i] = slot
        self._recent = [(labels, out), *self._recent[: RECENT - 1]]
        return out

    def _grow(self) -> int:
        slot = self.last.size
        size = max(64, 2 * slot)
        for name in ("last", "value", "spacing", "times", "seen"):
            old = getattr(self, name)
            new = np.zeros(size, old.dtype)
            new[:slot] = old
            setattr(self, name, new)
        self.last[slot:] = np.nan
        self._labels.extend([None] * (size - slot))
        self._free.extend(range(size - 1, slot, -1))
        return slot

    def _follow(self, slots: IntArray, t: float, step: float, *, told: bool) -> bool:
        """The spacings of these series' answers at ``t``, by ``CoarseSteps``' rule per series; whether any
        of them is now seen on a coarser step."""
        with np.errstate(invalid="ignore"):
            steps = np.rint((t - self.last[slots]) / step)
        known = np.isfinite(steps)
        slots, steps = slots[known], steps[known]
        off = off_grid(steps, self.seen[slots], step)
        if off.any():  # answers off the coarser grid: read on the asked step again
            self.seen[slots[off]] = 0.0
            logger.info(
                "promql: query %s: %d series answer off the step seen: read on its %gs step again",
                self.query,
                int(off.sum()),
                step,
                extra={"source": self.source, "query": self.query},
            )
        spacing, times = spacing_run(steps, step, self.spacing[slots], self.times[slots])
        self.spacing[slots], self.times[slots] = spacing, times
        confirmed = confirms(times, steps, self.seen[slots], spacing)
        if self.reach <= MIN_STEPS * step:  # a filter's series: as its query, no step over 20 asked steps
            confirmed &= spacing <= MIN_STEPS * step  # (one read may hold three: the warm-up's hour)
        if not confirmed.any():
            return False
        self.seen[slots[confirmed]] = spacing[confirmed]
        if not told and not self._told:
            self._told = True
            longest = float(spacing[confirmed].max())
            logger.warning(
                "promql: query %s: series answer on a %gs step, not the %gs asked, at different"
                " phases (targets scraped, or rules evaluated, at different times): each is read at its last"
                " answer until its next is due; look back at least %gs (last_over_time(...[%gs]) of a"
                " selector, or --query.lookback-delta)",
                self.query,
                longest,
                step,
                longest,
                longest,
                extra={"source": self.source, "query": self.query},
            )
        return True

    @property
    def remembered(self) -> int:
        """The label sets kept (the series answered in the last 20 steps, or kept for their next answer)."""
        return len(self._slots)

    def _forget(self, now: float, step: float) -> None:
        """Series whose evidence is stale: not answered for 20 asked steps, or for twice their step seen or
        their run's spacing, up to ``reach``; one answered once only is let go of at 20 steps, its labels'
        hash kept until ``reach`` after that answer, so that its next answer still counts its spacing.

        Forgetting each at 20 steps, a series answering every 15 minutes at step 30 was forgotten before its
        next answer: its spacings never counted, it was absent from 29 reads in 30 for good. Keeping its
        label set two hours instead held 243,300 of them (240 MiB) where each read brings 1,000 series that
        answer once (pods living one scrape), 12 times what 20 steps held. One whose last answer was one
        step after the one before ended: it is forgotten at 20 steps, as before."""
        with np.errstate(invalid="ignore"):
            run = np.minimum(np.maximum(np.nan_to_num(2 * self.spacing), 2 * self.seen), self.reach)
            stale = now - self.last > np.maximum(MIN_STEPS * step, run)
            once = stale & np.isnan(self.spacing) & np.isfinite(self.last)
        if stale.any():
            self._recent.clear()  # their slots may be given to other series
        keep_once = self.reach > MIN_STEPS * step
        for slot, answered_once in zip(np.flatnonzero(stale).tolist(), once[stale].tolist(), strict=True):
            lab = self._labels[slot]
            if lab is not None:
                key = tuple(sorted(lab.items()))
                del self._slots[key]
                if answered_once and keep_once:
                    self._once[hash(key)] = float(self.last[slot])
            self._labels[slot] = None
            self.last[slot], self.seen[slot] = np.nan, 0.0
            self._free.append(slot)
        self._bound_once(now, step)

    def _bound_once(self, now: float, step: float) -> None:
        """Let go of the hashes older than ``reach``, and of the oldest past ``ONCE_MOST``.

        Kept ``reach`` (two hours) whatever the step, they grew as one over the step: at step 5 s with 1,000
        series answering once at every read, 1.4 million of them. Dropped oldest first (a dict keeps the
        order they were let go of in, their answers' order): a series that churn pushes out is read as new
        at its next answer, and its spacing is counted from the one after."""
        if self._once and now - self._pruned >= MIN_STEPS * step:  # every 20 steps: 0.05 s for 240,000
            self._pruned = now
            self._once = {h: t for h, t in self._once.items() if now - t <= self.reach}
        over = len(self._once) - ONCE_MOST
        if over > 0:
            for h in list(islice(self._once, over)):
                del self._once[h]
