"""A restarted forwarder posts on under the labels serve holds an alert by only the activity serve holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alerting.engine import IncidentEngine
from alerting.faults import classify
from anomaly.detectors import Findings
from anomaly.forwarder import AlertForwarder
from anomaly.series import View
from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import FaultKind
from tests.anomaly.test_service import GPUS, TEMP, HistorySource, tick
from tests.anomaly.test_service_reescalation import Listing, deliver, forwarding
from tests.migrated_store import migrated_sqlite


class Sided:
    """A temperature's score on one GPU by the read's time (30 s reads from ``start``), with the side its
    value left its band on (1: up, -1: down), as the adaptive detector says them."""

    name = "adaptive"

    def __init__(self, start: float, reads: list[tuple[float, int]]) -> None:
        self.start, self.reads = start, reads

    def fit(self, view: View) -> None:
        """Nothing to fit."""

    def forget(self, ids: np.ndarray) -> None:
        """Nothing to forget."""

    def detect(self, view: View) -> list[Findings]:
        """The score and side of the read at the view's time; quiet outside the script."""
        n = round((view.time - self.start) / 30.0)
        score, sign = self.reads[n] if 0 <= n < len(self.reads) else (0.0, 0)
        return [
            Findings(
                self.name,
                "q",
                [GPUS[3]],
                score=np.array([score]),
                value=np.array([score]),
                sign=np.array([float(sign)]),
                resolve_after=4,
            )
        ]


def test_a_fall_raised_within_the_hold_of_a_rise_its_dead_process_resolved_reaches_serve_as_a_fall(
    tmp_path: Path,
) -> None:
    # The process that resolved a temperature's "up" alert died before it posted the resolution, so serve
    # held it firing to its endsAt; the next one listed it at its start and took a "down" fault raised within
    # that hold for the same activity: posted on as "up", serve went on calling the cold GPU a thermal fault
    # (it reads a temperature's side from ``deviation``).
    clock = FakeClock()
    start = clock.time()
    reads = [(0.0, 0)] * 6 + [(9.0, 1)] * 10 + [(0.0, 0)] * 4 + [(9.0, -1)] * 12
    died = 19  # the tick that resolved the rise: its post never went out
    engine = IncidentEngine(migrated_sqlite(tmp_path / "serve.db"), clock)
    serve = Listing(engine)

    def started() -> tuple[AnomalyService, AlertForwarder]:
        source = HistorySource({TEMP: lambda t: [60.0] * len(GPUS)})
        service = AnomalyService(AnomalyConfig(), [source], clock, detectors=[Sided(start, reads)])
        forwarder = forwarding(service, serve.handle, clock)
        return service, forwarder

    service, forwarder = started()
    posted_before = 0
    for n in range(1, len(reads)):
        if n == died + 1:
            service, forwarder = started()
            service.warm_up(forwarder.held())
            posted_before = len(serve.bodies)
        tick(clock, service)
        if n == died:
            (ended,) = [a for a in forwarder.unsent_resolved.values()]
            assert ended.labels["deviation"] == "up"
            continue
        deliver(serve, forwarder, engine)
    sides = {a["labels"].get("deviation") for body in serve.bodies[posted_before:] for a in body}  # type: ignore[union-attr]
    assert sides == {"down"}, "the restarted process posted the fall under its own side"
    firing = [(r.labels.get("deviation"), classify(r.labels)) for r in engine.store.firing_alerts()]
    assert firing == [("down", FaultKind.UNKNOWN)], "serve holds the GPU as cold, not as a thermal fault"


def _across_a_restart(tmp_path: Path, *, restart_at: int | None, reescalate: bool) -> IncidentEngine:
    """serve after `anomaly run` raised a temperature's rise whose reads then turn to a fall (the band
    followed the spike: the value comes back below it) while the alert fires; restarted without a snapshot
    before read ``restart_at`` (None: never), two reads into the fall."""
    clock = FakeClock()
    start = clock.time()
    reads = [(0.0, 0)] * 6 + [(9.0, 1)] * 10 + [(9.0, -1)] * 12
    engine = IncidentEngine(migrated_sqlite(tmp_path / f"serve-{restart_at}-{reescalate}.db"), clock)
    serve = Listing(engine)

    def started() -> tuple[AnomalyService, AlertForwarder]:
        source = HistorySource({TEMP: lambda t: [60.0] * len(GPUS)})
        cfg = AnomalyConfig(reescalate_alerts=reescalate)
        service = AnomalyService(cfg, [source], clock, detectors=[Sided(start, reads)])
        forwarder = forwarding(service, serve.handle, clock)
        return service, forwarder

    service, forwarder = started()
    for n in range(1, len(reads)):
        if n == restart_at:
            service, forwarder = started()
            service.warm_up(forwarder.held(recalling=reescalate))
        tick(clock, service)
        deliver(serve, forwarder, engine)
    return engine


def test_a_rise_recalled_at_a_restart_whose_reads_turn_to_a_fall_stays_the_one_rise_at_serve(
    tmp_path: Path,
) -> None:
    # The warm-up recalled the rise its history left firing; raised again at the first reads, which fell
    # below the band that followed the spike, it took their side: a "down" alert, which the forwarder posts
    # as another activity than the rise serve holds. serve held two alerts, the cold one a new one, where
    # without the restart the rise goes on as one alert until it resolves.
    straight = _across_a_restart(tmp_path, restart_at=None, reescalate=True)
    restarted = _across_a_restart(tmp_path, restart_at=6 + 10 + 2, reescalate=True)
    for engine in (straight, restarted):
        assert engine.store.alert_count() == 1
        firing = [r.labels.get("deviation") for r in engine.store.firing_alerts()]
        assert firing == ["up"], "serve holds the rise, its side as it was raised"
