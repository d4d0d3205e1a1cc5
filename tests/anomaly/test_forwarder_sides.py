"""A restarted forwarder posts on under the labels serve holds an alert by only the activity serve holds: a
series' side flip while it is still anomalous goes on as its one alert, re-escalation on or off; a flip
after its alert resolved is a new one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from alerting.engine import IncidentEngine
from alerting.faults import classify
from anomaly.detectors import Findings
from anomaly.forwarder import AlertForwarder
from anomaly.series import View
from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import FaultKind
from tests.anomaly.forwarder_serve import Listing, deliver, forwarding
from tests.anomaly.service_ticks import GPUS, TEMP, HistorySource, tick
from tests.migrated_store import migrated_sqlite

QUIET, UP, DOWN = (0.0, 0), (9.0, 1), (9.0, -1)
# A rise whose value then falls below the band that followed the spike, the alert firing throughout.
FLIP = [QUIET] * 6 + [UP] * 10 + [DOWN] * 12
# A rise that resolves (4 quiet reads: ``Sided``'s resolve_after) at read 19, then a fall.
AFTER = [QUIET] * 6 + [UP] * 10 + [QUIET] * 4 + [DOWN] * 12


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


def _at_serve(
    tmp_path: Path,
    reads: list[tuple[float, int]],
    *,
    reescalate: bool,
    restart_at: int | None = None,
    lost: bool = False,
    snapshot: str | None = None,
    unlisted: bool = False,
) -> IncidentEngine:
    """serve after `anomaly run` read ``reads``, posting through its forwarder, restarted before read
    ``restart_at`` (None: never). ``lost``: the process before died after its last tick, before its post;
    ``snapshot``: the new one starts from the state the old one had ("taken") or from one it refuses
    ("refused": the hour replayed, as without one); ``unlisted``: serve cannot list its alerts at that start
    (a 503), only at the next post."""
    clock = FakeClock()
    start = clock.time()
    engine = IncidentEngine(migrated_sqlite(tmp_path / "serve.db"), clock)
    serve = Listing(engine)
    refusals = [503] if unlisted else []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and refusals:
            return httpx.Response(refusals.pop(), json={"error": "store down"})
        return serve.handle(request)

    def started() -> tuple[AnomalyService, AlertForwarder]:
        source = HistorySource({TEMP: lambda t: [60.0] * len(GPUS)})
        cfg = AnomalyConfig(reescalate_alerts=reescalate)
        service = AnomalyService(cfg, [source], clock, detectors=[Sided(start, reads)])
        return service, forwarding(service, handle, clock)

    service, forwarder = started()
    for n in range(1, len(reads)):
        if n == restart_at:
            saved = service.snapshot() if snapshot else None
            if saved is not None and snapshot == "refused":
                del saved.components["alerts"].meta["recalled"]  # as of a release before: does not fit
            service, forwarder = started()
            fed = service.warm_up(forwarder.held(), saved)
            assert (fed == 0) is (snapshot == "taken"), "taken up, no tick after it is replayed"
        tick(clock, service)
        if not (lost and restart_at is not None and n == restart_at - 1):
            deliver(serve, forwarder, engine)
    return engine


def _held(engine: IncidentEngine) -> tuple[int, list[str | None]]:
    """How many alerts serve stored, and the sides of those it holds firing."""
    return engine.store.alert_count(), [r.labels.get("deviation") for r in engine.store.firing_alerts()]


@pytest.mark.parametrize("reescalate", [True, False], ids=["reescalate", "no-reescalate"])
def test_a_fall_raised_within_the_hold_of_a_rise_its_dead_process_resolved_reaches_serve_as_a_fall(
    tmp_path: Path, reescalate: bool
) -> None:
    # The process that resolved a temperature's "up" alert (read 19) died before it posted the resolution,
    # so serve held it firing to its endsAt; the next one listed it at its start and took a "down" fault
    # raised within that hold for the same activity: posted on as "up", serve went on calling the cold GPU
    # a thermal fault (it reads a temperature's side from ``deviation``).
    engine = _at_serve(tmp_path, AFTER, reescalate=reescalate, restart_at=20, lost=True)
    assert _held(engine) == (2, ["down"]), "the fall is a new alert, under its own side"
    firing = [classify(r.labels) for r in engine.store.firing_alerts()]
    assert firing == [FaultKind.UNKNOWN], "serve holds the GPU as cold, not as a thermal fault"


@pytest.mark.parametrize("reescalate", [True, False], ids=["reescalate", "no-reescalate"])
@pytest.mark.parametrize("restart_at", [None, 20], ids=["straight", "restarted"])
def test_a_fall_after_the_rise_resolved_is_a_second_alert_with_or_without_a_restart(
    tmp_path: Path, restart_at: int | None, reescalate: bool
) -> None:
    engine = _at_serve(tmp_path, AFTER, reescalate=reescalate, restart_at=restart_at)
    assert _held(engine) == (2, ["down"])


@pytest.mark.parametrize("reescalate", [True, False], ids=["reescalate", "no-reescalate"])
@pytest.mark.parametrize(
    "restart_at",
    [None, 12, 16, 18, 24],
    ids=["straight", "mid-rise", "at-the-flip", "two-reads-into-the-fall", "late-in-the-fall"],
)
def test_a_rise_whose_reads_turn_to_a_fall_stays_the_one_rise_at_serve_across_a_restart(
    tmp_path: Path, restart_at: int | None, reescalate: bool
) -> None:
    # The warm-up recalled the rise its history left firing; raised again at the first reads, which fell
    # below the band that followed the spike, it took their side: a "down" alert, which the forwarder posts
    # as another activity than the rise serve holds (fix/rev_forwarder). With re-escalation off the warm-up
    # recalled nothing at all: the fall, raised as a first alert, was a second one at serve all the same
    # (restarted two reads into the fall: 2 alerts stored, the "down" one firing). Without the restart the
    # rise goes on as one alert until it resolves.
    engine = _at_serve(tmp_path, FLIP, reescalate=reescalate, restart_at=restart_at)
    assert _held(engine) == (1, ["up"]), "serve holds the rise, its side as it was raised"


@pytest.mark.parametrize(
    "how",
    [{"snapshot": "taken"}, {"snapshot": "refused"}, {"unlisted": True}],
    ids=["snapshot-taken-up", "snapshot-refused", "serve-lists-only-at-the-first-post"],
)
def test_without_re_escalation_a_flip_across_any_start_stays_the_one_rise_at_serve(
    tmp_path: Path, how: dict[str, Any]
) -> None:
    # A snapshot taken up fires its alerts on as they were; one refused replays the hour as a start without
    # one, which must recall the rise all the same; and where serve cannot list at the start the recall
    # lasts the hold from now, its labels learnt at the listing before the first post.
    engine = _at_serve(tmp_path, FLIP, reescalate=False, restart_at=18, **how)
    assert _held(engine) == (1, ["up"])
