"""The ``adaptive`` detector: adaptive thresholds over every series a tick read, per-query settings."""

from __future__ import annotations

import dataclasses
import fnmatch

import numpy as np

from anomaly.detectors import Findings
from anomaly.series import View
from anomaly.snapshot import State
from anomaly.thresholds import AdaptiveThresholds, ThresholdParams
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import RecommendedAction


class AdaptiveDetector:
    """One vectorised ``AdaptiveThresholds`` per distinct parameter set; learns from every step read."""

    name = "adaptive"

    def __init__(self, cfg: AnomalyConfig | None = None) -> None:
        cfg = cfg or AnomalyConfig()
        season = cfg.thresholds.seasonality and cfg.adaptive_seasonality
        self.default = ThresholdParams.from_config(cfg.thresholds, seasonality=season)
        self._per_query = {
            q.name: ThresholdParams.from_config(
                cfg.thresholds, direction=q.direction, min_deviation=q.min_deviation, seasonality=season
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
        """Each model's parameters and state (``anomaly.snapshot``)."""
        out = State({"models": []})
        for i, (params, model) in enumerate(self._models.items()):
            state = model.state()
            out.meta["models"].append({"params": dataclasses.asdict(params), **state.meta})
            out.arrays.update({f"m{i}_{key}": array for key, array in state.arrays.items()})
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
        self._models = models

    def fit(self, view: View) -> None:
        """Online: nothing to refit."""

    def forget(self, ids: np.ndarray) -> None:
        """Drop the state of vanished series."""
        for model in self._models.values():
            model.reset(ids[ids < model.capacity])

    def detect(self, view: View) -> list[Findings]:
        """Learn from every step in time order; report the newest step of each query."""
        out: list[Findings] = []
        for step in view.steps:
            if not self.scores(step.query):
                continue
            scores = self.model_for(step.query).update(step.ids, step.value, step.at, step.outside)
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
