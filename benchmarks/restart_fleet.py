"""The restart fuzz's fleet (``anomaly_restart_fuzz.py``): a seed's GPUs, daily cycle and faults, the samples
Prometheus holds of them (``FleetSource``), and the draws of each seed's restarts, hard faults, blank samples,
failed reads and mid-tick timing."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from restart_timing import Timing, draw_timing, failed_warm_ups, taken

from anomaly.needs import DBE, GPU_UP, XID_COUNTER
from anomaly.sources import Frame, SourceHealth
from gpuwarden.config_anomaly import AnomalyConfig

EVERY = 300.0
DAY = 86_400.0
# The multivariate detector's (temperature, power, SM clock, utilisation, memory), which the fleet and thermal
# detectors read too, and a step time for the level-shift detector.
QUERIES = (*AnomalyConfig().multivariate_queries, "train_step_time_seconds")
_BASE = (55.0, 250.0, 1400.0, 40.0, 20_000.0, 1.0)
_BUSY = (25.0, 350.0, 300.0, 50.0, 30_000.0, 0.2)


@dataclass(frozen=True)
class Fault:
    """One fault, from tick ``start`` to ``end`` (relative to the run's first tick; below 0: the history)."""

    kind: str  # hot, clock, shift, down
    target: int  # the GPU (the node for down)
    start: int
    end: int


@dataclass
class Fleet:
    """A seed's fleet and faults, and its values at any time: Prometheus' history."""

    seed: int
    gpus: int
    nodes: int
    faults: list[Fault]
    t0: float
    hard: list[Fault] | None = None  # XID 79s and DBEs (kind xid or dbe, at tick start), with --hard-faults
    blanks: list[Fault] = field(default_factory=list)  # temperatures read as NaN or +Inf, --blank-samples
    failed: list[Fault] = field(default_factory=list)  # a query's tick reads failing (target), --failed-reads
    timing: Timing = field(default_factory=Timing)  # where restarts land between ticks, --mid-tick
    warm_failed: dict[int, int] = field(
        default_factory=dict
    )  # per restart, a query failing, --failed-warm-ups
    labels: list[dict[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        per = self.gpus // self.nodes
        self.labels = [
            {"Hostname": f"n{i // per}", "gpu": str(i % per), "UUID": f"GPU-{self.seed}-{i}"}
            | {"modelName": "H100", "slurm_job": f"job{i // per}"}
            for i in range(self.gpus)
        ]

    def values(self, t: float) -> np.ndarray:
        """Every query's value of every GPU at ``t`` (query x GPU); NaN for a GPU of a node down."""
        rng = np.random.default_rng([self.seed, int(t)])
        busy = 0.5 + 0.5 * math.sin(2 * math.pi * ((t % DAY) / 3600.0 - 9) / 24)
        out = np.array([b + u * busy for b, u in zip(_BASE, _BUSY, strict=True)])[:, None] * (
            1 + 0.01 * rng.standard_normal((len(QUERIES), self.gpus))
        )
        tick = math.floor((t - self.t0) / EVERY)
        per = self.gpus // self.nodes
        for f in self.faults:
            if not f.start <= tick < f.end:
                continue
            if f.kind == "hot":
                out[0, f.target] += 25.0
            elif f.kind == "clock":
                out[2, f.target] *= 0.6
            elif f.kind == "shift":
                out[5, f.target] *= 1.3
            else:
                out[:, f.target * per : (f.target + 1) * per] = np.nan
        return out


class FleetSource:
    """The fleet's history on the tick's grid, as Prometheus answers a range query: a series without any
    sample in the range is not returned."""

    name = "prometheus"

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._health = SourceHealth(self.name)
        self._done: dict[str, float] = {}  # per query, the end of its last good read (``--failed-reads``)
        # The queries whose reads fail now, set by the run around the read it fails (``_Reads.failing``): the
        # tick was told from the read's end, which reads past the grid after a mid-tick restart.
        self.failing: frozenset[str] = frozenset()

    def read(self, start: float, end: float) -> list[Frame]:
        """As ``_frames``; with failed reads (``Fleet.failed``, ``Fleet.warm_failed``) each query from its own
        last good read, as ``PromQLSource`` reads them, a query in ``failing`` left out."""
        if not (self.fleet.failed or self.fleet.warm_failed):
            return self._frames(start, end)
        out = []
        for query in QUERIES:
            if query in self.failing:
                continue
            since = min(start, self._done.get(query, start))
            got = [f for f in self._frames(since, end) if f.query == query]
            if got:
                self._done[query] = end
            out.extend(got)
        extra = set(QUERIES)
        return [*out, *(f for f in self._frames(start, end) if f.query not in extra)]

    def resume(self, read: Mapping[str, float], default: float) -> None:
        """As ``PromQLSource.resume``: each query not read yet from ``read[query]``, else ``default``."""
        for query in QUERIES:
            self._done.setdefault(query, read.get(query, default))

    def _frames(self, start: float, end: float) -> list[Frame]:
        ts = np.arange(math.floor(start / EVERY) * EVERY + EVERY, end + 1, EVERY)
        ts = ts[(ts > start) & (ts <= end)]
        # Stamped when read, as ``PromQLSource`` and ``InProcessSource`` stamp theirs (the clock's time),
        # not at the read's end: that lags the clock by ``--mid-tick``'s latency, which past
        # ``stale_after_seconds`` (240 s) held ``GpuwardenSourceStale`` firing while every read succeeded.
        self._health.succeeded(end + self.fleet.timing.latency, self.fleet.gpus)
        return self.frames_at(ts) if ts.size else []

    def frames_at(self, ts: np.ndarray) -> list[Frame]:
        """Every query's samples at the times ``ts`` (Prometheus' scrapes of them for ``--promql``)."""
        cube = np.stack([self.fleet.values(t) for t in ts.tolist()], axis=2)  # query x GPU x time
        # Which GPUs report, read before ``_blank`` writes NaN or +Inf into the temperatures: a blank sample
        # is one of a GPU that is up (read after, ``gpu_up`` lost the GPU for the blank's ticks).
        up = np.isfinite(cube[0])
        seen = up.any(axis=1)
        labels = [lab for lab, s in zip(self.fleet.labels, seen.tolist(), strict=True) if s]
        present = self._blank(cube[0], ts)
        frames = [
            Frame(
                q,
                labels,
                ts,
                cube[k][seen],
                present=present[seen] if k == 0 and present is not None else None,
            )
            for k, q in enumerate(QUERIES)
        ]
        if self.fleet.hard is not None:
            frames.extend(self._hard(ts, up, seen))
        return frames

    def _blank(self, temperature: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
        """Set the blank samples (``Fleet.blanks``) of ``temperature`` (GPU x time) where its GPU is up; which
        cells hold a sample where one is NaN, else None."""
        ticks = np.floor((ts - self.fleet.t0) / EVERY)
        up = np.isfinite(temperature)
        for f in self.fleet.blanks:
            at = up[f.target] & (ticks >= f.start) & (ticks < f.end)
            temperature[f.target, at] = math.nan if f.kind == "nan" else math.inf
        return up if any(f.kind == "nan" for f in self.fleet.blanks) else None

    def _hard(self, ts: np.ndarray, up: np.ndarray, seen: np.ndarray) -> list[Frame]:
        """gpu_up, the DBE counter, and each XID 79 counter series from its first event on (none before)."""
        ticks = np.floor((ts - self.fleet.t0) / EVERY)
        dbe, xid = np.zeros((2, self.fleet.gpus, ts.size))
        for f in self.fleet.hard or ():
            (xid if f.kind == "xid" else dbe)[f.target] += ticks >= f.start
        xid = np.where(up & (xid > 0), xid, np.nan)
        created = np.isfinite(xid).any(axis=1)
        labels = [lab for lab, s in zip(self.fleet.labels, seen.tolist(), strict=True) if s]
        xids = [{**lab, "xid": "79"} for lab, c in zip(self.fleet.labels, created.tolist(), strict=True) if c]
        frames = [
            Frame(GPU_UP, labels, ts, np.where(up, 1.0, np.nan)[seen]),
            Frame(DBE, labels, ts, np.where(up, dbe, np.nan)[seen], kind="counter"),
        ]
        return [*frames, Frame(XID_COUNTER, xids, ts, xid[created], kind="counter")] if xids else frames

    def health(self) -> SourceHealth:
        return self._health


def draw(
    seed: int,
    steps: int,
    hard: bool = False,
    blank: bool = False,
    failed: bool = False,
    *,
    mid_tick: bool = False,
    failed_warm_up: bool = False,
    failed_warm_up_ticks: int = 0,
) -> tuple[Fleet, dict[int, tuple[int, int]]]:
    """The seed's fleet and faults, and its restarts: before which tick, ticks down, ticks lost (a crash);
    with ``hard``, its hard faults too (``--hard-faults``); with ``blank``, its blank samples
    (``--blank-samples``); with ``failed``, its failed reads (``--failed-reads``); with ``mid_tick``, its
    restarts' timing (``--mid-tick``); with ``failed_warm_up``, its warm-ups' failed reads, failing
    ``failed_warm_up_ticks`` more into the restarted process' ticks."""
    rng = random.Random(seed)
    nodes = rng.randint(2, 4)
    gpus = nodes * 4
    faults = []
    for _ in range(rng.randint(2, 5)):
        kind = rng.choice(("hot", "hot", "clock", "shift", "down"))
        start = rng.randint(-12, steps - 2)
        length = rng.randint(2, 8) if kind == "down" else rng.randint(3, 20)
        target = rng.randrange(nodes if kind == "down" else gpus)
        faults.append(Fault(kind, target, start, start + length))
    restarts = {}
    between = range(2, steps - 1)  # a restart after the first tick and before the last
    wanted = rng.randint(1, 3)  # drawn before the sample, as it always was: the streams stay as they were
    for at in sorted(rng.sample(between, min(wanted, len(between)))):  # a short run (--steps 5) has fewer
        restarts[at] = (rng.randint(0, 3), rng.choice((0, 0, rng.randint(1, 4))))
    # A restart while a node is down past forget_after_seconds (3 ticks): its GPUs' thermal lines are parked
    # then, and judge them when it is back. Drawn apart from the stream, so the draws above stay as they were.
    inside = random.Random(f"restart-while-down-{seed}")
    for f in faults:
        if (
            f.kind == "down"
            and f.end - f.start > 4
            and 2 <= f.start + 4 < steps - 1
            and inside.random() < 0.7
        ):
            restarts.setdefault(f.start + 4, (inside.randint(0, 1), 0))
    fleet = Fleet(seed, gpus, nodes, faults, t0=1_767_225_600.0 + rng.randrange(7) * DAY)
    if hard:
        fleet.hard = _hard_faults(seed, steps, gpus, restarts)
    if blank:
        fleet.blanks = _blank_samples(seed, steps, gpus, restarts)
    if mid_tick:
        fleet.timing = draw_timing(seed, restarts)
    if failed:
        fleet.failed = _failed_reads(seed, restarts, fleet.timing, steps)
    if failed_warm_up:
        fleet.warm_failed, straight = failed_warm_ups(
            seed, restarts, len(QUERIES), fleet.timing, failed_warm_up_ticks
        )
        fleet.failed += [Fault("failed", query, start, end) for query, start, end in straight if end > start]
    return fleet, restarts


def _failed_reads(seed: int, restarts: dict[int, tuple[int, int]], timing: Timing, steps: int) -> list[Fault]:
    """One query's read failing at the tick whose save each restart takes up (the last tick before it, or the
    last a crash did not lose), the others read. So not at a tick the restarted run never ran (while it was
    down, or with ``--mid-tick`` before the first tick of the process started then, ``Timing.first_live``:
    the straight run's failure there is no restart's to catch up; seed 284), nor at one a later crash loses
    (it takes up an older save and reads that tick again from Prometheus, where it is whole: a failure the
    dead process saw and lost is no restart's to repeat; seed 42). A crash loses saves, one per tick run, not
    ticks: one losing 4 across an earlier restart's downtime takes up a save from before the tick 4 ticks
    back (seed 275). Every restart after the tick counts, not only those after the one taking it up: one
    whose crash took up an older save came before a later restart that took up the tick's again (seed 469:
    restarts before ticks 19 and 22, each losing 3 saves, took up those of ticks 12 and 13). The ticks and
    restarts are those ``run`` runs (``_kept_saves``). Nor at the first tick a process scores: its warm-up
    read the query whole just before (the harness fails live reads only), so it held over the sample the tick
    before failed and scored it there, where the straight run, failing it again, caught it up a tick later
    (seed 1346: restarts before ticks 40 and 41, the temperature failing at 39 and 40)."""
    rng = random.Random(f"failed-reads-{seed}")
    kept = _kept_saves(restarts, timing, steps)
    firsts = {timing.first_live(at, restarts[at][0]) for at, _ in kept}
    ticks: list[int] = []
    for _, tick in kept:
        if (
            tick is not None
            and tick not in ticks
            and tick not in firsts
            and all(t is None or t >= tick for at, t in kept if at > tick)
        ):
            ticks.append(tick)
    return [Fault("failed", rng.randrange(len(QUERIES)), t, t + 1) for t in ticks]


def _kept_saves(
    restarts: dict[int, tuple[int, int]], timing: Timing, steps: int
) -> list[tuple[int, int | None]]:
    """Per restart ``run`` takes (``taken``), in order, its tick and the tick whose save it takes up (None: no
    tick ran before it): the ``lost``-th before the last of the ticks run before it, one save each (``run``
    keeps the last five; a crash loses at most four). No tick runs from a restart to its process' first
    (``Timing.first_live``)."""
    runs = [at for at in taken(restarts, timing) if at < steps]
    stopped = [(at, timing.first_live(at, restarts[at][0])) for at in runs]
    ran = [t for t in range(steps) if not any(at <= t < live for at, live in stopped)]
    kept: list[tuple[int, int | None]] = []
    for at in runs:
        saves = [t for t in ran if t < at]
        kept.append((at, saves[-1 - min(restarts[at][1], len(saves) - 1)] if saves else None))
    return kept


def _blank_samples(seed: int, steps: int, gpus: int, restarts: dict[int, tuple[int, int]]) -> list[Fault]:
    """A GPU's temperature read as NaN or +Inf for 1-3 ticks from each restart (the ticks it missed, a crash's
    lost ones before them), and from one or two ticks at random."""
    rng = random.Random(f"blank-samples-{seed}")
    starts = [max(0, at - lost) for at, (_, lost) in sorted(restarts.items())]
    starts += [rng.randrange(steps) for _ in range(rng.randint(1, 2))]
    return [Fault(rng.choice(("nan", "inf")), rng.randrange(gpus), t, t + rng.randint(1, 3)) for t in starts]


def _hard_faults(seed: int, steps: int, gpus: int, restarts: dict[int, tuple[int, int]]) -> list[Fault]:
    """An XID 79 or a DBE on a GPU while each restart with downtime has the service stopped, and one or two
    at any tick."""
    rng = random.Random(f"hard-faults-{seed}")
    ticks = [rng.randrange(at, at + down) for at, (down, _) in sorted(restarts.items()) if down]
    ticks += [rng.randrange(steps) for _ in range(rng.randint(1, 2))]
    return [Fault(rng.choice(("xid", "dbe")), rng.randrange(gpus), t, steps) for t in ticks]
