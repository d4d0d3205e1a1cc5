"""The ``signatures`` detector across a restart: with a snapshot, a hard fault whose only evidence is a
counter's rise (an XID, a double-bit ECC error) while ``anomaly run`` was stopped is alerted; without one, or
with one that is refused, every value at the first read is history, as before."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anomaly.needs import DBE, GPU_UP, XID_COUNTER
from anomaly.scheduler import AnomalyScheduler
from anomaly.service import AnomalyService
from anomaly.snapshot import load_snapshot
from anomaly.sources import Frame, SourceHealth
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import Alert, AlertStatus

EVERY = 300.0
GPUS = [{"Hostname": "n0", "gpu": str(i), "UUID": f"GPU-{i}", "modelName": "H100"} for i in range(4)]
OLD_XID = {**GPUS[0], "xid": "13"}  # three XID 13 from before the service ever ran: history
NEW_XID = {**GPUS[1], "xid": "79"}  # created by its first event, as gpuwarden's exporter does
BEFORE, DOWN = 6, 3  # ticks before the save; ticks down, the fault at the second of them
SIGNATURE_ALERTS = {"GpuXidError", "GpuDoubleBitEcc"}


class FaultSource:
    """Prometheus: every GPU up; at ``fault_at`` GPU-1 falls off the bus (XID 79) and GPU-2 has a DBE."""

    name = "prometheus"

    def __init__(self, fault_at: float) -> None:
        self.fault_at = fault_at
        self._health = SourceHealth(self.name)

    def read(self, start: float, end: float) -> list[Frame]:
        ts = np.arange(math.floor(start / EVERY) * EVERY + EVERY, end + 1, EVERY)
        ts = ts[(ts > start) & (ts <= end)]
        self._health.succeeded(end, len(GPUS))
        if not ts.size:
            return []
        faulted = (ts >= self.fault_at).astype(float)
        dbe = np.zeros((len(GPUS), ts.size))
        dbe[2] = faulted
        xids = np.vstack([np.full(ts.size, 3.0), np.where(faulted > 0, 1.0, np.nan)])
        return [
            Frame(GPU_UP, GPUS, ts, np.ones((len(GPUS), ts.size))),
            Frame(DBE, GPUS, ts, dbe, kind="counter"),
            Frame(XID_COUNTER, [OLD_XID, NEW_XID], ts, xids, kind="counter"),
        ]

    def health(self) -> SourceHealth:
        return self._health


def _signature_alerts(alerts: list[Alert]) -> list[tuple[str, str, str, AlertStatus]]:
    return sorted(
        (a.labels["alertname"], a.labels["UUID"], a.labels.get("xid", ""), a.status)
        for a in alerts
        if a.labels["alertname"] in SIGNATURE_ALERTS
    )


Scores = dict[str, list[float]]


def _run(clock: FakeClock, service: AnomalyService, ticks: int) -> Scores:
    """``ticks`` ticks: the signatures' scores of the last, by query."""
    scores: Scores = {}
    for _ in range(ticks):
        clock.advance(EVERY)
        found = service.infer().findings
        scores = {f.query: f.score.tolist() for f in found if f.detector == "signatures"}
    return scores


def _started(clock: FakeClock, **settings: object) -> tuple[list[Alert], AnomalyService]:
    posted: list[Alert] = []
    source = FaultSource(fault_at=FakeClock().time() + (BEFORE + 2) * EVERY)  # both runs start there
    cfg = AnomalyConfig(infer_every_seconds=EVERY, **settings)  # type: ignore[arg-type]
    return posted, AnomalyService(cfg, [source], clock, on_alert=posted.append)


def _uninterrupted() -> tuple[list[Alert], Scores]:
    """What the service posts over the same span when it is never stopped, and its last tick's scores."""
    clock = FakeClock()
    posted, service = _started(clock)
    service.warm_up()
    return posted, _run(clock, service, BEFORE + DOWN + 1)


def _restarted(tmp_path, snapshot: str) -> tuple[list[Alert], Scores]:
    """Ticks, the state saved, ``DOWN`` ticks stopped while the faults happen, and a new service's first
    tick: what it posts and that tick's scores, warmed up from the snapshot (``used``), from none (``none``)
    or from one refused (``refused``: other settings)."""
    clock = FakeClock()
    _, first = _started(clock)
    first.warm_up()
    _run(clock, first, BEFORE)
    path = tmp_path / "anomaly.state.npz"
    AnomalyScheduler(first, state_file=path).shutdown()  # anomaly run stopped: its state saved at stop
    clock.advance(DOWN * EVERY)
    settings = {"fleet_k": 5.0} if snapshot == "refused" else {}
    posted, second = _started(clock, **settings)
    second.warm_up(snapshot=load_snapshot(path, second.cfg) if snapshot != "none" else None)
    return posted, _run(clock, second, 1)


def test_a_restart_from_a_snapshot_alerts_the_xid_and_the_dbe_that_happened_while_it_was_stopped(tmp_path):
    posted, scores = _restarted(tmp_path, "used")
    assert _signature_alerts(posted) == [
        ("GpuDoubleBitEcc", "GPU-2", "", AlertStatus.FIRING),
        ("GpuXidError", "GPU-1", "79", AlertStatus.FIRING),
    ]
    # The alerts the uninterrupted run raised at the fault, the same ones (serve takes them as one), and
    # the tick after the restart scored as without it: the faults counted at their time, not once more now.
    straight, straight_scores = _uninterrupted()
    assert _signature_alerts(straight) == _signature_alerts(posted)
    assert {a.fingerprint for a in posted} >= {a.fingerprint for a in straight}
    assert scores == straight_scores and DBE in scores


@pytest.mark.parametrize("snapshot", ["none", "refused"])
def test_without_a_usable_snapshot_every_count_at_the_first_read_is_history_as_before(tmp_path, snapshot):
    posted, _ = _restarted(tmp_path, snapshot)
    assert _signature_alerts(posted) == []
