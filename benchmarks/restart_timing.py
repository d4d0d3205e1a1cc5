"""When the restart fuzz's restarts land between ticks, and which warm-up reads fail
(``anomaly_restart_fuzz.py --mid-tick``, ``--failed-warm-ups``).

Whole-tick restarts (the fuzz without ``--mid-tick``) start each new process on the 5-minute grid, its
reads ending where the old one's did, so a warm-up after a snapshot never replayed a tick ending past what
it read: the defect ``ServiceCore.read_until`` fixed (a save dated past its own read, refused by a restart
at once) was out of its reach. With ``--mid-tick`` the service reads ``latency`` behind its clock
(``latency_offset_seconds``), the straight run's reads end ``phase`` seconds past the grid, each restart's
process starts ``starts[at]`` seconds past the tick it would have come at (its ticks every 5 minutes from
there, as ``anomaly run`` schedules them from its start), and some are stopped again ``again[at]`` seconds
after that, before their first tick, and started at once from the state saved at that stop.

A tick is compared with the straight run's tick that read the same sample (the 5-minute cell its read ends
in): a restart whose reads moved past a sample scores that sample in its warm-up, and the straight tick
that read it has no restarted counterpart. Every read phase (how far past the grid reads end) lies within
``PHASES``, so a phase tells no two runs apart by itself: a series is forgotten when unseen for
``forget_after_seconds`` (a multiple of the tick) before the read's end, the same cell for every phase in
(0, 300) s but one cell later at 0; and the presence detector takes a GPU whose last sample is older than
``absent_after_seconds`` (90 s) for absent, so at a phase past 90 s every GPU looked absent at every tick
(the fleet one, too many to report, or, one node down, the others with it).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

EVERY = 300.0
PHASES = (1, 89)  # read phases, seconds past the grid (see the docstring)
LATENCIES = (0.0, 30.0, 90.0, 240.0)  # VictoriaMetrics' default 30 s, and longer


@dataclass(frozen=True)
class Timing:
    """A seed's read lag, read phase and restart offsets (all 0 for whole-tick restarts)."""

    latency: float = 0.0
    phase: float = 0.0
    starts: dict[int, float] = field(default_factory=dict)
    again: dict[int, float] = field(default_factory=dict)
    before: dict[int, float] = field(default_factory=dict)  # per restart, the read phase before it

    def first_clock(self, t0: float) -> float:
        """The clock when the runs start: reads ending ``phase`` past the grid, ``latency`` behind it."""
        return t0 + self.latency + self.phase

    def step(self, t0: float, tick_time: float) -> int:
        """The step of a tick at ``tick_time``: the straight run's tick that read the same last sample."""
        return math.floor((tick_time - self.latency - t0) / EVERY) - 1

    def first_live(self, at: int, down: int) -> int:
        """The step of the first tick the process started at restart ``at`` scores (its warm-up read the
        samples of those before it)."""
        moved = self.before.get(at, self.phase) + self.starts.get(at, 0.0) + self.again.get(at, 0.0)
        return at + down + math.floor(moved / EVERY)


def taken(restarts: Mapping[int, tuple[int, int]], timing: Timing | None = None) -> list[int]:
    """The restarts ``run`` takes: one drawn within another's downtime is skipped, or with ``timing``
    (``--mid-tick``) before the first tick of the process the other started (``Timing.first_live``): ``run``
    goes on from there. Seed 228 (40 steps): the restart before tick 25 lay there, ``draw_timing`` moved the
    read phase on by a start never made, and the live reads ended 278 s past the grid, past
    ``absent_after_seconds``: every GPU read as absent, so no ``NodeDown`` for the node truly down."""
    timing = timing if timing is not None else Timing()
    out: list[int] = []
    live = -math.inf
    for at, (down, _) in sorted(restarts.items()):
        if at > live:
            out.append(at)
            live = timing.first_live(at, down)
    return out


def draw_timing(seed: int, restarts: Mapping[int, tuple[int, int]]) -> Timing:
    """``seed``'s mid-tick timing, drawn apart from the fuzz's stream; half the restarts stopped again."""
    rng = random.Random(f"mid-tick-{seed}")
    latency = rng.choice(LATENCIES)
    phase = read = float(rng.randint(*PHASES))
    starts: dict[int, float] = {}
    again: dict[int, float] = {}
    before: dict[int, float] = {}
    live = -math.inf
    for at, (down, _) in sorted(restarts.items()):
        if at <= live:  # not taken (``taken``): within the downtime of the one before, as it ends mid-tick
            continue
        before[at] = read
        starts[at] = _offset(rng, read)
        read = (read + starts[at]) % EVERY
        if rng.random() < 0.5:
            again[at] = _offset(rng, read)
            read = (read + again[at]) % EVERY
        live = Timing(latency, phase, starts, again, before).first_live(at, down)
    return Timing(latency, phase, starts, again, before)


def _offset(rng: random.Random, read: float) -> float:
    """1-299 s that leave the read phase ``read`` within ``PHASES``: past the grid (a sample read later
    than before, as the defect ``read_until`` fixed needs) or not."""
    while True:
        offset = float(rng.randint(1, int(EVERY) - 1))
        if PHASES[0] <= (read + offset) % EVERY <= PHASES[1]:
            return offset


def failed_warm_ups(
    seed: int, restarts: Mapping[int, tuple[int, int]], queries: int, timing: Timing, longer: int = 0
) -> tuple[dict[int, int], list[tuple[int, int, int]]]:
    """A restart while Prometheus fails a query: per restart (most of those that lost no tick), the query
    whose reads fail (HTTP 503) at its warm-ups; and the ticks the straight run reads it failing, (query,
    first step, step after the last): those from the first the restart missed to the last its warm-up read.
    Drawn apart from the fuzz's stream.

    The failure spans the restart, so the two runs read alike: the straight run catches the query up at the
    first tick after it, which is the restarted process's first. Not after a crash that lost ticks: the dead
    process read them whole, the straight run with it; its successor cannot read them again while the query
    fails, and feeds them late, at the first tick it reads the query (a restart's loss, not a defect). Nor
    before a crash that takes up a save from before it (``_saved_before``).

    ``longer`` (``--failed-warm-up-ticks``): the query fails that many ticks more, into the restarted
    process' own ticks (the two runs read it failing alike there), up to the next restart's ticks missed or
    lost: a failure there would be that restart's to miss."""
    rng = random.Random(f"failed-warm-ups-{seed}")
    warm: dict[int, int] = {}
    straight: list[tuple[int, int, int]] = []
    runs = taken(restarts, timing)
    for k, at in enumerate(runs):
        down, lost = restarts[at]
        if lost or rng.random() >= 0.7 or _saved_before(at, restarts, timing):
            continue
        warm[at] = rng.randrange(queries)
        end = timing.first_live(at, down) + longer
        if k + 1 < len(runs):
            end = min(end, runs[k + 1] - restarts[runs[k + 1]][1])
        straight.append((warm[at], at, end))
    return warm, straight


def _saved_before(at: int, restarts: Mapping[int, tuple[int, int]], timing: Timing) -> bool:
    """Whether a later crash takes up a save from before restart ``at``'s first tick: it loses at least the
    saves made since (one per tick run). Its warm-up reads the ticks the straight run read failing whole,
    where the straight run fed them late, at its catch-up: the crash's loss, not the service's (seeds 10
    and 13 of ``--promql --mid-tick --failed-warm-ups``, 20 steps)."""
    ran, first = 0, timing.first_live(at, restarts[at][0])
    for later in (t for t in taken(restarts, timing) if t > at):
        down, lost = restarts[later]
        ran += max(0, later - first)
        if lost >= ran:
            return True
        first = timing.first_live(later, down)
    return False
