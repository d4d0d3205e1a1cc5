"""A snapshot refused at the warm-up (another fleet's, one that does not fit the detectors) leaves nothing of
itself: the service warms up as it would have without one."""

from __future__ import annotations

import numpy as np

from anomaly.service import AnomalyService
from anomaly.snapshot import load_snapshot, save_snapshot
from anomaly.sources import Frame
from gpuwarden.clock import FakeClock
from tests.anomaly.test_snapshot import (
    _PARTS,
    OTHER_FLEET,
    GridSource,
    _assert_same_fields,
    _config,
    _service,
    _service_fields,
    _ticks,
)

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
