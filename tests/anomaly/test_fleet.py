from __future__ import annotations

import numpy as np
import pytest

from anomaly.collectivetick import workload_groups
from anomaly.fleet import FleetDetector, peer_key, workload_of
from anomaly.series import CounterRates, SeriesIndex, build_view
from anomaly.sources import Frame

Q = "DCGM_FI_DEV_SM_CLOCK"


def labels(n: int, model: str = "H100") -> list[dict[str, str]]:
    return [{"UUID": f"GPU-{model}-{i}", "modelName": model, "slurm_job": "42"} for i in range(n)]


def run(det: FleetDetector, rows: list[np.ndarray], labs: list[dict[str, str]]) -> list[np.ndarray]:
    index, rates = SeriesIndex(), CounterRates()
    out = []
    for t, row in enumerate(rows):
        view = build_view([Frame(Q, labs, np.array([float(t)]), row.reshape(-1, 1))], index, rates, float(t))
        out.append(det.detect(view)[0].score)
    return out


def test_a_gpu_persistently_slower_than_its_peers_is_flagged():
    rng = np.random.default_rng(0)
    rows = [1980 + rng.normal(0, 10, 16) for _ in range(20)]
    for r in rows[5:]:
        r[3] = 1500
    scores = run(FleetDetector([Q]), rows, labels(16))
    assert scores[-1][3] > 1
    assert (np.delete(scores[-1], 3) < 1).all()


def test_a_gpu_apart_from_its_peers_says_whether_it_is_above_or_below_them():
    """Alerting roots a temperature "thermal" only when it rose: a GPU cooler than its peers is none."""
    rng = np.random.default_rng(0)
    index, rates = SeriesIndex(), CounterRates()
    det = FleetDetector([Q])
    for t in range(20):
        row = 1980 + rng.normal(0, 10, 16)
        row[3], row[5] = (1500, 2400) if t >= 5 else (row[3], row[5])
        view = build_view([Frame(Q, labels(16), np.array([float(t)]), row.reshape(-1, 1))], index, rates, t)
        findings = det.detect(view)[0]
    assert findings.sign is not None
    assert (findings.sign[3], findings.sign[5]) == (-1.0, 1.0)


def test_one_noisy_sample_is_not_enough():
    rng = np.random.default_rng(1)
    rows = [1980 + rng.normal(0, 10, 16) for _ in range(10)]
    rows[6][3] = 1700
    scores = run(FleetDetector([Q]), rows, labels(16))
    assert max(s[3] for s in scores) < 1


def test_peers_are_only_gpus_of_the_same_model():
    rng = np.random.default_rng(2)
    labs = labels(8, "H100") + labels(8, "A100")
    rows = [np.r_[1980 + rng.normal(0, 10, 8), 1410 + rng.normal(0, 10, 8)] for _ in range(10)]
    scores = run(FleetDetector([Q]), rows, labs)
    assert (scores[-1] < 1).all()


def test_groups_smaller_than_min_peers_are_not_scored():
    rows = [np.array([1000.0, 2000.0, 3000.0])] * 5
    scores = run(FleetDetector([Q], min_peers=4), rows, labels(3))
    assert (scores[-1] == 0).all()


def test_idle_gpus_are_not_compared_with_busy_ones():
    labs = labels(8)
    labs[3] = {"UUID": "GPU-idle", "modelName": "H100"}  # no job, no pod: runs nothing
    rows = [np.r_[np.full(3, 1980.0), [345.0], np.full(4, 1980.0)] for _ in range(10)]
    scores = run(FleetDetector([Q]), rows, labs)
    assert scores[-1][3] == 0


def test_inference_replicas_of_one_service_are_peers_and_other_services_are_not():
    a = peer_key({"modelName": "H100", "namespace": "inf", "pod": "llm-chat-0"}, ["modelName"])
    b = peer_key({"modelName": "H100", "namespace": "inf", "pod": "llm-chat-12"}, ["modelName"])
    c = peer_key({"modelName": "H100", "namespace": "inf", "pod": "llm-embed-3"}, ["modelName"])
    d = peer_key({"modelName": "H100", "namespace": "inf", "pod": "api-7d9f8b6c5d-x2x7q"}, ["modelName"])
    assert a == b != c
    assert d == ("H100", "inf/api")


# Each label shape the workload rule knows, and the workload it names (None: the GPU runs none).
WORKLOAD_SHAPES = [
    ({"UUID": "GPU-0", "slurm_job": "42"}, "42"),
    ({"UUID": "GPU-0", "namespace": "inf", "pod": "llm-chat-12"}, "inf/llm-chat"),  # StatefulSet
    ({"UUID": "GPU-0", "namespace": "inf", "pod": "api-7d9f8b6c5d-x2x7q"}, "inf/api"),  # Deployment
    ({"UUID": "GPU-0", "namespace": "inf", "pod": "node-agent-x2x7q"}, "inf/node-agent"),  # DaemonSet, Job
    ({"UUID": "GPU-0", "namespace": "inf", "pod": "notebook"}, "inf/notebook"),  # a bare pod
    ({"UUID": "GPU-0", "pod": "llm-chat-0"}, "/llm-chat"),
    ({"UUID": "GPU-0", "slurm_job": "42", "namespace": "inf", "pod": "llm-chat-0"}, "42"),
    ({"UUID": "GPU-0", "slurm_job": "", "namespace": "inf", "pod": "llm-chat-0"}, "inf/llm-chat"),
    ({"UUID": "GPU-0", "modelName": "H100"}, None),
    ({"UUID": "GPU-0", "slurm_job": "", "namespace": "inf", "pod": ""}, None),
]
SHAPE_IDS = [
    "slurm_job",
    "statefulset_pod",
    "deployment_pod",
    "daemonset_pod",
    "bare_pod",
    "pod_without_namespace",
    "slurm_job_and_pod",
    "empty_slurm_job_and_pod",
    "none",
    "empty_labels",
]


@pytest.mark.parametrize(("lab", "workload"), WORKLOAD_SHAPES, ids=SHAPE_IDS)
def test_the_collective_check_and_the_peer_groups_name_the_same_workload_of_each_label_shape(lab, workload):
    """``workload_groups`` (the collective check's rows by workload) names a GPU's workload as ``peer_key``
    does: a rule changed in one and not the other would hold one job's ranks in another's move."""
    index, group = workload_groups([lab, {"UUID": "GPU-1"}, lab])
    expected = None if workload is None else (workload,)
    assert workload_of(lab) == workload
    assert peer_key(lab, ()) == expected
    assert peer_key(lab, ("modelName",)) == (
        None if workload is None else (lab.get("modelName", ""), workload)
    )
    if workload is None:
        assert index == {}
        assert group.tolist() == [-1, -1, -1]
    else:
        assert index == {expected: 0}
        assert group.tolist() == [0, -1, 0]


def test_a_metric_floor_keeps_integer_temperatures_of_replicas_at_different_load_from_alerting():
    # Most replicas read the same integer temperature, so the peers' MAD collapses; one at its load peak.
    rows = [np.array([40.0, 41.0, 40.0, 40.0, 46.0, 44.0, 40.0, 40.0]) for _ in range(20)]
    plain = run(FleetDetector([Q]), rows, labels(8))
    assert plain[-1][4] > 1  # without a floor a 6-degree gap looks like a lemon GPU
    floored = run(FleetDetector([Q], min_deviation={"DCGM_FI_DEV_*": 10.0}), rows, labels(8))
    assert (floored[-1] < 1).all()
    hot = [r.copy() for r in rows]
    for r in hot:
        r[4] = 58.0  # 18 degrees above its peers is still flagged
    assert run(FleetDetector([Q], min_deviation={"DCGM_FI_DEV_*": 10.0}), hot, labels(8))[-1][4] > 1


def rises(scores: list[np.ndarray], row: int) -> int:
    """How many times row's score went from <=1 to >1."""
    above = [bool(s[row] > 1) for s in scores]
    return sum(1 for before, now in zip([False, *above], above, strict=False) if now and not before)


def hovering_rows(gaps: list[float]) -> list[np.ndarray]:
    """16 peers at 1980 MHz +- noise; GPU 3 sits ``gap`` MHz below them, one gap per tick."""
    rng = np.random.default_rng(7)
    rows = []
    for gap in gaps:
        row = 1980 + rng.normal(0, 10, 16)
        row[3] = 1980 - gap
        rows.append(row)
    return rows


def test_a_gpu_hovering_at_the_band_edge_enters_once_and_stays_in():
    # Spread ~ max(MAD sigma ~10, 2% of 1980 = 39.6): z of a 280 MHz gap ~7 (> k=6), of 160 MHz ~4 (< k,
    # > k_exit=3). Without hysteresis each return above k is a new crossing.
    gaps = [0.0] * 5 + ([280.0] * 10 + [160.0] * 10) * 4
    scores = run(FleetDetector([Q]), hovering_rows(gaps), labels(16))
    assert rises(scores, 3) == 1
    assert scores[-1][3] > 1


def test_a_gpu_that_returns_to_its_peers_leaves_the_alert_state():
    gaps = [0.0] * 5 + [280.0] * 15 + [0.0] * 15
    scores = run(FleetDetector([Q]), hovering_rows(gaps), labels(16))
    assert rises(scores, 3) == 1
    assert scores[-1][3] < 1


def test_without_hysteresis_the_same_hovering_gpu_would_cross_several_times():
    gaps = [0.0] * 5 + ([280.0] * 10 + [160.0] * 10) * 4
    scores = run(FleetDetector([Q], k_exit=6.0), hovering_rows(gaps), labels(16))
    assert rises(scores, 3) > 1


def test_fleet_findings_ask_the_service_to_hold_their_alerts_open():
    index, rates = SeriesIndex(), CounterRates()
    row = np.full((16, 1), 1980.0)
    view = build_view([Frame(Q, labels(16), np.array([0.0]), row)], index, rates, 0.0)
    assert FleetDetector([Q], hold_ticks=240).detect(view)[0].resolve_after == 240
    assert FleetDetector([Q], hold_ticks=240).detect(view)[0].resolve_after == 240


def test_a_one_tick_touch_of_k_is_not_latched_into_an_alert():
    # One 900 MHz sample lifts the smoothed z just above k for one tick; the gap then sits at z ~4 (between
    # k_exit and k): a touch shorter than enter_ticks must not be latched and held as an alert.
    gaps = [0.0] * 5 + [900.0] + [160.0] * 20
    scores = run(FleetDetector([Q]), hovering_rows(gaps), labels(16))
    assert sum(1 for s in scores if s[3] > 1) < 3


P = "DCGM_FI_DEV_POWER_USAGE"
U = "DCGM_FI_DEV_GPU_UTIL"


def replicas(n: int) -> list[dict[str, str]]:
    return [
        {"UUID": f"GPU-{i}", "modelName": "H100", "namespace": "inf", "pod": f"llm-embed-{i}"}
        for i in range(n)
    ]


def run_with_load(
    det: FleetDetector, util_rows: list[np.ndarray], power_rows: list[np.ndarray], load_every: int = 1
) -> list[np.ndarray]:
    """Scores of each tick (none where the tick scored nothing); ``load_every``: utilisation read at every
    n-th tick only (its step longer than the tick: ``View.not_due`` at the others), power at every tick."""
    index, rates, labs = SeriesIndex(), CounterRates(), replicas(util_rows[0].size)
    out = []
    for t, (u, p) in enumerate(zip(util_rows, power_rows, strict=True)):
        stamp = np.array([float(t)])
        frames = [Frame(P, labs, stamp, p.reshape(-1, 1))]
        if t % load_every == 0:
            frames.append(Frame(U, labs, stamp, u.reshape(-1, 1)))
        view = build_view(frames, index, rates, float(t))
        view.not_due = frozenset() if t % load_every == 0 else frozenset({U})
        out.extend(f.score for f in det.detect(view))
    return out


def replica_load(ticks: int, n: int = 8, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Replicas each on its own traffic wave (random phase), power following utilisation."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, n)
    util = [
        35 * (1 + 0.3 * np.sin(2 * np.pi * t / 120 + phase)) + rng.normal(0, 1.5, n) for t in range(ticks)
    ]
    power = [70 + 4.0 * u + rng.normal(0, 4, n) for u in util]
    return util, power


def test_power_of_replicas_at_different_load_is_compared_net_of_load():
    util, power = replica_load(600)
    for u, p in zip(util[400:], power[400:], strict=True):
        u[2], p[2] = 60.0, 70 + 4.0 * 60.0  # one replica at twice the others' traffic: healthy, just busy
    plain = run_with_load(FleetDetector([P]), util, power)
    assert max(s[2] for s in plain[400:]) > 1  # compared as is, its power looks like a lemon GPU
    adjusted = run_with_load(FleetDetector([P], load_query=U, load_adjusted=[P]), util, power)
    assert max(s.max() for s in adjusted[200:]) < 1


def test_a_busy_replica_is_not_compared_without_its_load_at_ticks_that_did_not_read_the_load():
    # Utilisation on a step six times the tick's (step 30 s, a tick every 5 s): before, the five ticks in
    # six that read power alone compared it as is, and the busy replica's power scored 3, a lemon GPU's.
    util, power = replica_load(900)
    for u, p in zip(util[450:], power[450:], strict=True):
        u[2], p[2] = 75.0, 70 + 4.0 * 75.0  # twice the others' traffic: healthy, just busy
    adjusted = run_with_load(FleetDetector([P], load_query=U, load_adjusted=[P]), util, power, load_every=6)
    assert len(adjusted) == 150  # scored at the ticks that read both
    assert max(s.max() for s in adjusted[50:]) < 1


def test_a_replica_drawing_less_power_at_the_same_load_still_stands_out_net_of_load():
    util, power = replica_load(600, seed=1)
    for p in power[400:]:
        p[5] -= 60.0  # throttled: 60 W below what its load draws
    adjusted = run_with_load(FleetDetector([P], load_query=U, load_adjusted=[P]), util, power)
    assert adjusted[-1][5] > 1
    assert max(np.delete(s, 5).max() for s in adjusted[200:]) < 1


def test_ranks_at_one_load_learn_no_slope_so_a_hung_rank_is_compared_as_is():
    # A stalled job: every rank idle at 0 % and 70 W, one hung rank at 100 % and 210 W.
    rng = np.random.default_rng(2)
    util = [np.r_[rng.normal(97, 0.5, 8)] for _ in range(200)] + [
        np.r_[np.zeros(7), [100.0]] for _ in range(20)
    ]
    power = [np.full(8, 380.0) + rng.normal(0, 3, 8) for _ in range(200)] + [
        np.r_[np.full(7, 70.0) + rng.normal(0, 0.5, 7), [210.0]] for _ in range(20)
    ]
    adjusted = run_with_load(FleetDetector([P], load_query=U, load_adjusted=[P]), util, power)
    assert adjusted[205][7] > 1


def test_a_fleet_query_whose_series_carry_no_workload_label_is_reported_once_and_counted(caplog):
    labs = [{"UUID": f"GPU-{i}", "modelName": "H100", "Hostname": "n1"} for i in range(8)]  # no job, no pod
    det = FleetDetector([Q])
    with caplog.at_level("WARNING", logger="anomaly.fleet"):
        run(det, [np.full(8, 1980.0)] * 5, labs)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1  # once, not once per tick
    assert f"fleet: none of the 8 series of {Q} carries a slurm_job or pod label" in warnings[0]
    assert "compares none of its GPUs with their peers" in warnings[0]
    assert det.uncompared == {Q: 8}


def test_a_fleet_query_whose_workloads_are_all_smaller_than_min_peers_is_reported(caplog):
    det = FleetDetector([Q], min_peers=4)
    with caplog.at_level("WARNING", logger="anomaly.fleet"):
        run(det, [np.full(3, 1980.0)] * 2, labels(3))
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"no workload of it has 4 GPUs with the same modelName ({Q})" in warning
    assert det.uncompared == {Q: 3}


def test_a_fleet_query_with_peers_warns_nothing_and_counts_only_the_gpus_it_cannot_compare(caplog):
    labs = labels(8)
    labs[3] = {"UUID": "GPU-idle", "modelName": "H100"}
    det = FleetDetector([Q])
    with caplog.at_level("WARNING", logger="anomaly.fleet"):
        run(det, [np.full(8, 1980.0)] * 3, labs)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert det.uncompared == {Q: 1}
