"""The ``multivariate`` detector: an IsolationForest over each GPU's vector of metrics.

Rows are GPUs (joined on the ``UUID`` label), columns the configured queries. Every tick appends the rows
to a bounded history; ``fit`` (on the ``fit_every`` schedule) refits the forest on that history and
calibrates the score: 1 means ``margin`` times as far above the training median as the training's 99.9th
percentile. All GPUs are scored in one batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.ensemble import IsolationForest

from anomaly.detectors import Findings
from anomaly.series import View
from anomaly.thresholds import FloatArray
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

    @property
    def fitted(self) -> bool:
        """Whether a model exists yet (before the first fit nothing is scored)."""
        return self._model is not None

    def matrix(self, view: View) -> tuple[list[Mapping[str, str]], FloatArray]:
        """GPUs that report every feature, and their feature matrix."""
        columns: list[dict[str, float]] = []
        labels_by_key: dict[str, Mapping[str, str]] = {}
        for query in self.queries:
            step = view.latest.get(query)
            if step is None:
                return [], np.zeros((0, len(self.queries)))
            col = {}
            for lab, value in zip(step.labels, step.value.tolist(), strict=True):
                key = lab.get(self.key_label)
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
        model = IsolationForest(n_estimators=self.trees, random_state=self.seed)
        model.fit(x)
        s = -model.score_samples(x)
        self._median = float(np.median(s))
        self._high = float(np.quantile(s, 0.999))
        self._model = model
        self._rows = [x]

    def forget(self, ids: np.ndarray) -> None:
        """Rows are keyed by GPU, not series id: nothing to drop."""

    def detect(self, view: View) -> list[Findings]:
        """Score every complete GPU row; remember the rows for the next fit."""
        labels, x = self.matrix(view)
        if not labels:
            return []
        self._rows.append(x)
        if sum(r.shape[0] for r in self._rows) > 2 * self.history:
            self._rows = [np.vstack(self._rows)[-self.history :]]
        if self._model is None:
            score = np.zeros(len(labels))
        else:
            s = -self._model.score_samples(x)
            score = np.maximum(s - self._median, 0.0) / (self.margin * max(self._high - self._median, 1e-6))
        return [
            Findings(
                detector=self.name,
                query="gpu_vector",
                labels=[{k: v for k, v in lab.items() if k != "__name__"} for lab in labels],
                score=score,
                value=np.full(len(labels), np.nan),
                action=RecommendedAction.INVESTIGATE,
                summary="the GPU's metrics together look unlike the fleet's history",
            )
        ]
