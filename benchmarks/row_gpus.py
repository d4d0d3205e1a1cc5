"""A fleet of GPUs whose one metric reads a row of a table at each collect: the ``anomaly run`` path fed
prepared series (``noise_false_alerts.py``, ``level_shift_alerts.py``), one tick a row, one column a GPU."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from prometheus_client.core import Metric


class RowGpus:
    """Each column of ``values`` a GPU whose ``metric`` reads row ``row`` of it at each collect."""

    def __init__(self, values: np.ndarray, metric: str, help_text: str) -> None:
        self.values = values
        self.metric = metric
        self.help_text = help_text
        self.row = 0
        self.labels = [
            {"gpu": str(s % 8), "UUID": f"GPU-{s:05d}", "Hostname": f"node{s // 8:03d}", "modelName": "H100"}
            for s in range(values.shape[1])
        ]

    def collect(self) -> Iterable[Metric]:
        family = Metric(self.metric, self.help_text, "gauge")
        for lab, v in zip(self.labels, self.values[self.row].tolist(), strict=True):
            family.add_sample(self.metric, lab, v)
        return [family]
