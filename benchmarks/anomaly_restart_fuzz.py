"""Restart equivalence fuzz of the anomaly service: one JSON line.

``restart_fuzz.py`` holds ``serve``'s incident engine to "a restart changes nothing users see"; this holds
``anomaly run`` to it. For each seed it draws a fleet (8-16 GPUs, 2-4 nodes, a training job on each node), a
daily cycle with noise, faults (a GPU running hot, its SM clock cut, its step time shifted, a node down for
up to 40 minutes, past ``forget_after_seconds``, some begun in the history before the run) and 1-3 restarts
(each down for 0-3 ticks; after a graceful stop, or after a crash that lost the 1-4 ticks since the last
interval save), plus, in most outages longer than 4 ticks, one while the node is down (its GPUs' thermal
lines parked). It runs the service (ticks of 5 minutes, seasonality on, every query adaptive) twice on the
same Prometheus history: straight through, and restarted. A restart warms a new service up as ``anomaly
run`` does: with ``--snapshot`` from the state the old one saved (``AnomalyService.snapshot``, the history
after it replayed), without it from the hour of history alone (the behaviour before snapshots), serve's hold
of the alerts the old one had firing told (``warm_up(held)``). At every tick the restarted run scored, the two
runs' scores (per detector, query and series) are compared (``divergent``: the seeds with any difference, and
per seed the first, ``--show SEED`` to stderr), and apart from them the alerts the service holds firing or
recalled (``firing_divergent``; without a snapshot a restart recalls its alerts, raised again after
``pending_ticks``, and a downtime past serve's hold ends them).

``--hard-faults`` adds what the ``signatures`` detector reads (``gpuwarden_gpu_up``, the XID counters, the
double-bit ECC counter) and 2-4 hard faults, most while a restart has the service stopped: an XID 79 (its
counter series created by it) or a DBE on one GPU. Drawn apart from the stream, so a seed's fleet, faults
and restarts are those it has without the flag.

``--blank-samples`` adds temperatures read as samples that are no number, for 1-3 ticks from the first tick
each restart missed and from 1-2 ticks at random: ``NaN`` (Prometheus' answer for 0/0; the frame says those
cells hold samples, ``Frame.present``) or ``+Inf``. A live tick reads such a GPU as a gap row; the warm-up's
replay of the ticks a restart missed must read it so too. Drawn apart from the stream, as the hard faults.

``--failed-reads`` fails one query's read at the tick before each restart's snapshot, the others read; the
source reads each query on from its own last good read, as ``PromQLSource`` does, so the straight run reads
the failed tick's samples at the next tick, and a restart must too. Drawn apart, as the hard faults.

``--promql`` has every service (the uninterrupted one and each restarted one, a new source per process) read
through a real ``PromQLSource`` over HTTP from a Prometheus stand-in (``fleet_prometheus.py``: the tests'
``FakePrometheus`` answering ``query_range`` from the fleet's samples, each node scraped every minute at a
phase of its own, Prometheus' 5-minute lookback and staleness markers), one bare-selector query per metric on
the tick's step, and in half the seeds ``min_over_time(gpuwarden_gpu_up[5m])`` (sent guarded): its range
edges, coarse-step tracking and per-query catch-up after a failed read (``--failed-reads``: an HTTP 503 of
the query) run as in ``anomaly run``. Drawn apart, as the hard faults.

``--mid-tick`` lands restarts between ticks, the service's reads lagging its clock
(``latency_offset_seconds``) and ending off the grid, some processes stopped again before their first tick
and started at once from the state saved then; a tick is compared with the straight run's that read the
same sample (``restart_timing.py``).
``--failed-warm-ups`` fails one query (HTTP 503) from the first tick a restart misses through its warm-ups'
reads, the straight run reading it failing at those ticks (not after a crash that lost ticks). Drawn apart.

``firing_divergent`` compares the alerts each run holds by fingerprint and by what each says: labels,
recommended action, score within a tolerance (``alert_content.py``).

The multivariate model is fitted once at the first start (``fit_every_seconds`` a day, past the run): its
scheduled refits come ``fit_every`` after each process start, so no restart keeps their times.

    PYTHONPATH=. .venv/bin/python benchmarks/anomaly_restart_fuzz.py --seeds 0-19 --snapshot --promql
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from alert_content import AlertContent, alert_content, firing_divergence
from fleet_prometheus import RANGE_QUERY, FleetPrometheus, scrape_phases, with_range_query
from restart_timing import Timing, draw_timing, failed_warm_ups
from seed_list import SEEDS_HELP, seed_list

from anomaly.forwarder import held_seconds
from anomaly.needs import DBE, GPU_UP, XID_COUNTER
from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from anomaly.snapshot import Snapshot, load_snapshot, write_snapshot
from anomaly.sources import Frame, Source, SourceHealth
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig

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
        self._health.succeeded(end, self.fleet.gpus)
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
) -> tuple[Fleet, dict[int, tuple[int, int]]]:
    """The seed's fleet and faults, and its restarts: before which tick, ticks down, ticks lost (a crash);
    with ``hard``, its hard faults too (``--hard-faults``); with ``blank``, its blank samples
    (``--blank-samples``); with ``failed``, its failed reads (``--failed-reads``); with ``mid_tick``, its
    restarts' timing (``--mid-tick``); with ``failed_warm_up``, its warm-ups' failed reads."""
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
    for at in sorted(rng.sample(range(2, steps - 1), rng.randint(1, 3))):
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
    if failed:
        fleet.failed = _failed_reads(seed, restarts)
    if mid_tick:
        fleet.timing = draw_timing(seed, restarts)
    if failed_warm_up:
        fleet.warm_failed, straight = failed_warm_ups(seed, restarts, len(QUERIES), fleet.timing)
        fleet.failed += [Fault("failed", query, start, end) for query, start, end in straight if end > start]
    return fleet, restarts


def _failed_reads(seed: int, restarts: dict[int, tuple[int, int]]) -> list[Fault]:
    """One query's read failing at the tick before each restart's snapshot (the last tick, or the last the
    crash did not lose), the others read; not at a tick the restarted run never read (while it was down: the
    straight run's failure there is no restart's to catch up), nor at one a later crash loses (the restart
    after it reads that tick again from Prometheus, where it is whole: a failure the dead process saw and
    lost is no restart's to repeat; seed 42), nor for a restart ``run`` skips (drawn within another's
    downtime)."""
    rng = random.Random(f"failed-reads-{seed}")
    taken: list[tuple[int, int, int]] = []
    for at, (down, lost) in sorted(restarts.items()):
        if not taken or at > taken[-1][0] + taken[-1][1]:
            taken.append((at, down, lost))
    stopped = {t for at, down, _ in taken for t in range(at, at + down)}
    stopped |= {t for at, _, lost in taken for t in range(at - lost, at)}  # lost by a crash, read again
    ticks = [at - 1 - lost for at, _, lost in taken if at - 1 - lost >= 0 and at - 1 - lost not in stopped]
    return [Fault("failed", rng.randrange(len(QUERIES)), t, t + 1) for t in ticks]


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


def config(queries: Sequence[PromQuery] = (), latency: float = 0.0) -> AnomalyConfig:
    """The service's settings; ``queries``: those it reads from Prometheus (``--promql``); ``latency``: how
    far behind the clock it reads (``--mid-tick``)."""
    return AnomalyConfig(
        latency_offset_seconds=latency,
        queries=[AnomalyQueryConfig(name=q.name, expr=q.expr, step_seconds=q.step_seconds) for q in queries],
        infer_every_seconds=EVERY,
        fit_every_seconds=DAY,
        adaptive_metrics=["*"],
        adaptive_seasonality=True,
        presence_queries=[QUERIES[0]],
        thermal_warmup=10,  # its lines judge within the run (60 samples are 5 hours of 5-minute ticks)
    )


Tick = tuple[dict[tuple[str, str, str], float], dict[str, AlertContent]]
"""One tick as users see it: each score (detector, query, series) and the alerts serve holds firing, by
fingerprint, with what each says (``alert_content``)."""


def _seen(service: AnomalyService, findings: list[Any]) -> Tick:
    scores = {
        (f.detector, f.query, json.dumps(dict(f.labels[i]), sort_keys=True)): round(float(f.score[i]), 12)
        for f in findings
        if f.detector != "source"
        for i in range(len(f.labels))
    }
    held = (s.alert for s in (*service.firing.values(), *service._recalled.values()))
    return scores, {alert.fingerprint: alert_content(alert) for alert in held}


def promql_queries(fleet: Fleet) -> list[PromQuery]:
    """The queries ``--promql`` reads, each a bare selector of its metric on the tick's step; and in half the
    seeds ``RANGE_QUERY`` (``min_over_time``)."""
    names = [*QUERIES, *((GPU_UP, DBE, XID_COUNTER) if fleet.hard is not None else ())]
    queries = [PromQuery(name, name, EVERY) for name in names]
    return [*queries, RANGE_QUERY] if with_range_query(fleet.seed) else queries


class _Reads:
    """Where a run's services read the fleet: its in-process source, or Prometheus (``--promql``)."""

    def __init__(self, fleet: Fleet, prom: FleetPrometheus | None) -> None:
        self.fleet, self.prom = fleet, prom
        self.cfg = config(list(prom.queries) if prom is not None else (), fleet.timing.latency)
        self._open: PromQLSource | None = None
        self._fleet_source: FleetSource | None = None

    def source(self, clock: FakeClock) -> Source:
        """A new process' source (the old one's closed)."""
        self.close()
        if self.prom is None:
            self._fleet_source = FleetSource(self.fleet)
            return self._fleet_source
        self._open = self.prom.source(clock)
        return self._open

    def failing(self, step: int | None) -> None:
        """Fail the queries ``Fleet.failed`` fails at ``step``; None: none."""
        failed = () if step is None else self.fleet.failed
        self.fail([QUERIES[f.target] for f in failed if step is not None and f.start <= step < f.end])

    def fail(self, queries: list[str]) -> None:
        """Fail the reads of ``queries`` from now on, by Prometheus' 503 or in ``FleetSource``."""
        if self.prom is not None:
            self.prom.fail(queries)
        elif self._fleet_source is not None:
            self._fleet_source.failing = frozenset(queries)

    def close(self) -> None:
        if self._open is not None:
            self._open.close()
            self._open = None


def run(
    fleet: Fleet,
    steps: int,
    restarts: dict[int, tuple[int, int]],
    snapshot: bool,
    where: Path,
    prom: FleetPrometheus | None = None,
) -> dict[int, Tick]:
    """Each tick the run scored; restarted before each tick of ``restarts``; reading ``prom`` if given."""
    reads = _Reads(fleet, prom)
    try:
        return _run(reads, steps, restarts, snapshot, where)
    finally:
        reads.close()


def _run(
    reads: _Reads, steps: int, restarts: dict[int, tuple[int, int]], snapshot: bool, where: Path
) -> dict[int, Tick]:
    fleet, timing = reads.fleet, reads.fleet.timing
    clock = FakeClock(timing.first_clock(fleet.t0))
    service = AnomalyService(reads.cfg, [reads.source(clock)], clock)
    service.warm_up()
    saved: list[Snapshot] = []  # the state after each tick: a crash's snapshot is an older one
    out: dict[int, Tick] = {}
    step = 0
    while step < steps:
        if step in restarts:
            service = _restart(
                reads, clock, service, (step, *restarts[step]), saved if snapshot else None, where
            )
            step = timing.step(fleet.t0, clock.time() + EVERY)  # a mid-tick start may read a sample later
            if step >= steps:
                break
        clock.advance(EVERY)
        reads.failing(step)
        result = service.infer()
        # The tick's read only: a restart's warm-up before the next tick reads Prometheus whole (left failing,
        # 44 of 60 seeds' warm-ups lost the failed query's history: the harness', not the service's).
        reads.failing(None)
        out[step] = _seen(service, result.findings)
        if snapshot:
            saved = [*saved[-4:], service.snapshot()]
        step += 1
    return out


def _restart(
    reads: _Reads,
    clock: FakeClock,
    old: AnomalyService,
    restart: tuple[int, int, int],
    saved: list[Snapshot] | None,
    where: Path,
) -> AnomalyService:
    """The process that replaces ``old`` at ``restart`` (before which tick, ticks down, ticks lost), warmed
    up (from the save it keeps when ``saved`` is given); with ``--mid-tick`` it starts between ticks and may
    be stopped again before its first, its state saved then and a process started at once from it."""
    fleet = reads.fleet
    at, down, lost = restart
    until = datetime.fromtimestamp(clock.time() + held_seconds(EVERY), UTC)  # serve's hold
    held = dict.fromkeys(_seen(old, [])[1], until)
    kept = saved[-1 - min(lost, len(saved) - 1)] if saved else None  # the oldest save there was
    clock.advance(down * EVERY + fleet.timing.starts.get(at, 0.0))
    failing = fleet.warm_failed.get(at)
    service = _started(reads, clock, held, kept, where, failing)
    again = fleet.timing.again.get(at)
    if again is not None:
        clock.advance(again)
        held = dict.fromkeys(_seen(service, [])[1], until)
        kept = service.snapshot() if saved is not None else None
        service = _started(reads, clock, held, kept, where, failing)
    return service


def _started(
    reads: _Reads,
    clock: FakeClock,
    held: dict[str, datetime],
    kept: Snapshot | None,
    where: Path,
    failing: int | None = None,
) -> AnomalyService:
    """A new process (no query's last read), warmed up from ``kept`` if given, its warm-up's read of query
    ``failing`` failed (``--failed-warm-ups``)."""
    service = AnomalyService(reads.cfg, [reads.source(clock)], clock)
    state = None
    if kept is not None:
        write_snapshot(where, kept)  # through the file, as a restart reads it
        state = load_snapshot(where, service.cfg)
    reads.fail([QUERIES[failing]] if failing is not None else [])
    service.warm_up(held, state)
    reads.fail([])
    return service


def first_divergence(
    straight: dict[int, Tick], restarted: dict[int, Tick]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The first tick where the restarted run scored otherwise, and how; and the first where serve would
    hold other alerts firing."""
    scores: dict[str, Any] | None = None
    firing: dict[str, Any] | None = None
    for step in sorted(restarted):
        (a_scores, a_firing), (b_scores, b_firing) = straight[step], restarted[step]
        if scores is None and a_scores != b_scores:
            keys = sorted(set(a_scores) | set(b_scores))
            diff = [(k, a_scores.get(k), b_scores.get(k)) for k in keys if a_scores.get(k) != b_scores.get(k)]
            detectors = sorted({k[0] for k, _, _ in diff})
            scores = {"step": step, "detectors": detectors, "rows": len(diff), "first": diff[0]}
        if firing is None:
            firing = firing_divergence(step, a_firing, b_firing)
    return scores, firing


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=seed_list, default=seed_list("0-19"), help=SEEDS_HELP)
    parser.add_argument("--steps", type=int, default=60, help="ticks of 5 minutes per run (at least 4)")
    parser.add_argument("--snapshot", action="store_true", help="restart from the state snapshot")
    parser.add_argument("--show", type=int, default=None, help="print this seed's divergences to stderr")
    parser.add_argument(
        "--hard-faults", action="store_true", help="XID 79s and DBEs, most while the service is stopped"
    )
    parser.add_argument(
        "--blank-samples",
        action="store_true",
        help="temperatures read as NaN or +Inf samples for 1-3 ticks, most while the service is stopped",
    )
    parser.add_argument(
        "--failed-reads",
        action="store_true",
        help="one query's read failing at the tick before each restart's snapshot (read again at the next)",
    )
    parser.add_argument(
        "--promql",
        action="store_true",
        help="read through PromQLSource over HTTP from a Prometheus stand-in (fleet_prometheus.py)",
    )
    parser.add_argument(
        "--mid-tick",
        action="store_true",
        help="restarts land between ticks, reads lag the clock (restart_timing.py), some restarted at once",
    )
    parser.add_argument(
        "--failed-warm-ups",
        action="store_true",
        help="one query's read failing (503) at most restarts' warm-up: a restart while Prometheus fails",
    )
    args = parser.parse_args()
    if args.steps < 4:
        parser.error(f"--steps {args.steps}: at least 4 (a restart needs ticks before and after it)")
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    divergent: dict[int, dict[str, Any]] = {}
    held_otherwise: dict[int, dict[str, Any]] = {}
    by_detector: dict[str, int] = {}
    prom = FleetPrometheus() if args.promql else None
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            fleet, restarts = draw(
                seed,
                args.steps,
                args.hard_faults,
                args.blank_samples,
                args.failed_reads,
                mid_tick=args.mid_tick,
                failed_warm_up=args.failed_warm_ups,
            )
            if prom is not None:
                prom.serve(
                    promql_queries(fleet), FleetSource(fleet).frames_at, scrape_phases(seed, fleet.nodes)
                )
            straight = run(fleet, args.steps, {}, False, Path(tmp) / "s.npz", prom)
            restarted = run(fleet, args.steps, restarts, args.snapshot, Path(tmp) / "s.npz", prom)
            found, held = first_divergence(straight, restarted)
            if found is not None:
                divergent[seed] = found
                for d in found["detectors"]:
                    by_detector[d] = by_detector.get(d, 0) + 1
            if held is not None:
                held_otherwise[seed] = held
            if args.show == seed:
                print(
                    json.dumps(
                        {
                            "seed": seed,
                            "restarts": restarts,
                            "faults": [
                                vars(f)
                                for f in [*fleet.faults, *(fleet.hard or ()), *fleet.blanks, *fleet.failed]
                            ],
                            "timing": vars(fleet.timing),
                            "failed_warm_ups": fleet.warm_failed,
                            "divergence": found,
                            "firing": held,
                        },
                        default=str,
                        indent=1,
                    ),
                    file=sys.stderr,
                )
    if prom is not None:
        prom.close()
    print(
        json.dumps(
            {
                "benchmark": "anomaly_restart_fuzz",
                "snapshot": args.snapshot,
                "seeds": len(args.seeds),
                "steps": args.steps,
                "hard_faults": args.hard_faults,
                "blank_samples": args.blank_samples,
                "failed_reads": args.failed_reads,
                "promql": args.promql,
                "mid_tick": args.mid_tick,
                "failed_warm_ups": args.failed_warm_ups,
                "divergent": len(divergent),
                "divergent_seeds": sorted(divergent),
                "first_divergence_by": by_detector,
                "first_steps": {s: d["step"] for s, d in sorted(divergent.items())},
                "firing_divergent": len(held_otherwise),
                "firing_divergent_seeds": sorted(held_otherwise),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
