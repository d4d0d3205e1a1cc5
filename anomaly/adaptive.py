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
from anomaly.modelrows import NO_ROW, ModelRows
from anomaly.parked import ParkedRows, Row
from anomaly.relabels import parking_key
from anomaly.series import Step, View
from anomaly.snapshot import State, rows_to_hold
from anomaly.steps import IntArray
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
        self._rows = ModelRows()  # each series id's model and row in it (``anomaly.modelrows``)
        # Only the curated set: a configured query is not scored for being configured. The example reads
        # temperatures, up flags, XID and ECC counters for other detectors; adaptive bands on them alerted
        # on a GPU cooling down after its reset.
        self._cfg = cfg
        self._scored: dict[str, bool] = {}
        self._floors = dict(cfg.min_deviation_by_metric)
        self._params: dict[str, ThresholdParams] = {}
        # Each series id's query and metric (``_METRIC`` and its name, shared by the query's series of it) and
        # GPU (``key_label``, the label's own string; None: none), to park its state when it is forgotten.
        # Before fix/mem the GPU and metric were one string a series, 59 bytes that ``parking_bytes`` missed.
        self._query: list[tuple[str, str] | None] = []
        self._gpu: list[str | None] = []
        self._metrics: dict[tuple[str, str], tuple[str, str]] = {}
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
        return self._numbered(query)[1]

    def _numbered(self, query: str) -> tuple[int, AdaptiveThresholds]:
        """The model scoring ``query`` and its number (its place in ``_models``: ``ModelRows``' number)."""
        params = self.params_for(query)
        model = self._models.get(params)
        if model is None:  # its rows are given out as its series come (``_place``)
            model = self._models[params] = AdaptiveThresholds(params)
        return list(self._models).index(params), model

    def state(self) -> State:
        """Each model's parameters and state, each series id's query and GPU, and the state parked for
        forgotten series (``anomaly.snapshot``)."""
        out = State({"models": []})
        for i, (params, model) in enumerate(self._models.items()):
            state = self._by_id(i, model)
            out.meta["models"].append({"params": dataclasses.asdict(params), **state.meta})
            out.arrays.update({f"m{i}_{key}": array for key, array in state.arrays.items()})
        parked, arrays = self._parked.state(np.uint8)
        queries = [None if named is None else named[0] for named in self._query]
        gpus = [
            None if gpu is None or named is None else gpu + named[1]
            for named, gpu in zip(self._query, self._gpu, strict=True)
        ]
        out.meta.update(queries=queries, gpus=gpus, parked=parked)
        out.arrays.update(arrays)
        return out

    def _by_id(self, k: int, model: AdaptiveThresholds) -> State:
        """``model.state()`` (model ``k``) by series id, in id order (``rows``, below ``capacity``), with
        each one's row in the model (``at``, below ``held``, the rows it holds: ``ModelRows``)."""
        state = model.state()
        ids, rows = self._rows.held(k)
        id_of = np.full(model.capacity, NO_ROW, np.int64)
        id_of[rows] = ids
        at = state.arrays.pop("rows")
        saved = id_of[at]
        order = np.argsort(saved, kind="stable")
        order = order[
            saved[order] != NO_ROW
        ]  # none: a row let go is made new, and a snapshot keeps none such
        arrays = {"rows": saved[order], "at": at[order]}
        arrays.update({key: array[order] for key, array in state.arrays.items()})
        return State({"capacity": max(len(self._rows), 1), "held": model.capacity}, arrays)

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()``): each model as it was, found again by its parameters."""
        models: dict[ThresholdParams, AdaptiveThresholds] = {}
        rows = ModelRows()
        for i, saved in enumerate(state.meta["models"]):
            params = ThresholdParams(**saved["params"])
            prefix = f"m{i}_"
            arrays = {k.removeprefix(prefix): a for k, a in state.arrays.items() if k.startswith(prefix)}
            # Each series by its id, at its row of the model (``_by_id``).
            ids, at = np.asarray(arrays.pop("rows"), np.int64), np.asarray(arrays.pop("at"), np.int64)
            rows_to_hold("adaptive", ids, int(saved["capacity"]), 1024)
            held = rows_to_hold("adaptive model", at, int(saved["held"]), 1024)
            if ids.shape != at.shape or np.unique(ids).size != ids.size or np.unique(at).size != at.size:
                raise ValueError(f"adaptive: {ids.shape} series ids for {at.shape} rows, or one twice")
            if (rows.find(ids)[0] != NO_ROW).any():
                raise ValueError("adaptive: a series id saved in two models")
            models[params] = AdaptiveThresholds(params, capacity=1)
            models[params].restore(State({"capacity": held}, {"rows": at, **arrays}))
            rows.bind(i, ids, at, held)
        queries, gpus = state.meta["queries"], state.meta["gpus"]
        if len(queries) != len(gpus):
            raise ValueError(f"adaptive: {len(queries)} series ids' queries, {len(gpus)} GPUs")
        parked = ParkedRows.restored(
            _PARKED_SECONDS, "adaptive", state.meta["parked"], state.arrays, dtype=np.uint8
        )
        self._models, self._rows, self._metrics = models, rows, {}
        self._query, self._gpu = [], []
        for query, gpu in zip(queries, gpus, strict=True):
            # The GPU and, after ``_METRIC``, its series' metric (none in a snapshot from before the metric).
            raw, sep, name = ("", "", "") if gpu is None else str(gpu).partition(_METRIC)
            self._query.append(None if query is None else self._named(str(query), sep + name))
            self._gpu.append(None if gpu is None else raw)
        self._parked = parked

    def fit(self, view: View) -> None:
        """Online: nothing to refit."""

    def state_bytes(self) -> int:
        """Bytes of state held: every model's arrays and what parking costs (``parking_bytes``)."""
        return sum(m.state_bytes() for m in self._models.values()) + self.parking_bytes()

    def parking_bytes(self) -> int:
        """Bytes held to find and park each series' state: each id's row (``ModelRows``), query and metric (a
        reference each to one pair a metric) and GPU (a reference, and each distinct string once: the label's
        own, which the series' labels hold too, or one ``parking_key`` made), and the state parked."""
        gpus = {id(gpu): gpu for gpu in self._gpu if gpu is not None}
        named = sys.getsizeof(self._metrics) + sum(sys.getsizeof(n) for n in self._metrics.values())
        lists = sys.getsizeof(self._query) + sys.getsizeof(self._gpu) + named + self._rows.nbytes()
        return lists + sum(sys.getsizeof(gpu) for gpu in gpus.values()) + self._parked.nbytes()

    def row(self, sid: int) -> np.ndarray | None:
        """The state of series ``sid`` as one row of bytes (``AdaptiveThresholds.row`` of its model), None
        where it has none."""
        rows, of = self._rows.find(np.array([sid], np.int64))
        if rows[0] == NO_ROW:
            return None
        return list(self._models.values())[int(of[0])].row(int(rows[0]))

    def forget(self, ids: np.ndarray) -> None:
        """Park the state of vanished series by query, GPU and metric, then drop it."""
        at, of = self._rows.find(ids)
        for i, sid in enumerate(ids.tolist()):
            if sid >= len(self._gpu):
                continue
            named, gpu = self._query[sid], self._gpu[sid]
            self._query[sid] = self._gpu[sid] = None
            if named is None or gpu is None:
                continue
            k, model = self._numbered(named[0])
            row = int(at[i])
            if row != NO_ROW and of[i] == k and model.count[row] > 0:
                # At most as many as the rows it holds (a parked row costs about a series' state).
                most = max(sum(m.capacity for m in self._models.values()), 1024)
                key = _key(named[0], gpu + named[1])
                self._parked.park(key, float(model.last_seen[row]), model.row(row), most)
                self._forgotten.setdefault(_key(named[0], gpu), []).append(key)
        models = list(self._models.values())
        for k, rows in self._rows.let_go(ids).items():
            models[k].blank(rows)  # as new, for the next series given it (and as a restored model's)

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

    def _named(self, query: str, metric: str) -> tuple[str, str]:
        """``query`` and ``metric`` (``_METRIC`` and the metric's name), one pair for all their series."""
        return self._metrics.setdefault((query, metric), (query, metric))

    def _unpark(self, model: AdaptiveThresholds, rows: IntArray, step: Step) -> None:
        """Note the query and GPU of each series new to ``model`` with a value, and give it the state parked
        for them when its series was forgotten, if any: first each its own metric's, then the rest a renamed
        one's (``_take_renamed``). Taken row by row, a GPU's temperature renamed as its series were relabelled
        found two of its series forgotten, its own and its power's, and took neither. ``rows``: each series'
        row in ``model``."""
        new = np.flatnonzero(model.fresh(rows) & np.isfinite(step.value))
        if not new.size:
            return
        grow = int(step.ids[new].max()) + 1 - len(self._gpu)
        if grow > 0:
            self._query += [None] * grow
            self._gpu += [None] * grow
        unserved: list[tuple[int, str]] = []
        for i, sid in zip(new.tolist(), step.ids[new].tolist(), strict=True):
            # An empty key names no GPU: parked under it, one GPU's band went to another's next series. A
            # series without a UUID is parked by its node and index (``parking_key``).
            # Of a query of several metrics, each is its own: a GPU's temperature and power relabelled at once
            # were parked under one key, the power's band going to the new temperature series.
            gpu = parking_key(step.labels[i], self.key_label)
            named = self._named(step.query, _METRIC + step.labels[i].get("__name__", ""))
            self._query[sid], self._gpu[sid] = named, gpu
            row = None if gpu is None else self._take(step.query, gpu + named[1], step.at)
            if row is not None:
                model.set_row(int(rows[i]), row)
            elif gpu is not None:
                unserved.append((int(rows[i]), gpu + named[1]))
        for at, gpu in unserved:
            row = self._take_renamed(step.query, gpu, step.at)
            if row is not None:
                model.set_row(at, row)

    def detect(self, view: View) -> list[Findings]:
        """Learn from every step in time order; report the newest step of each query."""
        self._parked.expire(view.time)
        try:
            return self._detect(view)
        finally:
            self._forgotten.clear()

    def _place(self, view: View) -> None:
        """Give each series new to its model a row of it (``ModelRows``), every model grown once a tick."""
        grown: dict[int, AdaptiveThresholds] = {}
        for step in view.steps:
            if not self.scores(step.query):
                continue
            k, model = self._numbered(step.query)
            rows, of = self._rows.find(step.ids)
            # A row in another model: one restored under settings its query no longer has (learnt anew).
            moved = (rows != NO_ROW) & (of != k)
            if moved.any():
                for j, gone in self._rows.let_go(step.ids[moved]).items():
                    list(self._models.values())[j].blank(gone)
            new = step.ids[(rows == NO_ROW) | moved]
            if new.size:
                self._rows.give(k, new)  # rows let go were made new then
                grown[k] = model
        for k, model in grown.items():
            model.reserve(self._rows.used[k])

    def _detect(self, view: View) -> list[Findings]:
        out: list[Findings] = []
        self._place(view)
        for step in view.steps:
            if not self.scores(step.query):
                continue
            model = self.model_for(step.query)
            rows = self._rows.row[step.ids].astype(np.int64)
            self._unpark(model, rows, step)
            scores = model.update(rows, step.value, step.at, step.outside)
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
