"""The ``multivariate`` detector: an IsolationForest over each GPU's vector of metrics.

Rows are GPUs (joined on the ``UUID`` label), columns the configured queries. Every tick appends the rows
to a bounded history; ``fit`` (on the ``fit_every`` schedule) refits the forest on that history and
calibrates the score: 1 means ``margin`` times as far above the training median as the training's 99.9th
percentile. All GPUs are scored in one batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from anomaly.detectors import Findings
from anomaly.series import Step, View
from anomaly.snapshot import State
from anomaly.thresholds import FloatArray, IntArray
from gpuwarden.mig import INSTANCE_ID
from gpuwarden.model import RecommendedAction


class MultivariateDetector:
    """Batch IsolationForest per fleet; online scoring, scheduled refits."""

    name = "multivariate"

    def __init__(
        self,
        queries: Sequence[str],
        *,
        key_label: str = "UUID",
        trees: int = 100,
        history: int = 4096,
        margin: float = 1.5,
        seed: int = 0,
    ) -> None:
        self.queries = tuple(queries)
        self.key_label = key_label
        self.trees, self.history, self.margin, self.seed = trees, history, margin, seed
        self._rows: list[FloatArray] = []
        self._model: IsolationForest | None = None
        self._median = 0.0
        self._high = 1.0
        self._key_cache: dict[str, tuple[IntArray, list[str | None]]] = {}
        self._scorer: _ForestScorer | None = None
        self._train: FloatArray | None = None  # the rows the model was fitted on (a snapshot refits it)

    @property
    def fitted(self) -> bool:
        """Whether a model exists yet (before the first fit nothing is scored)."""
        return self._model is not None

    def _keys(self, step: Step) -> list[str | None]:
        """The key label of each row, reused while the query's series ids are unchanged; None for a MIG
        instance's row (``GPU_I_ID``): its framebuffer and profiling values are the instance's, not the
        GPU's, whose vector is its whole-GPU row (device-level values come one per GPU: ``AnomalyService``
        keeps one)."""
        cached = self._key_cache.get(step.query)
        if cached is not None:
            ids = cached[0]
            if ids is step.ids or (ids.shape == step.ids.shape and np.array_equal(ids, step.ids)):
                return cached[1]
        keys = [None if INSTANCE_ID in lab else lab.get(self.key_label) for lab in step.labels]
        self._key_cache[step.query] = (step.ids, keys)
        return keys

    def matrix(self, view: View, learnable: bool = False) -> tuple[list[Mapping[str, str]], FloatArray]:
        """GPUs that report every feature, and their feature matrix (rows in key order); ``learnable``: of
        the values detectors learn from (a GPU with a value outside its query's data range left out)."""
        steps = [view.latest.get(q) for q in self.queries]
        present = [s for s in steps if s is not None]
        if len(present) < len(steps) or not present:
            return [], np.zeros((0, len(self.queries)))
        keys = self._keys(present[0])
        if all(self._keys(s) == keys for s in present[1:]):
            # The usual case: every query lists the same GPUs in the same order; no per-GPU Python work.
            x = np.column_stack([s.learnable if learnable else s.value for s in present])
            ok = np.isfinite(x).all(axis=1) & np.array([k is not None for k in keys], np.bool_)
            rows = np.flatnonzero(ok)
            order = rows[np.argsort(np.array([keys[i] for i in rows.tolist()], dtype=object), kind="stable")]
            if len({keys[i] for i in order.tolist()}) == order.size:
                labels = present[0].labels
                return [labels[i] for i in order.tolist()], x[order]
        return self._matrix_by_key(view, learnable)

    def _matrix_by_key(self, view: View, learnable: bool) -> tuple[list[Mapping[str, str]], FloatArray]:
        columns: list[dict[str, float]] = []
        labels_by_key: dict[str, Mapping[str, str]] = {}
        for query in self.queries:
            step = view.latest.get(query)
            if step is None:
                return [], np.zeros((0, len(self.queries)))
            col = {}
            values = step.learnable if learnable else step.value
            for lab, key, value in zip(step.labels, self._keys(step), values.tolist(), strict=True):
                if key is not None and np.isfinite(value):
                    col[key] = value
                    labels_by_key.setdefault(key, lab)
            columns.append(col)
        keys = sorted(set.intersection(*(set(c) for c in columns))) if columns else []
        x = np.array([[c[k] for c in columns] for k in keys], dtype=np.float64).reshape(
            len(keys), len(columns)
        )
        return [labels_by_key[k] for k in keys], x

    def fit(self, view: View) -> None:
        """Refit on the collected history (needs at least 64 rows)."""
        if len(self._rows) == 0:
            return
        x = np.vstack(self._rows)[-self.history :]
        if x.shape[0] < 64:
            return
        self._fit_on(x)
        self._rows = [x]

    def _fit_on(self, x: FloatArray) -> None:
        """Fit the forest on ``x`` and calibrate its score; the same ``x`` gives the same model (``seed``)."""
        model = IsolationForest(n_estimators=self.trees, random_state=self.seed)
        model.fit(x)
        self._scorer = _ForestScorer.of(model, x.shape[1])
        self._model = model
        s = self._score(x)
        self._median = float(np.median(s))
        self._high = float(np.quantile(s, 0.999))
        self._train = x

    def state(self) -> State:
        """The rows kept for the next fit and those the model was fitted on (``anomaly.snapshot``): no model
        is stored, it is fitted again on the same rows, the same forest."""
        out = State({"rows": bool(self._rows), "fitted": self._train is not None})
        if self._rows:
            out.arrays["rows"] = np.vstack(self._rows)
        if self._train is not None:
            out.arrays["train"] = self._train.copy()
        return out

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()``), fitting the model again where one was fitted."""
        width = len(self.queries)
        for key in ("rows", "train"):
            got = state.arrays.get(key)
            if got is not None and (got.ndim != 2 or got.shape[1] != width):
                raise ValueError(f"multivariate {key}: shape {got.shape}, not (n, {width})")
        self._rows = [np.asarray(state.arrays["rows"], np.float64)] if state.meta["rows"] else []
        # Unfitted unless ``state`` was: a refused snapshot's rollback (``AnomalyService._take_up``) restores
        # a state of no forest, and the refused one's, fitted on another fleet's rows, scored this one.
        self._model, self._scorer, self._train, self._median, self._high = None, None, None, 0.0, 1.0
        self._key_cache.clear()  # by series id: the ids restored name other series
        if state.meta["fitted"]:
            self._fit_on(np.asarray(state.arrays["train"], np.float64))

    def _score(self, x: FloatArray) -> FloatArray:
        """Anomaly scores in (0, 1], higher is more anomalous (``-score_samples``)."""
        if self._scorer is not None:
            return self._scorer.score(x)
        assert self._model is not None
        return np.asarray(-self._model.score_samples(x), dtype=np.float64)

    def judged_by(self, query: str) -> tuple[str, ...]:
        """The queries its alerts (``gpu_vector``) are judged by: every column; a GPU lacking one is not
        scored."""
        return self.queries

    def forget(self, ids: np.ndarray) -> None:
        """Rows are keyed by GPU, not series id; only the cached key lists may name reused ids."""
        if ids.size:
            self._key_cache.clear()

    def detect(self, view: View) -> list[Findings]:
        """Score every complete GPU row; remember the rows for the next fit."""
        labels, x = self.matrix(view)
        if not labels:
            return []
        steps = [view.latest.get(q) for q in self.queries]
        wild = any(s is not None and s.outside is not None for s in steps)
        self._rows.append(self.matrix(view, learnable=True)[1] if wild else x)  # the next fit's history
        if sum(r.shape[0] for r in self._rows) > 2 * self.history:
            self._rows = [np.vstack(self._rows)[-self.history :]]
        if self._model is None:
            score = np.zeros(len(labels))
        else:
            s = self._score(x)
            score = np.maximum(s - self._median, 0.0) / (self.margin * max(self._high - self._median, 1e-6))
        return [
            Findings(
                detector=self.name,
                query="gpu_vector",
                labels=[{k: v for k, v in lab.items() if k != "__name__"} for lab in labels]
                if "__name__" in labels[0]
                else labels,
                score=score,
                value=np.full(len(labels), np.nan),
                action=RecommendedAction.INVESTIGATE,
                summary="the GPU's metrics together look unlike the fleet's history",
            )
        ]


def _average_path_length(n: IntArray) -> FloatArray:
    """c(n): the mean path length of an unsuccessful search in a binary search tree of n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros(n.shape)
    out[n == 2] = 1.0
    big = n > 2
    m = n[big]
    out[big] = 2.0 * (np.log(m - 1.0) + np.euler_gamma) - 2.0 * (m - 1.0) / m
    return out


@dataclass(frozen=True, slots=True)
class _ForestScorer:
    """IsolationForest scoring without joblib's per-tree dispatch (which dominates for a few hundred rows):
    each tree's leaf lookup table (depth + c(leaf size) - 1) is built once per fit; a tick is one ``apply``
    and one gather per tree. Equal to ``-IsolationForest.score_samples`` (a test checks it)."""

    trees: tuple[Any, ...]
    features: tuple[IntArray | None, ...]
    lookup: tuple[FloatArray, ...]
    denominator: float

    @classmethod
    def of(cls, model: IsolationForest, n_features: int) -> _ForestScorer | None:
        """The scorer of a fitted forest; None if this scikit-learn lays trees out differently."""
        try:
            subsample = model._max_features != n_features
            trees, features, lookup = [], [], []
            for est, feats in zip(model.estimators_, model.estimators_features_, strict=True):
                tree = est.tree_
                depth = np.asarray(tree.compute_node_depths(), dtype=np.float64)
                trees.append(tree)
                features.append(np.asarray(feats, np.int64) if subsample else None)
                lookup.append(depth + _average_path_length(tree.n_node_samples) - 1.0)
            c = float(_average_path_length(np.array([model._max_samples]))[0])
        except AttributeError:
            return None
        return cls(tuple(trees), tuple(features), tuple(lookup), len(trees) * c)

    def score(self, x: FloatArray) -> FloatArray:
        """``2 ** -(mean path length / c(max_samples))`` per row."""
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        depths = np.zeros(x32.shape[0])
        for tree, feats, table in zip(self.trees, self.features, self.lookup, strict=True):
            rows = x32 if feats is None else np.ascontiguousarray(x32[:, feats])
            depths += table[tree.apply(rows)]
        if self.denominator == 0:
            return np.ones(x32.shape[0])
        return np.asarray(2.0 ** (-depths / self.denominator), dtype=np.float64)
