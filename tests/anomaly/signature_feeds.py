"""What the signatures detector's tests share: a GPU's labels, a feed of readings, what fired, a service."""

from __future__ import annotations

import numpy as np

from anomaly.series import CounterRates, SeriesIndex, build_view
from anomaly.signatures import SignatureDetector
from anomaly.sources import Frame

GPU = {"gpu": "0", "UUID": "GPU-a", "Hostname": "n1"}


class Feed:
    def __init__(self) -> None:
        self.index = SeriesIndex()
        self.rates = CounterRates()
        self.det = SignatureDetector()
        self.t = 0.0

    def tick(
        self,
        *frames: tuple[str, list[dict[str, str]], list[float], str],
        not_due: frozenset[str] = frozenset(),
        partial: dict[str, list[float]] | None = None,
    ):
        """One read of ``frames``; ``partial``: per query, what a range query answered at points RangeEdges
        blanked (``Frame.partial``), NaN at the others."""
        self.t += 30
        partial = partial or {}
        fs = [
            Frame(
                q,
                labels,
                np.array([self.t]),
                np.array(vals, dtype=float).reshape(-1, 1),
                kind=kind,
                partial=np.array(partial[q], dtype=float).reshape(-1, 1) if q in partial else None,
            )
            for q, labels, vals, kind in frames
        ]
        view = build_view(fs, self.index, self.rates, self.t)
        view.not_due = not_due
        return [f for f in self.det.detect(view)]


def fired(findings):
    return [(f, i) for f in findings for i in f.anomalous()]


def up(*gpus: dict[str, str]) -> tuple[str, list[dict[str, str]], list[float], str]:
    return ("gpuwarden_gpu_up", list(gpus), [1.0] * len(gpus), "gauge")


SBE = "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"
