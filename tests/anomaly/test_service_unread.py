"""A firing alert whose series a tick did not read (its node down, its GPU gone) has not recovered: reads
without it never let a re-escalation re-raise it mid-fault, whatever id, row or history it is read by."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from anomaly.detectors import Findings
from anomaly.series import View
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource, Frame
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import Alert, AlertStatus
from tests.anomaly.fakes import TableCollector
from tests.anomaly.service_ticks import GPUS, TEMP, HistorySource, tick

HOT, COOL, DOWN = 90.0, 60.0, math.nan


class Temperatures:
    """Scores each GPU's newest temperature, 0 at 60 C and 1 for each 3 C above: with ids, every row of the
    step, an unread one (NaN, a gap in Prometheus' answer) at 0, as the thermal and fleet detectors report;
    without, the rows read only, as the multivariate detector reports its complete GPUs."""

    name = "scripted"

    def __init__(self, *, ids: bool = True, resolve_after: int | None = None) -> None:
        self.ids = ids
        self.resolve_after = resolve_after

    def fit(self, view: View) -> None:
        """Nothing to fit."""

    def forget(self, ids: np.ndarray) -> None:
        """Nothing to forget."""

    def detect(self, view: View) -> list[Findings]:
        """The newest temperature step's scores."""
        step = view.latest.get(TEMP)
        if step is None:
            return []
        rows = np.arange(len(step.labels)) if self.ids else np.flatnonzero(np.isfinite(step.value))
        value = step.value[rows]
        score = np.nan_to_num(np.maximum((value - COOL) / 3.0, 0.0))
        return [
            Findings(
                self.name,
                TEMP,
                [step.labels[i] for i in rows.tolist()],
                ids=step.ids[rows] if self.ids else None,
                score=score,
                value=value if self.ids else np.full(rows.size, np.nan),
                resolve_after=self.resolve_after,
            )
        ]


def _live(phases: list[tuple[int, dict[int, float]]], detector: Temperatures, **cfg: float) -> list[Alert]:
    """Each tick's changes, re-raising on, an in-process source reading GPUs (by index in ``GPUS``) at the
    temperatures of each phase (ticks, {gpu: temperature}); a GPU left out is not read (its node down)."""
    clock = FakeClock()
    col = TableCollector()
    service = AnomalyService(
        AnomalyConfig(reescalate_alerts=True, **cfg), [CollectorSource([col], clock)], clock, [detector]
    )
    changes: list[Alert] = []
    for ticks, temps in phases:
        col.set(TEMP, [(GPUS[g], t) for g, t in temps.items()])
        for _ in range(ticks):
            changes += tick(clock, service).changes()
    return [a for a in changes if a.labels.get("gpu") == "3"]


def _reraised(changes: list[Alert]) -> list[Alert]:
    return [a for a in changes if "reescalated" in a.annotations]


def test_a_forgotten_series_id_taken_by_another_gpu_is_no_recovery_of_the_alert_it_named():
    # A fleet alert is held 240 reads, a series forgotten after 900 s: a node down longer leaves its alert
    # firing and its id free. A GPU that came up meanwhile took the id; its cool reads were taken for the
    # hot GPU's, a recovery, and the fault read back re-raised the alert mid-fault.
    changes = _live(
        [
            (70, {2: COOL, 3: HOT}),
            (12, {2: COOL}),  # node down: GPU 3's series forgotten after 10 reads (300 s)
            (8, {2: COOL, 4: COOL}),  # a new GPU's series takes the freed id
            (10, {2: COOL, 3: HOT, 4: COOL}),  # back, the fault still on
        ],
        Temperatures(resolve_after=60),
        forget_after_seconds=300,
    )
    assert len(changes) == 1, "raised once, never re-raised"


def test_a_gpu_back_under_a_new_series_id_recovers_and_its_next_fault_re_raises_the_alert():
    # The GPU away 12 reads, past forget_after; GPU 4 gone 2 reads after it, so the GPU comes back under GPU
    # 4's freed id. Back cool for 5 reads (a recovery), then hot again: a new fault, re-raised as it is
    # without the absence. Its reads under the new id were taken for unread: nothing was re-raised.
    cool_again = [(5, {2: COOL, 3: COOL}), (5, {2: COOL, 3: HOT})]
    phases = [(70, {2: COOL, 3: HOT, 4: COOL}), (2, {2: COOL, 4: COOL}), (12, {2: COOL}), *cool_again]
    away = _live(phases, Temperatures(resolve_after=60), forget_after_seconds=300)
    stayed = _live(
        [(84, {2: COOL, 3: HOT}), *cool_again], Temperatures(resolve_after=60), forget_after_seconds=300
    )
    assert len(_reraised(stayed)) == 1
    assert len(_reraised(away)) == 1, "the GPU's cool reads under its new id are a recovery"


def test_an_alert_of_a_detector_giving_no_series_ids_is_not_re_raised_after_its_gpu_is_not_read():
    # Seed 903's case for the multivariate detector, which reports its complete GPUs without ids: a node
    # down for 21 reads mid-fault counted as 21 quiet reads, a recovery, and the fault read back re-raised it.
    hot = {2: COOL, 3: HOT}
    changes = _live([(42, hot), (21, {2: COOL}), (10, hot)], Temperatures(ids=False))
    assert len(changes) == 1, "raised once, never re-raised"
    assert (
        len(_reraised(_live([(42, hot), (21, {2: COOL, 3: COOL}), (10, hot)], Temperatures(ids=False)))) == 1
    )


class GappySource(HistorySource):
    """``HistorySource`` answering as Prometheus' range queries do: a series with no sample in the range read
    is left out, one with some has gaps (NaN) where it had none."""

    def read(self, start, end):
        frames = []
        for f in super().read(start, end):
            rows = np.flatnonzero(np.isfinite(f.values).any(axis=1))
            frames.append(Frame(f.query, [f.labels[i] for i in rows.tolist()], f.timestamps, f.values[rows]))
        return frames


def _runaway_temps(start: float, down: range) -> Callable[[float], list[float]]:
    """The GPUs' temperatures at time t: GPU 3 hot from read 10, its node down (no sample) in ``down``."""

    def temps(t: float) -> list[float]:
        n = round((t - start) / 30.0)
        gpu3 = DOWN if n in down else HOT if n >= 10 else COOL
        return [gpu3 if g == 3 else COOL for g in range(len(GPUS))]

    return temps


def _restarted(restart_at: int | None, reads: int = 100) -> list[Alert]:
    """GPU 3's changes, re-raising on, with a Prometheus-like history, its node down for reads 60-72 (13),
    ``anomaly run`` restarted (its warm-up replaying the history) before read ``restart_at``."""
    clock = FakeClock()
    source = GappySource({TEMP: _runaway_temps(clock.time(), range(60, 73))})

    def started() -> AnomalyService:
        return AnomalyService(AnomalyConfig(reescalate_alerts=True), [source], clock, [Temperatures()])

    service = started()
    changes: list[Alert] = []
    for n in range(1, reads):
        if n == restart_at:
            service = started()
            assert service.warm_up() > 0
        changes += tick(clock, service).changes()
    return [a for a in changes if a.labels.get("gpu") == "3"]


@pytest.mark.parametrize("restart_at", [70, 74], ids=["node_down", "node_just_back"])
def test_a_restart_while_or_just_after_a_node_is_down_mid_fault_re_raises_nothing(restart_at):
    # Prometheus' hour of history holds the down node's series with gaps: the warm-up replayed each gap as
    # a read of the series (the thermal and fleet detectors report every row, unread ones at 0), a
    # recovery, and the runaway read back re-raised its alert mid-fault, as the live service does not.
    assert [a.status for a in _restarted(None)] == [AlertStatus.FIRING]
    assert _reraised(_restarted(restart_at)) == []
