"""An alert judged only at ticks that read every query it rests on: thermal, multivariate, a user detector."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.detectors import Findings
from anomaly.series import View
from anomaly.service import AnomalyService
from anomaly.thermal import ThermalDetector
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig, AnomalyThresholdConfig
from gpuwarden.model import AlertStatus
from tests.anomaly.due_runs import EVERY, GPUS, POWER, STEP, TEMP, UP, UTIL, Run


def test_a_thermal_alert_is_judged_only_at_ticks_that_read_both_temperature_and_power(prometheus):
    # Temperature read at every tick, power every sixth. The thermal detector scores a GPU only with both;
    # at the ticks between two power steps it finds nothing, and must hold its alert and pending count
    # rather than count those ticks quiet (then it would never raise). A warm-up of 3 reads keeps it cheap.
    t0 = FakeClock().time()
    hot, cool = t0 + 120, t0 + 240
    hot_gpu = GPUS[9]["UUID"]
    rng = np.random.default_rng(7)

    def temps(t: float) -> list[tuple[dict[str, str], float]]:
        vals = 60 + rng.normal(0, 0.3, len(GPUS))
        if hot <= t < cool:
            vals[9] = 85.0  # at the same power: its cooling failed
        return list(zip(GPUS, vals.tolist(), strict=True))

    prometheus.answers[TEMP] = temps
    prometheus.answers[POWER] = lambda t: [(g, 300.0 + float(i)) for i, g in enumerate(GPUS)]
    with Run(
        prometheus,
        [TEMP, POWER],
        {TEMP: EVERY},
        instances=[ThermalDetector(warmup=3)],
        thresholds=AnomalyThresholdConfig(resolve_after=4),
    ) as run:
        run.ticks(390)
    pending = run.service.cfg.pending_ticks
    assert [e[:3] for e in run.events] == [
        ("GpuwardenAnomaly", hot_gpu, AlertStatus.FIRING),
        ("GpuwardenAnomaly", hot_gpu, AlertStatus.RESOLVED),
    ]
    assert run.events[0][3] == hot + (pending - 1) * STEP  # its third power step from the first hot one
    assert run.events[1][3] > cool


@pytest.mark.parametrize(
    ("not_due", "held"),
    [
        pytest.param({POWER}, True, id="one-column-not-due"),
        pytest.param({TEMP, POWER}, True, id="no-column-due"),
        pytest.param({UTIL}, False, id="the-fleet-load-not-due"),
        pytest.param({UP}, False, id="another-query-not-due"),
        pytest.param(set(), False, id="all-due"),
    ],
)
def test_a_multivariate_alert_is_held_when_any_of_its_columns_was_not_due(not_due, held):
    # The hold is decided here directly: a multivariate alert through the service needs a forest fitted on
    # more history than a cheap test reads (its calibration puts a clear outlier of 72 rows below score 1).
    # A load-adjusted fleet metric's alert waits for its load as well (its detector's side: test_fleet).
    config = AnomalyConfig(
        queries=[AnomalyQueryConfig(name=q, expr=q) for q in (TEMP, POWER, UP, UTIL)],
        detectors=["multivariate", "signatures", "fleet"],
        multivariate_queries=[TEMP, POWER],
        fleet_queries=[POWER],
        fleet_load_query=UTIL,
        fleet_load_adjusted=[POWER],
    )
    service = AnomalyService(config, [], FakeClock())
    view = View(time=0.0, not_due=frozenset(not_due))
    decide = service._not_due_alerts(view)
    assert decide("multivariate", "gpu_vector") is held
    assert decide("signatures", UP) is (UP in not_due)
    assert decide("fleet", POWER) is bool(not_due & {POWER, UTIL})


class PairDetector:
    """A detector of the user's own, not one of the built-ins: its alerts (on temperature) are judged by
    temperature and power together."""

    name = "pair"

    def fit(self, view: View) -> None:
        pass

    def detect(self, view: View) -> list[Findings]:
        return []

    def forget(self, ids: np.ndarray) -> None:
        pass

    def judged_by(self, query: str) -> tuple[str, ...]:
        return (TEMP, POWER)


@pytest.mark.parametrize(
    ("not_due", "held"),
    [
        pytest.param({POWER}, True, id="its-other-query-not-due"),
        pytest.param({TEMP}, True, id="its-own-query-not-due"),
        pytest.param({UP}, False, id="another-query-not-due"),
    ],
)
def test_a_detector_that_names_the_queries_its_alerts_are_judged_by_is_held_by_any_of_them(not_due, held):
    # Before, the service found judged_by only on four classes it listed: a new detector with judged_by
    # had its alerts judged by their own query alone, and resolved at a tick that read temperature only.
    config = AnomalyConfig(queries=[AnomalyQueryConfig(name=q, expr=q) for q in (TEMP, POWER, UP)])
    service = AnomalyService(config, [], FakeClock(), [PairDetector()])
    decide = service._not_due_alerts(View(time=0.0, not_due=frozenset(not_due)))
    assert decide("pair", TEMP) is held
