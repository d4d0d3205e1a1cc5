"""Which snapshot the warm-up takes up: this fleet's, also where it grew or shrank while the service was
stopped; and one refused (another fleet's, one that does not fit the detectors) leaves nothing of itself, the
service warmed up as it would have without one."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from anomaly.service import AnomalyService, _Firing
from anomaly.snapshot import load_snapshot, save_snapshot
from anomaly.sources import Frame
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, AlertSource
from tests.anomaly.snapshot_fields import _PARTS, _assert_same_fields, _service_fields
from tests.anomaly.snapshot_grid import EVERY, GPUS, OTHER_FLEET, GridSource, _config, _service, _ticks

SMALL_FLEET = OTHER_FLEET[:2]  # 2 GPUs: 24 rows in the hour of history, fewer than a fit needs (64)


class SmallFleetSource(GridSource):
    """Another fleet, of 2 GPUs."""

    def read(self, start: float, end: float) -> list[Frame]:
        return [f.rows([0, 1], SMALL_FLEET) for f in super().read(start, end)]


def _multivariate(service: AnomalyService) -> object:
    return next(d for d in service.detectors if d.name == "multivariate")


def test_another_fleets_refused_snapshot_leaves_its_fitted_forest_nowhere(tmp_path):
    """The first fleet's forest, fitted on its rows, was kept by the multivariate detector of a second fleet
    that refused its snapshot (the rollback restored a state with no forest, which fitted none and dropped
    none): where the second fleet's hour of history held too few rows for a fit (a small or new fleet), its
    GPUs were scored by the other fleet's forest and its next save held that fleet's training rows."""
    clock = FakeClock()
    _, first = _service(clock)
    first.warm_up()
    _ticks(clock, first, 30)
    assert _multivariate(first).fitted  # type: ignore[attr-defined]
    path = tmp_path / "anomaly.state.npz"
    assert save_snapshot(path, first.snapshot())
    refused, alone = (AnomalyService(_config(), [SmallFleetSource()], clock) for _ in range(2))
    refused.warm_up(snapshot=load_snapshot(path, refused.cfg))
    alone.warm_up()
    assert not _multivariate(alone).fitted  # type: ignore[attr-defined]
    assert not _multivariate(refused).fitted  # type: ignore[attr-defined]
    for service in (refused, alone):  # the GPUs counted, looked up as the next read of the gauge would
        next(d for d in service.detectors if d.name == "signatures")._counted_gpus()  # type: ignore[attr-defined]
    got, want = _service_fields(refused), _service_fields(alone)
    for part in _PARTS:
        _assert_same_fields(want[part], got[part], part)
    saved = refused.snapshot().components["detector:multivariate"]
    assert not saved.meta["fitted"] and "train" not in saved.arrays
    np.testing.assert_array_equal(
        *(np.vstack(_multivariate(s)._rows) for s in (refused, alone))  # type: ignore[attr-defined]
    )


ADDED = [{**gpu, "Hostname": f"c{gpu['Hostname']}", "UUID": f"GPU-C{i}"} for i, gpu in enumerate(GPUS * 2)]


class ResizedSource(GridSource):
    """The fleet the snapshot was saved from, grown to 3 times its GPUs (``factor`` 3: 16 GPUs added, each
    reading a GPU's values a little apart) or shrunk to its first 2 (``factor`` 0)."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def read(self, start: float, end: float) -> list[Frame]:
        frames = super().read(start, end)
        if not self.factor:
            return [f.rows([0, 1], GPUS[:2]) for f in frames]
        scaled = [1.0, 1.01, 0.99][: self.factor]
        return [
            Frame(f.query, [*GPUS, *ADDED], f.timestamps, np.vstack([f.values * k for k in scaled]), f.kind)
            for f in frames
        ]


@pytest.mark.parametrize("factor", [3, 0], ids=["grown-3-times", "shrunk-to-a-quarter"])
def test_this_fleets_snapshot_is_taken_up_where_the_fleet_grew_or_shrank_while_stopped(
    tmp_path, caplog, factor
):
    """A fleet scaled up during an upgrade (3 times its GPUs when the service starts again) holds a third of
    the hour's series in the snapshot: refused as another fleet's, its GPUs lost a week of seasonal profile.
    Every series the snapshot held is still read: it is this fleet's. Shrunk, the hour's series are all in
    it."""
    clock = FakeClock()
    _, first = _service(clock)
    first.warm_up()
    _ticks(clock, first, 30)
    path = tmp_path / "anomaly.state.npz"
    assert save_snapshot(path, first.snapshot())
    clock.advance(EVERY)
    service = AnomalyService(_config(), [ResizedSource(factor)], clock)
    with caplog.at_level(logging.INFO):
        assert service.warm_up(snapshot=load_snapshot(path, service.cfg)) == 1  # the tick after the save
    assert f"anomaly state restored from {path}" in caplog.text


class EmptySource(GridSource):
    """Prometheus answering every read with no series: every exporter gone."""

    def read(self, start: float, end: float) -> list[Frame]:
        self._health.succeeded(end, 0)
        return []


def test_a_snapshot_holding_no_series_but_a_firing_alert_is_refused_by_another_fleet(tmp_path, caplog):
    """Every exporter gone past ``forget_after_seconds`` before the save (Prometheus answering, with no
    series): the series index forgot every series, the alert still held firing. Half of none of its series
    is none: another fleet must not take that alert up and post it to its own serve. (A Prometheus down
    forgets no series: nothing was read of them.)"""
    clock = FakeClock()
    _, first = _service(clock)
    first.warm_up()
    _ticks(clock, first, 10)
    first.sources = [EmptySource()]
    _ticks(clock, first, 4)  # 1,200 s with no series: every series forgotten
    assert not np.isfinite(first.index.last_seen).any()
    alert = Alert(labels={"alertname": "GpuwardenAnomaly", "UUID": "GPU-3"}, source=AlertSource.ANOMALY)
    first.firing["k"] = _Firing(alert, 24, "DCGM_FI_DEV_GPU_TEMP", "adaptive", peak=7.5, trough=2.0, reads=40)
    path = tmp_path / "anomaly.state.npz"
    assert save_snapshot(path, first.snapshot())
    clock.advance(EVERY)
    posted: list[Alert] = []
    other = AnomalyService(_config(), [GridSource(OTHER_FLEET)], clock, on_alert=posted.append)
    with caplog.at_level(logging.INFO):
        other.warm_up(snapshot=load_snapshot(path, other.cfg))
    assert "is another fleet's: 0 of 48 series" in caplog.text
    clock.advance(EVERY)
    other.infer()
    assert other.firing == {} and posted == []
