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
the query) run as in ``anomaly run``. Drawn apart, as the hard faults. ``--prom-faults`` (with ``--promql``)
adds the stand-in's ``PromFaults``: reads too big refused (503 timeout, 422 execution), Prometheus down for
ticks on end (connections refused), a query answered on a coarser step; ``--prom-faults-only KIND`` keeps
one kind of them (``size``, ``down``, ``coarse``), each seed's draw otherwise the same.

``--mid-tick`` lands restarts between ticks, the service's reads lagging its clock
(``latency_offset_seconds``) and ending off the grid, some processes stopped again before their first tick
and started at once from the state saved then; a tick is compared with the straight run's that read the
same sample (``restart_timing.py``).
``--failed-warm-ups`` fails one query (HTTP 503) from the first tick a restart misses through its warm-ups'
reads, the straight run reading it failing at those ticks (not after a crash that lost ticks). Drawn apart.
``--failed-warm-up-ticks N`` (with it) fails that query N ticks more, into the restarted process' own ticks.
``--down-at-start N`` (with ``--promql``) has the stand-in refuse connections from before the first start
through the first 1-N ticks (drawn per seed, apart; to the end of the last one's 5-minute cell, so that with
``--mid-tick`` a tick reading the same sample as the straight run's finds it down or up alike), in the
straight run and the restarted one alike: both start with their warm-up deferred (``anomaly.warmupretry``),
and a restart within those ticks starts while it is (``restarted_deferred``: the seeds with one).

``firing_divergent`` compares the alerts each run holds by fingerprint and by what each says: labels,
recommended action, score within a tolerance; a ``GpuwardenSourceStale`` by when its failure is aged from,
not by its score, the age when raised, which a restart that first reads the failure later raises higher
(``alert_content.py``).

The multivariate model is fitted once at the first start (``fit_every_seconds`` a day, past the run): its
scheduled refits come ``fit_every`` after each process start, so no restart keeps their times.

    PYTHONPATH=. .venv/bin/python benchmarks/anomaly_restart_fuzz.py --seeds 0-19 --snapshot --promql
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seed_list import SEEDS_HELP, seed_list


def _options() -> argparse.Namespace:
    """The command line, read and checked before the heavy imports below: ``--help``, an unknown option and
    a refused combination answer at once."""
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
        "--prom-faults",
        action="store_true",
        help="with --promql: reads too big refused, Prometheus down for ticks, a query on a coarser step",
    )
    parser.add_argument(
        "--prom-faults-only",
        choices=("size", "down", "coarse"),
        default=None,
        help="with --prom-faults: only this kind of them (reads too big, Prometheus down, coarser answers)",
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
    parser.add_argument(
        "--failed-warm-up-ticks",
        type=int,
        default=0,
        help="with --failed-warm-ups: its query fails this many ticks more, into the restarted ticks",
    )
    parser.add_argument(
        "--down-at-start",
        type=int,
        default=0,
        metavar="TICKS",
        help="with --promql: Prometheus down from before the first start through 1-TICKS ticks (per seed)",
    )
    args = parser.parse_args()
    if args.down_at_start and not args.promql:
        parser.error("--down-at-start: the stand-in Prometheus' outage needs --promql")
    if args.down_at_start < 0:
        parser.error(f"--down-at-start {args.down_at_start}: a number of ticks, 0 (none) or more")
    if args.failed_warm_up_ticks and not args.failed_warm_ups:
        parser.error("--failed-warm-up-ticks: how much longer --failed-warm-ups fail, which it needs")
    if args.prom_faults and not args.promql:
        parser.error("--prom-faults: the stand-in's faults need --promql")
    if args.prom_faults and args.mid_tick:
        # Its outage is drawn on whole ticks, clear of the restarts' whole-tick downtimes: a mid-tick start
        # moves both (seeds 206, 211, 224, 227 and 233 of 200-239 diverged by it, none by the service).
        parser.error("--prom-faults: its outage is drawn on whole ticks; not with --mid-tick")
    if args.prom_faults_only and not args.prom_faults:
        parser.error("--prom-faults-only: a kind of --prom-faults, which it needs")
    if args.steps < 4:
        parser.error(f"--steps {args.steps}: at least 4 (a restart needs ticks before and after it)")
    return args


if __name__ == "__main__":
    OPTIONS = _options()

from alert_content import AlertContent, alert_content, firing_divergence, read_at  # noqa: E402
from fleet_prometheus import (  # noqa: E402
    RANGE_QUERY,
    FleetPrometheus,
    PromFaults,
    down_at_start,
    draw_faults,
    only,
    scrape_phases,
    with_range_query,
)
from restart_fleet import DAY, EVERY, QUERIES, Fault, Fleet, FleetSource, draw  # noqa: E402

from anomaly.forwarder import held_seconds  # noqa: E402
from anomaly.needs import DBE, GPU_UP, XID_COUNTER  # noqa: E402
from anomaly.promql import PromQLSource, PromQuery  # noqa: E402
from anomaly.service import AnomalyService  # noqa: E402
from anomaly.snapshot import Snapshot, load_snapshot, write_snapshot  # noqa: E402
from anomaly.sources import Source  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig  # noqa: E402

# The fleet's names the harness tests reach through this module, as before they moved to ``restart_fleet``.
__all__ = ["GPU_UP", "QUERIES", "Fault", "Fleet", "FleetSource", "draw", "first_divergence", "run"]


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


def _seen(service: AnomalyService, findings: list[Any], ticks: dict[float, int] | None = None) -> Tick:
    """What users see after a tick (``Tick``); ``ticks``: the run's ticks so far, by time (``read_at``)."""
    scores = {
        (f.detector, f.query, json.dumps(dict(f.labels[i]), sort_keys=True)): round(float(f.score[i]), 12)
        for f in findings
        if f.detector != "source"
        for i in range(len(f.labels))
    }
    held = (s.alert for s in (*service.firing.values(), *service._recalled.values()))
    return scores, {alert.fingerprint: read_at(alert_content(alert), ticks or {}) for alert in held}


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
    ticks: dict[float, int] = {}  # each tick's time, its step: where a staleness alert is aged from
    step = 0
    while step < steps:
        if step in restarts:
            service = _restart(
                reads, clock, service, (step, *restarts[step]), saved if snapshot else None, where
            )
            # Each start's warm-up read is a good read a staleness alert may be aged from: named as the
            # straight run's tick that read the same newest sample, where the straight run read it at a tick
            # (seed 310 of --promql --failed-reads: the same read, "tick 15" there and a bare time here).
            for start in {clock.time(), clock.time() - timing.again.get(step, 0.0)}:
                ticks.setdefault(start, timing.step(fleet.t0, start))
            step = timing.step(fleet.t0, clock.time() + EVERY)  # a mid-tick start may read a sample later
            if step >= steps:
                break
        clock.advance(EVERY)
        reads.failing(step)
        ticks[clock.time()] = step
        result = service.infer()
        # The tick's read only: a restart's warm-up before the next tick reads Prometheus whole (left failing,
        # 44 of 60 seeds' warm-ups lost the failed query's history: the harness', not the service's).
        reads.failing(None)
        out[step] = _seen(service, result.findings, ticks)
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


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    divergent: dict[int, dict[str, Any]] = {}
    held_otherwise: dict[int, dict[str, Any]] = {}
    by_detector: dict[str, int] = {}
    restarted_deferred: list[int] = []  # --down-at-start: the seeds restarted while Prometheus was down
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
                failed_warm_up_ticks=args.failed_warm_up_ticks,
            )
            if prom is not None:
                faults = (
                    only(
                        draw_faults(seed, fleet.t0, EVERY, args.steps, restarts, QUERIES),
                        args.prom_faults_only,
                    )
                    if args.prom_faults
                    else None
                )
                if args.down_at_start:
                    # Down to the end of the cell of step ``down - 1`` (``Timing.step``): every process' tick
                    # that reads the same sample as a tick of the straight run finds it down or up alike.
                    down = down_at_start(seed, args.down_at_start)
                    until = fleet.t0 + fleet.timing.latency + (down + 1) * EVERY - 1e-3
                    faults = replace(faults or PromFaults(), down_until=until)
                    if min(restarts) <= down:  # stopped before its first good read
                        restarted_deferred.append(seed)
                prom.serve(
                    promql_queries(fleet),
                    FleetSource(fleet).frames_at,
                    scrape_phases(seed, fleet.nodes),
                    faults,
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
                "prom_faults": args.prom_faults,
                "prom_faults_only": args.prom_faults_only,
                "mid_tick": args.mid_tick,
                "failed_warm_ups": args.failed_warm_ups,
                "failed_warm_up_ticks": args.failed_warm_up_ticks,
                "down_at_start": args.down_at_start,
                "restarted_deferred": len(restarted_deferred),
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
    main(OPTIONS)
