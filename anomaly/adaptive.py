"""The ``adaptive`` detector: adaptive thresholds over every series a tick read, per-query settings.

A series forgotten (unseen for the service's ``forget_after_seconds``: its node down 20 minutes) has its
state parked by its query and GPU (``key_label``) for a day, and taken up again when that GPU reports the
query under a new series. Learnt anew, its band was learnt at whatever the GPU's job ran at then: a fault
elsewhere on the job held every rank's power and utilisation down, and when the job recovered the band
alerted.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import sys

import numpy as np

from anomaly.detectors import Findings
from anomaly.faultbands import MAX_RESTORE_RUN
from anomaly.parked import ParkedRows, Row
from anomaly.relabels import parking_key
from anomaly.series import Step, View
from anomaly.snapshot import State
from anomaly.thresholds import AdaptiveThresholds, ThresholdParams
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import RecommendedAction

# A GPU away longer than this was out for repair (its board, its job's placement changed): learnt anew.
_PARKED_SECONDS = 86_400.0


class AdaptiveDetector:
    """One vectorised ``AdaptiveThresholds`` per distinct parameter set; learns from every step read."""

    name = "adaptive"

    def __init__(self, cfg: AnomalyConfig | None = None, *, key_label: str = "UUID") -> None:
        cfg = cfg or AnomalyConfig()
        self.key_label = key_label
        season = cfg.thresholds.seasonality and cfg.adaptive_seasonality
        # Seasonal buckets seeded within the hour do not make a seasonal model win (``seasonal_tested``): off
        # in the NAB-scored default, on wherever the service's seasonal bands are.
        opts: dict[str, object] = {"seasonality": season, "seasonal_tested": season}
        # The buckets are offsets from a base that learn no fault (``seasonal_offsets``): the same.
        opts["seasonal_offsets"] = season
        # A band a raised fault widened is given back at its repair (``anomaly.faultbands``): the service's
        # alone, as ``seasonal_tested``; off in the NAB-scored default.
        opts.update(restore_ticks=cfg.band_restore_ticks, restore_run=min(cfg.pending_ticks, MAX_RESTORE_RUN))
        # A lone spike raises no alert through the volatility it leaves, and a young error scale catches up
        # with a sparse series' spikes (``lone_spikes``): the service's alone, off in the NAB-scored default.
        opts["lone_spikes"] = True
        self.default = ThresholdParams.from_config(cfg.thresholds, **opts)
        self._per_query = {
            q.name: ThresholdParams.from_config(
                cfg.thresholds, direction=q.direction, min_deviation=q.min_deviation, **opts
            )
            for q in cfg.queries
        }
        self._models: dict[ThresholdParams, AdaptiveThresholds] = {}
        # Only the curated set: a configured query is not scored for being configured. The example reads
        # temperatures, up flags, XID and ECC counters for other detectors; adaptive bands on them alerted
        # on a GPU cooling down after its reset.
        self._cfg = cfg
        self._scored: dict[str, bool] = {}
        self._floors = dict(cfg.min_deviation_by_metric)
        self._params: dict[str, ThresholdParams] = {}
        # Each series id's query and GPU (``key_label``; None: none), to park its state when it is forgotten.
        self._query: list[str | None] = []
        self._gpu: list[str | None] = []
        self._parked = ParkedRows(_PARKED_SECONDS)  # forgotten series' state, by query, GPU and metric
        # This tick's forgotten series parked, by query and GPU without the metric: the keys they were parked
        # by and no new series of their metric has taken (``_take``).
        self._forgotten: dict[str, list[str]] = {}

    def scores(self, query: str) -> bool:
        """Whether ``query`` is scored: its own ``adaptive`` setting, else whether it matches
        ``adaptive_metrics``."""
        known = self._scored.get(query)
        if known is None:
            known = self._scored[query] = self._cfg.adaptive_scores(query)
        return known

    def params_for(self, query: str) -> ThresholdParams:
        """The query's settings: its own, else the defaults, with the metric's band floor if one is set."""
        params = self._params.get(query)
        if params is None:
            params = self._per_query.get(query, self.default)
            floors = [v for pattern, v in self._floors.items() if fnmatch.fnmatchcase(query, pattern)]
            if floors:
                params = dataclasses.replace(params, min_deviation=max(params.min_deviation, *floors))
            self._params[query] = params
        return params

    def model_for(self, query: str) -> AdaptiveThresholds:
        """The model scoring ``query`` (shared by queries with equal settings)."""
        params = self.params_for(query)
        model = self._models.get(params)
        if model is None:
            model = self._models[params] = AdaptiveThresholds(params)
        return model

    def state(self) -> State:
        """Each model's parameters and state, each series id's query and GPU, and the state parked for
        forgotten series (``anomaly.snapshot``)."""
        out = State({"models": []})
        for i, (params, model) in enumerate(self._models.items()):
            state = model.state()
            out.meta["models"].append({"params": dataclasses.asdict(params), **state.meta})
            out.arrays.update({f"m{i}_{key}": array for key, array in state.arrays.items()})
        parked, arrays = self._parked.state(np.uint8)
        out.meta.update(queries=list(self._query), gpus=list(self._gpu), parked=parked)
        out.arrays.update(arrays)
        return out

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()``): each model as it was, found again by its parameters."""
        models: dict[ThresholdParams, AdaptiveThresholds] = {}
        for i, saved in enumerate(state.meta["models"]):
            params = ThresholdParams(**saved["params"])
            prefix = f"m{i}_"
            arrays = {k.removeprefix(prefix): a for k, a in state.arrays.items() if k.startswith(prefix)}
            meta = {k: v for k, v in saved.items() if k != "params"}
            models[params] = AdaptiveThresholds(params, capacity=1)
            models[params].restore(State(meta, arrays))
        queries, gpus = state.meta["queries"], state.meta["gpus"]
        if len(queries) != len(gpus):
            raise ValueError(f"adaptive: {len(queries)} series ids' queries, {len(gpus)} GPUs")
        parked = ParkedRows.restored(
            _PARKED_SECONDS, "adaptive", state.meta["parked"], state.arrays, dtype=np.uint8
        )
        self._models = models
        self._query = [None if q is None else str(q) for q in queries]
        self._gpu = [None if g is None else str(g) for g in gpus]
        self._parked = parked

    def fit(self, view: View) -> None:
        """Online: nothing to refit."""

    def state_bytes(self) -> int:
        """Bytes of state held: every model's arrays and what parking costs (``parking_bytes``)."""
        return sum(m.state_bytes() for m in self._models.values()) + self.parking_bytes()

    def parking_bytes(self) -> int:
        """Bytes held to park forgotten series: each id's query and GPU (the labels' own strings, a reference
        each) and the state parked."""
        return sys.getsizeof(self._query) + sys.getsizeof(self._gpu) + self._parked.nbytes()

    def forget(self, ids: np.ndarray) -> None:
        """Park the state of vanished series by query, GPU and metric, then drop it."""
        for sid in ids[ids < len(self._gpu)].tolist():
            query, gpu = self._query[sid], self._gpu[sid]
            self._query[sid] = self._gpu[sid] = None
            if query is None or gpu is None:
                continue
            model = self.model_for(query)
            if sid < model.capacity and model.count[sid] > 0:
                # At most as many as the series ids it holds (a parked row costs about a series' state).
                most = max(m.capacity for m in self._models.values())
                key = _key(query, gpu)
                self._parked.park(key, float(model.last_seen[sid]), model.row(sid), most)
                self._forgotten.setdefault(_key(query, gpu.partition(_METRIC)[0]), []).append(key)
        for model in self._models.values():
            model.reset(ids[ids < model.capacity])

    def _take(self, query: str, gpu: str, at: float) -> Row | None:
        """The state parked for ``gpu``'s series of ``query`` (``_unpark``) of its metric."""
        key = _key(query, gpu)
        row = self._parked.take(key, at)
        left = self._forgotten.get(_key(query, gpu.partition(_METRIC)[0]))
        if row is not None and left and key in left:
            left.remove(key)
        return row

    def _take_renamed(self, query: str, gpu: str, at: float) -> Row | None:
        """The state of ``gpu``'s series of ``query`` that found none of its own metric (``_take``): of the
        one series of the GPU's other metric forgotten at this tick that no new series of its own metric took
        (renamed by an exporter upgrade, the GPU relabelled at once or not: its band goes on), else parked by
        a release that did not key the metric. Two left may be two metrics renamed: neither is taken."""
        base = _key(query, gpu.partition(_METRIC)[0])
        left = self._forgotten.get(base)
        if not left:
            return self._parked.take(base, at)
        return self._parked.take(left.pop(), at) if len(left) == 1 else None

    def _unpark(self, model: AdaptiveThresholds, step: Step) -> None:
        """Note the query and GPU of each series new to ``model`` with a value, and give it the state parked
        for them when its series was forgotten, if any: first each its own metric's, then the rest a renamed
        one's (``_take_renamed``). Taken row by row, a GPU's temperature renamed as its series were relabelled
        found two of its series forgotten, its own and its power's, and took neither."""
        rows = np.flatnonzero(model.fresh(step.ids) & np.isfinite(step.value))
        if not rows.size:
            return
        grow = int(step.ids[rows].max()) + 1 - len(self._gpu)
        if grow > 0:
            self._query += [None] * grow
            self._gpu += [None] * grow
        unserved: list[tuple[int, str]] = []
        for i, sid in zip(rows.tolist(), step.ids[rows].tolist(), strict=True):
            # An empty key names no GPU: parked under it, one GPU's band went to another's next series. A
            # series without a UUID is parked by its node and index (``parking_key``).
            # Of a query of several metrics, each is its own: a GPU's temperature and power relabelled at once
            # were parked under one key, the power's band going to the new temperature series.
            gpu = parking_key(step.labels[i], self.key_label)
            if gpu is not None:
                gpu += _METRIC + step.labels[i].get("__name__", "")
            self._query[sid], self._gpu[sid] = step.query, gpu
            row = None if gpu is None else self._take(step.query, gpu, step.at)
            if row is not None:
                model.set_row(sid, row)
            elif gpu is not None:
                unserved.append((sid, gpu))
        for sid, gpu in unserved:
            row = self._take_renamed(step.query, gpu, step.at)
            if row is not None:
                model.set_row(sid, row)

    def detect(self, view: View) -> list[Findings]:
        """Learn from every step in time order; report the newest step of each query."""
        self._parked.expire(view.time)
        try:
            return self._detect(view)
        finally:
            self._forgotten.clear()

    def _detect(self, view: View) -> list[Findings]:
        out: list[Findings] = []
        for step in view.steps:
            if not self.scores(step.query):
                continue
            model = self.model_for(step.query)
            self._unpark(model, step)
            scores = model.update(step.ids, step.value, step.at, step.outside)
            if view.latest.get(step.query) is not step:
                continue
            rows = np.flatnonzero(np.isfinite(step.value) & np.isfinite(step.at))
            whole = rows.size == len(step.labels)
            out.append(
                Findings(
                    detector=self.name,
                    query=step.query,
                    labels=step.labels if whole else [step.labels[i] for i in rows.tolist()],
                    ids=step.ids if whole else step.ids[rows],
                    score=scores.score,
                    value=step.value if whole else step.value[rows],
                    yhat=scores.yhat,
                    lower=scores.lower,
                    upper=scores.upper,
                    judged=scores.judged,
                    action=RecommendedAction.INVESTIGATE,
                    summary=f"{step.query} left its adaptive band",
                )
            )
        return out


# Between a series' GPU and its metric name in the key it is parked by.
_METRIC = "\x02"


def _key(query: str, gpu: str) -> str:
    """The key a series' state is parked by: its query and its GPU."""
    return f"{query}\x00{gpu}"
