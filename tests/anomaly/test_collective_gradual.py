"""Seed 1301's two late sympathetic power alerts (``eval_gpu_faults.py --seed 1301``, benchmarks/README.md) in
small: a job slowed by a straggler on node-08 GPU 3 (80,888 s), every rank of it from about 630 W to about
400 W at once, whose ranks' scores then climbed past half-way at their own paces (the volatility term), not
at one tick. The three reads that raised node-08 GPUs 0 and 1's alerts (81,150-81,210 s, ``pending_ticks``),
as traced."""

from __future__ import annotations

from anomaly.collective import CollectiveMoves
from anomaly.detectors import Findings
from tests.anomaly.collective_rows import POWER, alerting, banded, job_ranks

RANKS = job_ranks("pretrain-02")
HEALTHY_NARROW = [12, 13, 14]  # node-08 GPUs 0-2, healthy, their bands narrower than the job's others'
# (value, score, lower, upper) per rank at 81,150, 81,180 and 81,210 s; row 15, node-08 GPU 3, the straggler.
READS = [
    (
        [
            402.9,
            396.0,
            402.0,
            400.2,
            413.6,
            414.2,
            387.4,
            413.1,
            408.4,
            419.2,
            390.5,
            402.6,
            403.3,
            402.2,
            391.5,
            343.7,
        ],
        [
            0.361,
            0.357,
            0.353,
            0.353,
            0.457,
            0.464,
            0.47,
            0.661,
            0.307,
            0.29,
            0.293,
            0.299,
            1.01,
            1.011,
            1.073,
            1.8,
        ],
        [
            -1439,
            -1456,
            -1401,
            -1273,
            -574,
            -563,
            -568,
            -519,
            -1264,
            -1327,
            -1287,
            -1241,
            -276,
            -318,
            -340,
            -162,
        ],
        [2573, 2591, 2535, 2407, 1760, 1751, 1753, 1715, 2393, 2453, 2412, 2366, 1478, 1519, 1544, 1379],
    ),
    (
        [
            388.1,
            412.7,
            398.9,
            393.8,
            425.8,
            398.2,
            407.8,
            404.4,
            407.9,
            399.0,
            417.3,
            395.1,
            402.1,
            409.9,
            401.4,
            342.4,
        ],
        [
            0.374,
            0.365,
            0.363,
            0.366,
            0.469,
            0.485,
            0.486,
            0.686,
            0.315,
            0.3,
            0.298,
            0.308,
            1.046,
            1.041,
            1.108,
            1.872,
        ],
        [
            -1444,
            -1463,
            -1407,
            -1278,
            -581,
            -570,
            -577,
            -531,
            -1266,
            -1329,
            -1290,
            -1244,
            -291,
            -334,
            -356,
            -175,
        ],
        [2575, 2594, 2537, 2409, 1764, 1754, 1758, 1724, 2393, 2451, 2412, 2366, 1489, 1531, 1556, 1389],
    ),
    (
        [
            421.6,
            403.6,
            408.9,
            405.9,
            389.0,
            404.0,
            414.6,
            410.2,
            408.0,
            404.3,
            407.2,
            402.6,
            395.5,
            384.8,
            392.4,
            352.4,
        ],
        [
            0.376,
            0.374,
            0.369,
            0.373,
            0.492,
            0.501,
            0.498,
            0.704,
            0.321,
            0.307,
            0.304,
            0.314,
            1.079,
            1.083,
            1.142,
            1.92,
        ],
        [
            -1451,
            -1467,
            -1412,
            -1284,
            -587,
            -578,
            -584,
            -544,
            -1269,
            -1332,
            -1292,
            -1247,
            -306,
            -350,
            -372,
            -188,
        ],
        [2578, 2596, 2539, 2411, 1767, 1759, 1762, 1732, 2392, 2451, 2411, 2365, 1500, 1543, 1569, 1400],
    ),
]


def _read(values: list[float], scores: list[float], lower: list[float], upper: list[float]) -> Findings:
    """One of ``READS``: the job's 16 ranks' power, scores and bands."""
    return banded(POWER, RANKS, scores, values, lower, upper)


def test_healthy_ranks_reading_their_slowed_jobs_value_do_not_alert_before_half_the_job_is_half_way_out():
    moves = CollectiveMoves()
    raised = [alerting(moves, _read(*read)) for read in READS]
    assert all(not (set(HEALTHY_NARROW) & rows) for rows in raised)


def test_a_nodes_ranks_far_below_their_jobs_value_alert_while_the_rest_of_the_job_sits_a_quarter_out():
    """The trade-off a fix must keep: node-08's four ranks at 150 W (their own node's fault) while the job's
    other twelve read 400 W, a quarter to half-way out on the same side, are not the job's move."""
    moves = CollectiveMoves()
    for job_values, job_scores, lower, upper in READS:
        values = [*job_values[:12], 150.0, 150.0, 150.0, 150.0]
        scores = [*job_scores[:12], 1.3, 1.3, 1.3, 1.9]
        assert alerting(moves, _read(values, scores, lower, upper)) == {12, 13, 14, 15}
