"""The anomaly service tick by tick: what raises an alert and what resolves it (pending ticks, lasting spikes,
lost GPUs, XIDs, whole jobs changing at once, fleet outliers), scores and bands written back, broken sources
and detectors, source outages that hide alerts, and the side of its band an alert says."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from anomaly.detectors import Findings
from anomaly.series import View
from anomaly.service import AnomalyService, builtin_registry
from anomaly.sources import CollectorSource
from anomaly.writeback import SCORE_CAP
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyThresholdConfig
from gpuwarden.errors import ConfigError
from gpuwarden.model import AlertSource, AlertStatus, RecommendedAction
from tests.anomaly.fakes import TableCollector
from tests.anomaly.service_ticks import GPUS, TEMP, HistorySource, setup, temps, tick, warmed


def test_a_one_tick_blip_raises_nothing_because_learned_detectors_need_pending_ticks():
    rng = np.random.default_rng(5)
    # Without the volatility term, whose fast error stays high for a few ticks after any spike.
    clock, col, service = setup(thresholds=AnomalyThresholdConfig(volatility_k=0))
    for _ in range(60):
        col.set(TEMP, temps(rng))
        tick(clock, service)
    col.set(TEMP, temps(rng, spike=3))
    raised = tick(clock, service).raised
    for _ in range(5):
        col.set(TEMP, temps(rng))
        raised += tick(clock, service).raised
    assert raised == []


def test_a_lasting_temperature_spike_raises_one_alert_with_labels_score_and_action_then_resolves():
    rng = np.random.default_rng(0)
    clock, col, service = warmed(rng, 60)
    raised = []
    for _ in range(service.cfg.pending_ticks):
        assert not [a for a in raised if a.labels["model"] == "adaptive"]
        col.set(TEMP, temps(rng, spike=3))
        raised += tick(clock, service).raised
    adaptive = [a for a in raised if a.labels["model"] == "adaptive"]
    assert len(adaptive) == 1
    alert = adaptive[0]
    assert alert.labels["UUID"] == "GPU-3"
    assert alert.labels["for"] == TEMP
    assert alert.labels["alertname"] == "GpuwardenAnomaly"
    assert alert.source is AlertSource.ANOMALY
    assert alert.score is not None and alert.score > 1
    # The evidence window: the series' last samples, oldest first, ending with the anomalous ones.
    assert len(alert.evidence) == 10
    assert [e.value for e in alert.evidence[-3:]] == [95, 95, 95]
    assert abs(alert.evidence[0].value - 60) < 3
    assert alert.evidence[0].at < alert.evidence[-1].at
    assert alert.recommended_action is RecommendedAction.INVESTIGATE
    assert float(alert.annotations["yhat_upper"]) < 95
    resolved = []
    for _ in range(100):
        col.set(TEMP, temps(rng))
        r = tick(clock, service)
        assert not [a for a in r.raised if a.labels["model"] == "adaptive"]
        resolved.extend(r.resolved)
    assert [a.fingerprint for a in resolved if a.labels["model"] == "adaptive"] == [alert.fingerprint]
    assert resolved[0].status is AlertStatus.RESOLVED


def test_scores_and_bands_are_written_back_in_vmanomaly_shape():
    rng = np.random.default_rng(1)
    *_, service = warmed(rng, 40)
    registry = CollectorRegistry()
    registry.register(service.collector)
    labels = {**GPUS[0], "for": TEMP, "model": "adaptive"}
    score = registry.get_sample_value("gpuwarden_anomaly_score", labels)
    lower = registry.get_sample_value("gpuwarden_anomaly_yhat_lower", labels)
    upper = registry.get_sample_value("gpuwarden_anomaly_yhat_upper", labels)
    yhat = registry.get_sample_value("gpuwarden_anomaly_yhat", labels)
    assert score is not None and 0 <= score < 1
    assert lower < yhat < upper
    assert abs(yhat - 60) < 2
    assert registry.get_sample_value("gpuwarden_anomaly_source_up", {"source": "in-process"}) == 1
    assert registry.get_sample_value("gpuwarden_anomaly_series") == len(GPUS)


def test_a_broken_source_is_reported_and_raises_a_stale_alert_after_stale_after_seconds():
    rng = np.random.default_rng(2)
    clock, col, service = setup(stale_after_seconds=120)
    for _ in range(5):
        col.set(TEMP, temps(rng))
        tick(clock, service)
    col.fail = True
    raised = []
    for _ in range(3):
        raised += tick(clock, service).raised
    assert raised == []
    registry = CollectorRegistry()
    registry.register(service.collector)
    assert registry.get_sample_value("gpuwarden_anomaly_source_up", {"source": "in-process"}) == 0
    assert registry.get_sample_value("gpuwarden_anomaly_source_errors_total", {"source": "in-process"}) == 3
    raised = tick(clock, service).raised + tick(clock, service).raised
    assert [a.labels["alertname"] for a in raised] == ["GpuwardenSourceStale"]
    col.fail = False
    col.set(TEMP, temps(rng))
    tick(clock, service)
    assert all(a.labels["alertname"] != "GpuwardenSourceStale" for a in tick(clock, service).raised)


class Broken:
    name = "broken"

    def fit(self, view: View) -> None:
        raise RuntimeError("fit broke")

    def detect(self, view: View) -> list[Findings]:
        raise RuntimeError("detect broke")

    def forget(self, ids: np.ndarray) -> None:
        pass


def test_a_failing_detector_is_counted_and_the_others_still_run():
    rng = np.random.default_rng(3)
    clock = FakeClock()
    col = TableCollector()
    cfg = AnomalyConfig(adaptive_metrics=[TEMP])
    detectors = [Broken(), *builtin_registry(cfg).create(["adaptive"])]
    service = AnomalyService(cfg, [CollectorSource([col], clock)], clock, detectors=detectors)
    col.set(TEMP, temps(rng))
    result = tick(clock, service)
    service.fit()
    assert service.detector_errors == {"broken": 2}
    assert any(f.detector == "adaptive" for f in result.findings)


def test_counter_resets_nan_gaps_and_gpus_coming_and_going_raise_nothing_but_the_absence_of_gpus():
    rng = np.random.default_rng(4)
    clock, col, service = setup(forget_after_seconds=300)
    energy = 0.0
    raised = []
    for t in range(200):
        energy = 0.0 if t == 100 else energy + 3000 + rng.normal(0, 30)
        present = GPUS if not 120 <= t < 150 else GPUS[:4]
        vals = 60 + rng.normal(0, 0.5, len(present))
        if 60 <= t < 70:
            vals[:] = math.nan
        col.set(TEMP, list(zip(present, vals.tolist(), strict=True)))
        col.set("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", [(GPUS[0], energy)], kind="counter")
        new = tick(clock, service).raised
        raised += [a for a in new if a.labels["alertname"] != "GpuwardenSourceStale"]
    # The only alerts: the four GPUs that stopped reporting for 15 minutes (more than absent_after).
    assert sorted((a.labels["alertname"], a.labels["gpu"]) for a in raised) == [
        ("GpuExporterStale", str(i)) for i in range(4, 8)
    ]


def test_an_xid_79_through_the_service_recommends_a_node_restart():
    clock, col, service = setup()
    lab = {"UUID": "GPU-0", "xid": "79", "Hostname": "n1"}
    col.set("gpuwarden_xid_errors_total", [(lab, 0.0)], kind="counter")
    tick(clock, service)
    col.set("gpuwarden_xid_errors_total", [(lab, 1.0)], kind="counter")
    raised = tick(clock, service).raised
    assert [(a.labels["alertname"], a.recommended_action) for a in raised] == [
        ("GpuXidError", RecommendedAction.RESTART_NODE)
    ]


def test_a_new_gpu_reusing_a_forgotten_series_id_does_not_inherit_its_counter_state():
    clock, col, service = setup(forget_after_seconds=300, detectors=["signatures"])
    dbe = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
    col.set(dbe, [({**GPUS[0], "pod": "job1"}, 10.0)], kind="counter")  # 10 DBEs from long ago
    raised = [a for _ in range(5) for a in tick(clock, service).raised]
    col.set(dbe, [], kind="counter")  # the job ends; its series is forgotten
    raised += [a for _ in range(15) for a in tick(clock, service).raised]
    # Another GPU with 3 old DBEs gets the freed id: nothing new happened on it.
    col.set(dbe, [({**GPUS[1], "Hostname": "n2", "pod": "job2"}, 3.0)], kind="counter")
    raised += [a for _ in range(3) for a in tick(clock, service).raised]
    assert [a.labels["alertname"] for a in raised if a.labels["alertname"] != "GpuwardenSourceStale"] == []


def test_an_unknown_or_duplicate_detector_name_is_a_config_error():
    registry = builtin_registry(AnomalyConfig())
    with pytest.raises(ConfigError, match="unknown detector"):
        registry.create(["nope"])
    with pytest.raises(ConfigError, match="twice"):
        registry.register("adaptive", lambda: registry.create(["adaptive"])[0])


def test_a_whole_job_changing_at_once_is_a_workload_event_not_a_gpu_alert():
    rng = np.random.default_rng(6)
    clock, col, service = setup()
    job = [{**g, "slurm_job": "77"} for g in GPUS]

    def job_temps(hot):
        vals = 60 + rng.normal(0, 0.5, len(job))
        vals[hot] = 90
        return list(zip(job, vals.tolist(), strict=True))

    for _ in range(60):
        col.set(TEMP, job_temps([]))
        tick(clock, service)
    raised = []
    for _ in range(4):
        col.set(TEMP, job_temps([0, 1, 2, 3, 4]))
        raised += tick(clock, service).raised
    assert [a for a in raised if a.labels["model"] == "adaptive"] == []
    assert service.collective_suppressed > 0
    for _ in range(40):
        col.set(TEMP, job_temps([]))
        tick(clock, service)
    raised = []
    for _ in range(4):
        col.set(TEMP, job_temps([6]))
        raised += tick(clock, service).raised
    assert [a.labels["gpu"] for a in raised if a.labels["model"] == "adaptive"] == ["6"]


def test_a_whole_job_moved_is_a_workload_event_while_fewer_than_three_of_its_gpus_score_over_one():
    """Half of a job's GPUs half-way or more out of their band is the job changing, however many of them are
    past the band itself: the check ran only when three were, so two GPUs over 1 beside two at 0.5-0.9
    alerted, as the waiting ranks of a job slowed by a straggler did once their bands had widened."""
    rng = np.random.default_rng(6)
    clock, col, service = setup()
    job = [{**g, "slurm_job": "77"} for g in GPUS]
    shift = np.array([30.0, 30.0, 4.5, 4.5, 0.0, 0.0, 0.0, 0.0])  # the band: 5 C (its floor)
    for _ in range(60):
        col.set(TEMP, list(zip(job, (60 + rng.normal(0, 0.5, len(job))).tolist(), strict=True)))
        tick(clock, service)
    raised, moved = [], []
    for _ in range(4):
        col.set(TEMP, list(zip(job, (60 + shift + rng.normal(0, 0.5, len(job))).tolist(), strict=True)))
        result = tick(clock, service)
        raised += result.raised
        [found] = [f for f in result.findings if f.detector == "adaptive"]
        moved.append(((found.score > 1.0).sum(), ((found.score > 0.5) & (found.score <= 1.0)).sum()))
    assert moved == [(2, 2)] * 4
    assert raised == [] and service.collective_suppressed > 0


def test_a_gpu_drifting_in_and_out_of_its_peers_band_is_one_fleet_alert_that_stays_open():
    power = "DCGM_FI_DEV_POWER_USAGE"
    gpus = [{**g, "slurm_job": "7"} for g in GPUS]
    rng = np.random.default_rng(3)
    clock, col, service = setup(detectors=["fleet"], fleet_queries=[power], adaptive_metrics=[])
    raised = []
    # Out for 10 ticks, back with its peers for 40 (longer than thresholds.resolve_after), three times.
    for phase in [0.0] * 10 + ([200.0] * 10 + [0.0] * 40) * 3:
        vals = 500 + rng.normal(0, 3, len(gpus))
        vals[5] -= phase
        col.set(power, list(zip(gpus, vals.tolist(), strict=True)))
        raised += tick(clock, service).raised
    assert [a.labels["gpu"] for a in raised] == ["5"]
    assert any(a.labels.get("gpu") == "5" for a in (s.alert for s in service.firing.values()))


def test_a_gpu_lost_again_minutes_after_its_repair_raises_again():
    # Deterministic signatures resolve after a few quiet ticks (learned detectors' alerts stay 12 minutes):
    # a second loss six minutes after the reset must page again, not hide in the first alert.
    rng = np.random.default_rng(2)
    clock, col, service = setup()

    def minute() -> list:
        col.set(TEMP, temps(rng))
        return tick(clock, service).raised + tick(clock, service).raised  # a minute

    up = [(g, 1.0) for g in GPUS]
    down = [(g, 0.0 if g["gpu"] == "5" else 1.0) for g in GPUS]
    col.set("gpuwarden_gpu_up", up)
    for _ in range(30):
        minute()
    raised: list = []
    for phase, minutes in ((down, 10), (up, 6), (down, 10)):
        col.set("gpuwarden_gpu_up", phase)
        for _ in range(minutes):
            raised += [a for a in minute() if a.labels.get("alertname") == "GpuLost"]
    assert [a.labels["gpu"] for a in raised] == ["5", "5"]


def test_a_source_outage_neither_resolves_nor_raises_again_the_alerts_it_hides():
    clock, col, service = setup(detectors=["signatures"], stale_after_seconds=120)
    col.set("DCGM_FI_DEV_ROW_REMAP_PENDING", [(GPUS[0], 1.0)])
    events = [(a.labels["alertname"], a.status) for a in tick(clock, service).raised]
    col.fail = True
    for _ in range(10):  # past immediate_resolve_after (4) quiet ticks
        result = tick(clock, service)
        events += [(a.labels["alertname"], a.status) for a in (*result.raised, *result.resolved)]
    col.fail = False
    for _ in range(6):
        result = tick(clock, service)
        events += [(a.labels["alertname"], a.status) for a in (*result.raised, *result.resolved)]
    assert events == [
        ("GpuRowRemapPending", AlertStatus.FIRING),
        ("GpuwardenSourceStale", AlertStatus.FIRING),
        ("GpuwardenSourceStale", AlertStatus.RESOLVED),
    ]


def test_an_alert_held_through_an_outage_resolves_after_its_quiet_ticks_once_the_source_is_back():
    clock, col, service = setup(detectors=["signatures"], stale_after_seconds=1e6)
    col.set("DCGM_FI_DEV_ROW_REMAP_PENDING", [(GPUS[0], 1.0)])
    assert tick(clock, service).raised
    col.set("DCGM_FI_DEV_ROW_REMAP_PENDING", [(GPUS[0], 0.0)])
    col.fail = True
    assert not any(tick(clock, service).resolved for _ in range(8))
    col.fail = False
    resolved = [len(tick(clock, service).resolved) for _ in range(5)]
    assert resolved == [0, 0, 0, 1, 0]  # immediate_resolve_after quiet ticks, counted from the recovery


def test_a_first_counter_increase_on_a_flat_series_exports_a_capped_score_but_still_alerts():
    dbe = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
    clock, col, service = setup(adaptive_metrics=["*"], detectors=["adaptive"])
    # Past the error scale's first 200 samples: there the first increases of a flat series teach it in full
    # (``anomaly.sparsebands``), and the third is raised with a score of 2.6.
    for _ in range(250):
        col.set(dbe, [(GPUS[0], 0.0)], kind="counter")
        tick(clock, service)
    raw, raised = [], []
    for n in range(1, service.cfg.pending_ticks + 1):
        col.set(dbe, [(GPUS[0], float(n))], kind="counter")
        result = tick(clock, service)
        raw += [float(f.score.max()) for f in result.findings if f.detector == "adaptive"]
        raised += result.raised
    assert max(raw) > 1e6  # the detector's own score: a band near zero wide, unchanged
    (alert,) = raised  # the decision is taken on it: the increases still alert
    assert alert.score == SCORE_CAP
    registry = CollectorRegistry()
    registry.register(service.collector)
    exported = [s.value for m in registry.collect() for s in m.samples if s.name == "gpuwarden_anomaly_score"]
    assert exported and max(exported) == SCORE_CAP


def test_a_fleet_query_without_workload_labels_is_warned_once_and_counted_on_metrics(caplog):
    # GPUS carry no slurm_job or pod label: the fleet detector has no peer group to compare them in.
    clock, col, service = setup()
    with caplog.at_level("WARNING", logger="anomaly.fleet"):
        for _ in range(5):
            col.set(TEMP, temps(np.random.default_rng(0)))
            tick(clock, service)
    warned = [r.getMessage() for r in caplog.records if "fleet:" in r.getMessage()]
    assert (
        len(warned) == 1 and f"none of the 8 series of {TEMP} carries a slurm_job or pod label" in warned[0]
    )
    registry = CollectorRegistry()
    registry.register(service.collector)
    assert registry.get_sample_value("gpuwarden_anomaly_fleet_uncompared_series", {"query": TEMP}) == 8


@pytest.mark.parametrize(("value", "deviation"), [(95.0, "up"), (40.0, "down")], ids=["rose", "fell"])
def test_a_learned_alert_says_which_side_of_its_band_the_value_left(value, deviation):
    """Alerting roots a temperature alert "thermal" only when the temperature rose."""
    rng = np.random.default_rng(0)
    clock, col, service = setup(detectors=["adaptive"])
    for _ in range(60):
        col.set(TEMP, temps(rng))
        tick(clock, service)
    raised = []
    for _ in range(service.cfg.pending_ticks):
        rows = temps(rng)
        rows[3] = (rows[3][0], value)
        col.set(TEMP, rows)
        raised += tick(clock, service).raised
    assert [(a.labels["UUID"], a.labels["deviation"]) for a in raised] == [("GPU-3", deviation)]


def test_an_input_series_own_alertname_and_deviation_are_kept_beside_the_alerts_own():
    # A query over ALERTS, or a recording rule's labels: the input's alertname named the alert (routed as
    # KubeNodeNotReady) and its deviation stood for the side it raised on, which re-escalation reads.
    rng = np.random.default_rng(0)
    clock, col, service = setup(detectors=["adaptive"])
    own = {"alertname": "KubeNodeNotReady", "deviation": "sideways"}
    for k in range(60 + service.cfg.pending_ticks):
        rows = [({**labels, **own} if labels["gpu"] == "3" else labels, v) for labels, v in temps(rng)]
        if k >= 60:
            rows[3] = (rows[3][0], 95.0)
        col.set(TEMP, rows)
        raised = tick(clock, service).raised
    (alert,) = raised
    assert alert.labels["alertname"] == "GpuwardenAnomaly" and alert.labels["deviation"] == "up"
    assert alert.labels["exported_alertname"] == "KubeNodeNotReady"
    assert alert.labels["exported_deviation"] == "sideways"


@pytest.mark.parametrize(("sign", "deviation"), [(1.0, "up"), (-1.0, "down")], ids=["above", "below"])
def test_a_detector_without_bands_gives_the_side_by_its_sign(sign, deviation):
    class Peers:
        name = "peers"

        def fit(self, view):
            pass

        def forget(self, ids):
            pass

        def detect(self, view):
            step = view.latest[TEMP]
            n = len(step.labels)
            score = np.where(np.arange(n) == 3, 5.0, 0.0)
            return [Findings("peers", TEMP, step.labels, score, step.value, sign=np.full(n, sign))]

    rng = np.random.default_rng(0)
    clock = FakeClock()
    col = TableCollector()
    service = AnomalyService(AnomalyConfig(), [CollectorSource([col], clock)], clock, detectors=[Peers()])
    raised = []
    for _ in range(service.cfg.pending_ticks):
        col.set(TEMP, temps(rng))
        raised += tick(clock, service).raised
    assert [(a.labels["UUID"], a.labels["deviation"]) for a in raised] == [("GPU-3", deviation)]


class _SlowReadSource(HistorySource):
    """Stamps its success when the read ends, as ``PromQLSource`` does: after the tick began."""

    def __init__(self, clock, values):
        super().__init__(values)
        self.clock = clock

    def read(self, start, end):
        frames = super().read(start, end)
        self._health.succeeded(self.clock.time() + 0.2, len(GPUS))
        return frames


def test_a_source_read_well_during_the_tick_is_zero_stale_not_negatively_stale():
    clock = FakeClock()
    service = AnomalyService(AnomalyConfig(), [_SlowReadSource(clock, {TEMP: lambda t: [60.0] * 8})], clock)
    clock.advance(30)
    service.infer()
    registry = CollectorRegistry()
    registry.register(service.collector)
    labels = {"for": "source_staleness", "model": "source", "source": "history"}
    assert registry.get_sample_value("gpuwarden_anomaly_score", labels) == 0.0  # it read -0.0017 live
