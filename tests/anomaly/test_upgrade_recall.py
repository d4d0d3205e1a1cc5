"""An alert firing across an upgrade that added an informational label (``deviation``) is the same alert."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from alerting.engine import IncidentEngine
from anomaly.detectors import Findings
from anomaly.forwarder import AlertForwarder
from anomaly.series import View
from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.forwarder_serve import Listing, deliver, forwarding
from tests.anomaly.service_ticks import GPUS, TEMP, HistorySource, tick
from tests.migrated_store import migrated_sqlite


class Runaway:
    """A thermal runaway's score on one GPU by the read's time (30 s reads from ``start``), as the thermal
    detector scores it; ``sided``: its findings say their side (``sign``, up), as they do since 4d7b87cb, so
    its alerts carry ``deviation="up"``; not ``sided``: as the release before, which named no side."""

    name = "thermal"

    def __init__(self, start: float, scores: list[float], *, sided: bool) -> None:
        self.start, self.scores, self.sided = start, scores, sided

    def fit(self, view: View) -> None:
        """Nothing to fit."""

    def forget(self, ids: np.ndarray) -> None:
        """Nothing to forget."""

    def detect(self, view: View) -> list[Findings]:
        """The score of the read at the view's time."""
        n = round((view.time - self.start) / 30.0)
        score = np.array([self.scores[n] if 0 <= n < len(self.scores) else 0.0])
        sign = np.ones(1) if self.sided else None
        return [Findings(self.name, "q", [GPUS[3]], score=score, value=score, sign=sign)]


def _served(
    tmp_path: Path, *, reescalate: bool, unreachable: int = 0
) -> tuple[IncidentEngine, list[list[dict[str, object]]]]:
    """What serve holds and was posted after `anomaly run`, firing a runaway's alert under the release
    before's labels, is upgraded (restarted without a snapshot) while the runaway goes on; serve out of its
    reach for the first ``unreachable`` ticks after the restart (serve ticks on alone)."""
    clock = FakeClock()
    start = clock.time()
    scores = [0.0] * 6 + [9.0] * 40
    engine = IncidentEngine(migrated_sqlite(tmp_path / f"serve-{reescalate}-{unreachable}.db"), clock)
    serve = Listing(engine)
    cut = httpx.ConnectError("connection refused")

    def handle(request: httpx.Request) -> httpx.Response:
        if restart_at <= n < restart_at + unreachable:
            raise cut
        return serve.handle(request)

    restart_at = 6 + 12

    def started(*, sided: bool) -> tuple[AnomalyService, AlertForwarder]:
        cfg = AnomalyConfig(reescalate_alerts=reescalate)
        source = HistorySource({TEMP: lambda t: [60.0] * len(GPUS)})
        service = AnomalyService(cfg, [source], clock, detectors=[Runaway(start, scores, sided=sided)])
        forwarder = forwarding(service, handle, clock)
        return service, forwarder

    n = 0
    service, forwarder = started(sided=False)
    for n in range(1, len(scores)):
        if n == restart_at:
            service, forwarder = started(sided=True)  # the upgrade, its snapshot unusable or none
            service.warm_up(forwarder.held())
            # Recalled as serve holds it, re-escalation on or off (fix/reesc), so it re-escalates as it
            # would have without the upgrade and keeps its side; without serve's word, for the hold from
            # the start.
            assert len(service._recalled) == 1
        tick(clock, service)
        if restart_at <= n < restart_at + unreachable:
            forwarder.flush()  # what is due fails
            engine.tick()
            continue
        deliver(serve, forwarder, engine)
    return engine, serve.bodies


def test_a_thermal_alert_firing_across_the_upgrade_that_added_deviation_is_no_new_alert_at_serve(tmp_path):
    # Posted again with deviation="up" after the upgrade, the alert had a new fingerprint: serve, which keys
    # its alerts by fingerprint as Alertmanager does, stored a second alert for the same GPU and condition
    # and told it firing, while the first one ran out at its endsAt.
    for reescalate, unreachable in ((True, 0), (False, 0), (True, 4), (False, 4)):
        engine, bodies = _served(tmp_path, reescalate=reescalate, unreachable=unreachable)
        ((row, _),) = engine.store.list_rows()
        timeline = engine.store.get(row.id).timeline
        assert engine.store.alert_count() == 1, f"reescalate_alerts={reescalate}, unreachable={unreachable}"
        kinds = [e.kind for e in timeline]
        assert (kinds.count("alert_added"), kinds.count("alert_firing")) == (1, 0), kinds
        labels = {tuple(sorted(a["labels"].items())) for body in bodies for a in body}  # type: ignore[union-attr]
        assert len(labels) == 1, f"posted under the one label set serve holds: {labels}"
