"""The ``fleet`` detector: each GPU against its peers (same model and same job), not its own history.

Per query and peer group, the robust centre (median) and spread (MAD) are taken across the group; a GPU's
robust z-score is smoothed over ticks so only a persistent gap (a straggler, a lemon GPU) reaches the
threshold, while one noisy sample does not. Groups smaller than ``min_peers`` are not scored.

A GPU that hovers at the edge of its peers' band must not re-raise each time it crosses back: the threshold
has hysteresis (a series enters once above ``k`` for ``enter_ticks`` ticks in a row, as the service's
``pending_ticks`` asks, and only leaves below ``k_exit``; while it is in, its score is ``|z| / k_exit``),
and its alert stays open until it has been quiet for ``hold_ticks`` ticks. A shorter touch of ``k`` is not
latched, so this raises at most what the plain threshold did. A "lemon" GPU that is persistently but mildly
different from its peers is therefore one alert that stays open, not a stream of raises.

Load-following metrics (``load_adjusted``, power by default) are compared net of load: replicas of an
inference service each follow their own traffic, so one at its peak draws a third more power than the
median replica while being perfectly healthy. Per peer group the detector learns, from the normal members
of past ticks, how far a metric moves with the load metric (``load_query``, utilisation) across the group
(a ridge-regularised slope of deviation on deviation, averaged over hours); the GPU's deviation less what
its load deviation explains is what is scored. Where peers share one load (ranks of a training job) there is
no spread of load to learn from and the slope stays near 0: the plain comparison. A GPU drawing less power
at the same or higher load (throttled, hung at 100 % utilisation) stands out more, not less. A tick that read
such a metric but not its load (the load query's ``step_seconds`` longer: ``View.not_due``) does not score it:
compared without its load, a replica at its peak would stand out, then not, at every other tick.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Mapping, Sequence

import numpy as np

from anomaly.detectors import Findings
from anomaly.peergroups import group_means, group_medians, ranked_medians
from anomaly.series import Step, View
from anomaly.snapshot import State
from anomaly.steps import unlearned
from anomaly.thresholds import MAD_TO_SIGMA, BoolArray, FloatArray, IntArray
from gpuwarden.model import RecommendedAction

logger = logging.getLogger(__name__)
_STATE = ("smooth", "fresh", "latched", "above")  # the per-series arrays a snapshot keeps

# Replica suffixes of pod names: StatefulSet ordinals and Deployment/ReplicaSet hashes.
_REPLICA_SUFFIX = re.compile(r"(-[0-9a-f]{8,10})?(-[a-z0-9]{5}|-\d+)$")


def workload_of(labels: Mapping[str, str]) -> str | None:
    """The workload a GPU runs: its Slurm job, else its namespace and pod without the replica suffix; None
    for a GPU that runs nothing known. The Slurm job is one look-up: the collective check asks it of 250,000
    rows a tick (``bench_anomaly.py --open-moves``)."""
    job = labels.get("slurm_job")
    if job:
        return job
    pod = labels.get("pod")
    if not pod:
        return None
    return f"{labels.get('namespace', '')}/{_REPLICA_SUFFIX.sub('', pod)}"


def peer_key(labels: Mapping[str, str], peer_labels: Sequence[str]) -> tuple[str, ...] | None:
    """The peer group of a GPU: its model plus its workload (``workload_of``). None for a GPU that runs
    nothing known: idle GPUs are not compared with busy ones."""
    workload = workload_of(labels)
    if workload is None:
        return None
    return (*(labels.get(p, "") for p in peer_labels), workload)


def _gpu_identity(labels: Mapping[str, str]) -> tuple[str, str]:
    """The GPU a series is about, the same for every metric of it."""
    uuid = labels.get("UUID") or labels.get("uuid")
    if uuid:
        return (uuid, "")
    return (labels.get("Hostname") or labels.get("instance", ""), labels.get("gpu", ""))


class FleetDetector:
    """Robust peer comparison; smoothed z per series id in an array."""

    name = "fleet"

    def __init__(
        self,
        queries: Sequence[str],
        peer_labels: Sequence[str] = ("modelName",),
        *,
        k: float = 6.0,
        min_peers: int = 4,
        alpha: float = 0.3,
        min_relative_spread: float = 0.02,
        min_deviation: Mapping[str, float] | None = None,
        k_exit: float | None = None,
        hold_ticks: int | None = None,
        rearm_ticks: int | None = None,
        enter_ticks: int = 3,
        load_query: str | None = None,
        load_adjusted: Sequence[str] = (),
        load_alpha: float = 1.0 / 240.0,
        load_ridge: float = 9.0,
    ) -> None:
        self.queries = tuple(queries)
        self.peer_labels = tuple(peer_labels)
        self.k, self.min_peers, self.alpha = k, min_peers, alpha
        self.k_exit = k / 2.0 if k_exit is None else min(k_exit, k)
        self.hold_ticks = hold_ticks
        self.rearm_ticks = rearm_ticks
        self.enter_ticks = enter_ticks
        self.min_relative_spread = min_relative_spread
        # Smallest gap from the peers' median that may alert, per metric (fnmatch patterns): integer-valued
        # temperatures of replicas at different load collapse the MAD to a degree or two.
        self.min_deviation = dict(min_deviation or {})
        self._floors: dict[str, float] = {}
        self.smooth = np.zeros(1024)
        self.fresh = np.ones(1024, np.bool_)
        self.latched = np.zeros(1024, np.bool_)
        self.above = np.zeros(1024, np.int64)
        self._group_cache: dict[str, tuple[IntArray, IntArray]] = {}
        self._group_keys: dict[str, list[tuple[str, ...] | None]] = {}
        # Load adjustment: per (query, peer group) the averaged products of load and metric deviations.
        self.load_query = load_query
        self.load_adjusted = tuple(load_adjusted)
        self.load_alpha, self.load_ridge = load_alpha, load_ridge
        self._load_moments: dict[tuple[str, tuple[str, ...] | None], list[float]] = {}
        self._align_cache: dict[str, tuple[IntArray, IntArray, IntArray]] = {}
        # Per query, the series of the newest step that were reported but compared with no peer.
        self.uncompared: dict[str, int] = {}
        self._warned: set[str] = set()

    def _grow(self, needed: int) -> None:
        if needed <= self.smooth.size:
            return
        size = max(needed, 2 * self.smooth.size)
        smooth = np.zeros(size)
        fresh = np.ones(size, np.bool_)
        latched = np.zeros(size, np.bool_)
        above = np.zeros(size, np.int64)
        above[: self.above.size] = self.above
        self.above = above
        smooth[: self.smooth.size] = self.smooth
        fresh[: self.fresh.size] = self.fresh
        latched[: self.latched.size] = self.latched
        self.smooth, self.fresh, self.latched = smooth, fresh, latched

    def fit(self, view: View) -> None:
        """Online: nothing to refit."""

    def forget(self, ids: np.ndarray) -> None:
        """Drop state of vanished series."""
        if ids.size:
            self._group_cache.clear()  # an id may come back with other labels
        ids = ids[ids < self.smooth.size]
        self.smooth[ids] = 0.0
        self.fresh[ids] = True
        self.latched[ids] = False
        self.above[ids] = 0

    def state(self) -> State:
        """Each series' smoothed deviation, latch and run above, and the load moments per peer group
        (``anomaly.snapshot``)."""
        arrays = {name: getattr(self, name).copy() for name in _STATE}
        moments = [[query, group, list(values)] for (query, group), values in self._load_moments.items()]
        return State({"load_moments": moments}, arrays)

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()``)."""
        rows = state.arrays["smooth"].shape[0]
        for name in _STATE:
            now, got = getattr(self, name), state.arrays[name]
            if got.shape != (rows,) or got.dtype != now.dtype:
                raise ValueError(f"fleet {name}: {got.dtype}{got.shape}, not {now.dtype} of {rows} rows")
        for name in _STATE:
            setattr(self, name, state.arrays[name])
        self._load_moments = {
            (str(query), None if group is None else tuple(group)): [float(v) for v in values]
            for query, group, values in state.meta["load_moments"]
        }
        self._group_cache.clear()
        self._align_cache.clear()

    def _groups(self, step: Step) -> IntArray:
        """Peer-group code of each row (-1: not compared); reused while the series ids are unchanged."""
        cached = self._group_cache.get(step.query)
        if cached is not None:
            ids = cached[0]
            if ids is step.ids or (ids.shape == step.ids.shape and np.array_equal(ids, step.ids)):
                return cached[1]
        codes: dict[tuple[str, ...] | None, int] = {None: -1}
        group = np.fromiter(
            (codes.setdefault(peer_key(lab, self.peer_labels), len(codes)) for lab in step.labels),
            np.int64,
            len(step.labels),
        )
        keys: list[tuple[str, ...] | None] = [None] * len(codes)
        for key, code in codes.items():
            if code >= 0:
                keys[code] = key
        self._group_cache[step.query] = (step.ids, group)
        self._group_keys[step.query] = keys
        return group

    def _adjusted(self, query: str) -> bool:
        return self.load_query is not None and any(fnmatch.fnmatchcase(query, p) for p in self.load_adjusted)

    def judged_by(self, query: str) -> tuple[str, ...]:
        """The queries an alert of ``query`` is judged by: its own, and the load where it is load-adjusted."""
        return (query, self.load_query) if self.load_query is not None and self._adjusted(query) else (query,)

    def _load(self, step: Step, view: View) -> FloatArray | None:
        """The load metric of each row's GPU (NaN where not reported), or None when not adjusted."""
        if self.load_query is None or not self._adjusted(step.query):
            return None
        load = view.latest.get(self.load_query)
        if load is None or not load.labels:
            return None
        cached = self._align_cache.get(step.query)
        if cached is None or not (
            np.array_equal(cached[0], step.ids) and np.array_equal(cached[1], load.ids)
        ):
            where = {_gpu_identity(lab): i for i, lab in enumerate(load.labels)}
            rows = np.fromiter((where.get(_gpu_identity(lab), -1) for lab in step.labels), np.int64)
            cached = self._align_cache[step.query] = (step.ids, load.ids, rows)
        rows = cached[2]
        return np.where(rows >= 0, load.learnable[np.maximum(rows, 0)], np.nan)

    def _floor(self, query: str) -> float:
        floor = self._floors.get(query)
        if floor is None:
            hits = [v for p, v in self.min_deviation.items() if fnmatch.fnmatchcase(query, p)]
            floor = self._floors[query] = max(hits, default=0.0)
        return floor

    def robust_z(self, step: Step, load: FloatArray | None = None) -> FloatArray:
        """Each series' robust z-score within its peer group (NaN where the group is too small); with
        ``load``, of its deviation net of what its load deviation explains (see the module docstring).

        A value outside the query's data range is scored against its peers but is none of theirs: the median
        and spread are the in-range values' (one GPU's 808334905 moved them, and so every other GPU's
        score). Its GPU still counts toward ``min_peers``: a glitch neither starts nor stops the others'
        comparison. Every group at once (``anomaly.peergroups``): a loop of ``np.median`` calls per group took
        0.6-0.7 s of a tick of 10,000 GPUs in 625 jobs (3,125 groups on 5 queries; ``bench_anomaly.py``)."""
        group = self._groups(step)
        groups = len(self._group_keys[step.query])  # the codes are below it
        x = step.value  # an out-of-range value is scored against its peers; the state it teaches is undone
        inside = ~step.outside if step.outside is not None else np.ones(x.size, np.bool_)
        z = np.full(x.size, np.nan)
        ok = np.flatnonzero(np.isfinite(x) & (group >= 0))
        # By group, then value: the medians of values need no other sort, and the load moments' means sum
        # in this order, as the loop over groups summed them.
        order = ok[np.lexsort((x[ok], group[ok]))]
        ranked = group[order]
        size, peers = (
            np.bincount(ranked, minlength=groups),
            np.bincount(ranked[inside[order]], minlength=groups),
        )
        rows = order[((size >= self.min_peers) & (peers > 0))[ranked]]
        at, peer = group[rows], inside[rows]
        centre = ranked_medians(x[rows[peer]], at[peer], groups)
        level = np.abs(centre)
        vals = x[rows]
        if load is not None:
            vals, centre = self._net_of_load(step.query, at, vals, load[rows], peer, centre=centre)
        spread = MAD_TO_SIGMA * group_medians(np.abs(vals[peer] - centre[at[peer]]), at[peer], groups)
        # max(spread, relative, floor, 1e-9) as Python's max takes it: a later one only where greater.
        for least in (self.min_relative_spread * level, self._floor(step.query) / self.k, 1e-9):
            spread = np.where(least > spread, least, spread)
        z[rows] = (vals - centre[at]) / spread[at]
        if load is not None:
            kept = rows[peer]
            self._learn_load(step.query, group[kept], x[kept], load[kept], z[kept])
        return z

    def _net_of_load(
        self,
        query: str,
        at: IntArray,
        vals: FloatArray,
        load: FloatArray,
        peer: BoolArray,
        *,
        centre: FloatArray,
    ) -> tuple[FloatArray, FloatArray]:
        """Values less slope x load deviation from the group's median load (rows without a load value
        unchanged), and per group the median of the ``peer`` rows' (those in the data range); of groups
        (``at`` per row) with no load moments yet, or fewer than ``min_peers`` rows with a load value, the
        values and their ``centre`` unchanged."""
        keys, groups = self._group_keys[query], centre.size
        first, second, learnt = np.zeros(groups), np.zeros(groups), np.zeros(groups, np.bool_)
        for code in np.unique(at).tolist():
            moments = self._load_moments.get((query, keys[code]))
            if moments is not None:
                first[code], second[code], learnt[code] = moments[0], moments[1], True
        known = np.isfinite(load)
        use = learnt & (np.bincount(at[known], minlength=groups) >= self.min_peers)
        adjust = use[at]
        if not adjust.any():
            return vals, centre
        on = at[adjust]
        slope = first / (second + self.load_ridge)
        middle = group_medians(load[adjust & known], at[adjust & known], groups)
        net = vals.copy()
        net[adjust] = vals[adjust] - slope[on] * np.where(known[adjust], load[adjust] - middle[on], 0.0)
        netted = group_medians(net[adjust & peer], at[adjust & peer], groups)
        return net, np.where(use, netted, centre)

    def _learn_load(
        self, query: str, at: IntArray, vals: FloatArray, load: FloatArray, z: FloatArray
    ) -> None:
        """Average this tick's co-deviation of metric and load per group (``at`` per row, in order) over its
        normal members (|z| below k_exit: a faulty GPU must not teach the group that its fault is what load
        does), where a group has ``min_peers`` of them."""
        normal = np.isfinite(load) & (np.abs(z) < self.k_exit)
        groups = len(self._group_keys[query])
        count = np.bincount(at[normal], minlength=groups)
        learn = normal & (count >= self.min_peers)[at]
        if not learn.any():
            return
        on = at[learn]
        dx = load[learn] - group_medians(load[learn], on, groups)[on]
        dy = vals[learn] - ranked_medians(vals[learn], on, groups)[on]  # rows by group, then value
        products, squares = group_means(dx * dy, on, groups), group_means(dx * dx, on, groups)
        keys, a = self._group_keys[query], self.load_alpha
        for code in np.unique(on).tolist():
            key = (query, keys[code])
            tick = (float(products[code]), float(squares[code]))
            moments = self._load_moments.get(key)
            if moments is None:
                self._load_moments[key] = list(tick)
                continue
            moments[0] += a * (tick[0] - moments[0])
            moments[1] += a * (tick[1] - moments[1])

    def _report_coverage(self, step: Step, z: FloatArray) -> None:
        """Count the series compared with no peer; warn once when a query has series but compares none
        (no workload label on them, or no workload with ``min_peers`` GPUs), so an operator is not left
        without this detector unknowingly. Warned again only after a tick that compared some."""
        reported = np.isfinite(step.value)
        compared = np.isfinite(z)
        self.uncompared[step.query] = int((reported & ~compared).sum())
        if compared.any():
            self._warned.discard(step.query)
            return
        if not reported.any() or step.query in self._warned:
            return
        self._warned.add(step.query)
        count = int(reported.sum())
        if (self._groups(step)[reported] < 0).all():
            why = f"none of the {count} series of {step.query} carries a slurm_job or pod label"
        else:
            same = ", ".join(self.peer_labels) or "labels"
            why = f"no workload of it has {self.min_peers} GPUs with the same {same} ({step.query})"
        logger.warning(
            "fleet: %s, so the peer detector compares none of its GPUs with their peers (the other detectors"
            " still score them); gpuwarden's exporter adds those labels from the GPU processes' cgroups"
            " (dcgm-exporter needs its Kubernetes mode): add them, or drop the query from"
            " anomaly.fleet_queries",
            why,
        )

    def _smooth(self, ids: IntArray, z: FloatArray) -> tuple[FloatArray, BoolArray]:
        """Each series' smoothed z after this step, and whether it is latched (past k, not below k_exit)."""
        ok = np.isfinite(z)
        prev = np.where(self.fresh[ids], z, self.smooth[ids])
        smooth = np.where(ok, prev + self.alpha * (z - prev), 0.0)
        self.smooth[ids] = smooth
        self.fresh[ids] = ~ok
        # Hysteresis: enter at k, stay in until |z| drops below k_exit.
        size = np.abs(smooth)
        # Only a series above k for enter_ticks ticks in a row latches: a one- or two-tick touch of k
        # must stay the transient the service's pending_ticks ignores, not a raise held up by k_exit.
        above = np.where(size > self.k, self.above[ids] + 1, 0)
        self.above[ids] = above
        latched: BoolArray = np.where(self.latched[ids], size >= self.k_exit, above >= self.enter_ticks)
        self.latched[ids] = latched
        return smooth, latched

    def detect(self, view: View) -> list[Findings]:
        """Score the newest step of each configured query."""
        out = []
        for query in self.queries:
            step = view.latest.get(query)
            if step is None or not step.labels:
                continue
            if self.load_query in view.not_due and self._adjusted(query):
                continue  # its load not read at this tick: judged at the next that reads both
            z = self.robust_z(step, self._load(step, view))
            self._report_coverage(step, z)
            ids = step.ids
            if ids.size:
                self._grow(int(ids.max()) + 1)
            with unlearned([self.smooth, self.fresh, self.latched, self.above], step.outside_ids):
                smooth, latched = self._smooth(ids, z)
            out.append(
                Findings(
                    detector=self.name,
                    query=query,
                    labels=step.labels,
                    ids=ids,
                    score=np.abs(smooth) / np.where(latched, self.k_exit, self.k),
                    value=step.value,
                    action=RecommendedAction.INVESTIGATE,
                    summary=f"{query} differs from its peers",
                    resolve_after=self.hold_ticks,
                    rearm_after=self.rearm_ticks,
                    sign=np.sign(smooth),
                    judged=np.isfinite(z),  # a GPU with no peers is compared with none: reported at 0
                )
            )
        return out
