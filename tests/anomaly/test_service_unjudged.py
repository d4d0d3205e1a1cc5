"""A firing alert's row that its detector reports but could not judge (scored 0 for want of what it needs:
the thermal detector's GPU without a power draw, the fleet detector's GPU without peers, GpuHung's without an
SM-active share) is no read of it: such reads never recover the alert, and the fault judged again mid-fault
re-raises nothing. The same reads judged in band (the GPU recovered) still let its next fault re-raise it."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from anomaly.adaptive import AdaptiveDetector
from anomaly.detectors import Detector
from anomaly.fleet import FleetDetector
from anomaly.needs import POWER, SM_ACTIVE
from anomaly.service import AnomalyService
from anomaly.signatures import GPU_UTIL, SignatureDetector
from anomaly.sources import CollectorSource
from anomaly.thermal import ThermalDetector
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.fakes import TableCollector
from tests.anomaly.service_ticks import GPUS, TEMP, tick

FAULTY = 3
Rows = list[tuple[dict[str, str], float]]
# A read's rows per query: (read number, whether it is between the fault's two halves) -> {query: rows}.
Reads = Callable[[int, bool], dict[str, Rows]]


def _re_raised(
    detector: Detector, reads: Reads, *, count: int, between: range, cfg: AnomalyConfig | None = None
) -> int:
    """How often GPU 3's alert was re-raised, re-raising on, over ``count`` reads of ``reads``' rows."""
    clock = FakeClock()
    col = TableCollector()
    cfg = cfg or AnomalyConfig(reescalate_alerts=True)
    service = AnomalyService(cfg, [CollectorSource([col], clock)], clock, [detector])
    again = 0
    for n in range(count):
        for query, rows in reads(n, n in between).items():
            col.set(query, rows)
        changes = tick(clock, service).changes()
        again += sum(a.labels.get("gpu") == str(FAULTY) and "reescalated" in a.annotations for a in changes)
    return again


def _runaway(power: str) -> Reads:
    """GPUs at 60 C and 300 W (a little noise), GPU 3 at 90 C from read 80 (its cooler failing) for good;
    between, GPU 3 ``power``: "cool" (repaired: 60 C), "0 W" (its power read as 0 W, dcgm-exporter's stale
    zero), "unread" (its power not read), "450 W" (its job moved to a heavier power, above any it learnt at:
    a guess there, still hot)."""

    def reads(n: int, between: bool) -> dict[str, Rows]:
        hot = n >= 80 and not (between and power == "cool")
        temps = [(g, (90.0 if hot and i == FAULTY else 60.0) + (n % 3) * 0.5) for i, g in enumerate(GPUS)]
        watts = [(g, 300.0 + (n % 5) * 4.0) for i, g in enumerate(GPUS) if i != FAULTY or not between]
        lost = {
            "cool": [(GPUS[FAULTY], 300.0)],
            "0 W": [(GPUS[FAULTY], 0.0)],
            "unread": [],
            "450 W": [(GPUS[FAULTY], 450.0)],
        }[power]
        return {TEMP: temps, POWER: watts + (lost if between else [])}

    return reads


@pytest.mark.parametrize(
    ("power", "reraised"),
    [("cool", 1), ("0 W", 0), ("unread", 0), ("450 W", 0)],
    ids=["recovered", "0_W", "unread", "heavier_job"],
)
def test_a_thermal_alert_is_re_raised_after_its_gpu_recovered_not_after_its_power_was_lost(power, reraised):
    # The temperature still read, the thermal detector reported the GPU at 0 (it judges nothing without a
    # power draw): 8 quiet reads, a recovery, and the runaway judged again re-raised its alert mid-fault.
    # Nor one above any power it learnt at (its job moved to a heavier one): a guess there, unsettled and
    # without peers, scored 0 as no evidence, was taken for a judged quiet read.
    runaway = _runaway(power)
    assert _re_raised(ThermalDetector(), runaway, count=130, between=range(100, 108)) == reraised


def _hot_in_job(peers: str) -> Reads:
    """4 GPUs of one Slurm job at 60 C (a little spread), GPU 3 at 90 C from read 10 for good; between, its
    ``peers``: "cool" (GPU 3 back at 60 C among them), "unread" (their node down: GPU 3 has none)."""
    job = [{**g, "slurm_job": "7"} for g in GPUS[:4]]

    def reads(n: int, between: bool) -> dict[str, Rows]:
        hot = n >= 10 and not (between and peers == "cool")
        temps = [(90.0 if hot and i == FAULTY else 60.0) + (n % 3) * 0.5 + i * 0.2 for i in range(4)]
        alone = between and peers == "unread"
        return {
            TEMP: [
                (g, t) for i, (g, t) in enumerate(zip(job, temps, strict=True)) if i == FAULTY or not alone
            ]
        }

    return reads


@pytest.mark.parametrize(("peers", "reraised"), [("cool", 1), ("unread", 0)], ids=["recovered", "no_peers"])
def test_a_fleet_alert_is_re_raised_after_its_gpu_recovered_not_after_it_had_no_peers(peers, reraised):
    # A GPU whose peers are not read is compared with none: the fleet detector reports it at 0, which was
    # taken for 20 quiet reads, a recovery, and its fault compared again re-raised the alert mid-fault.
    fleet = FleetDetector([TEMP], min_peers=3)
    assert _re_raised(fleet, _hot_in_job(peers), count=100, between=range(50, 70)) == reraised


def _hang(gpu: str) -> Reads:
    """4 GPUs working (60 % utilisation, SMs 60 % active), GPU 3 hung from read 5 (utilisation at 100 %, its
    SMs idle) for good; between, GPU 3 ``gpu``: "busy" (working again), "gap" (its values not-a-number, as a
    range query answers a node's downtime), "no_sm" (its SM-active share not read)."""

    def reads(n: int, between: bool) -> dict[str, Rows]:
        hung = {"busy": (60.0, 0.6), "gap": (math.nan, math.nan), "no_sm": (100.0, None)}[gpu]
        util, sm = hung if between else (100.0, 0.01) if n >= 5 else (60.0, 0.6)
        gpus = GPUS[:4]
        shares = [(g, 0.6 if i != FAULTY else sm) for i, g in enumerate(gpus)]
        return {
            GPU_UTIL: [(g, util if i == FAULTY else 60.0) for i, g in enumerate(gpus)],
            SM_ACTIVE: [(g, s) for g, s in shares if s is not None],
        }

    return reads


@pytest.mark.parametrize(
    ("gpu", "reraised"), [("busy", 1), ("gap", 0), ("no_sm", 0)], ids=["recovered", "gap", "no_sm"]
)
def test_a_gpu_hung_alert_is_re_raised_after_its_gpu_recovered_not_after_reads_without_its_values(
    gpu, reraised
):
    # The signatures detector gives no ids and reports every row of the utilisation step, one without a
    # value (a gap) or without an SM-active share at 0: taken for reads of the GPU, a recovery, and the
    # hang read back re-raised GpuHung mid-fault.
    assert _re_raised(SignatureDetector(), _hang(gpu), count=70, between=range(40, 48)) == reraised


# Its series forgotten after 10 reads away, its alert held through them and a warm-up of 30 reads.
FORGETFUL = AnomalyConfig(
    reescalate_alerts=True,
    adaptive_metrics=[TEMP],
    forget_after_seconds=300,
    thresholds={"resolve_after": 50},
)


def _forgotten(back: str, worse_at: int) -> Reads:
    """4 GPUs at 60 C (a little noise), GPU 3 at 90 C from read 80, its node down in reads 100-111 (its
    series forgotten), back ``back``: "hot" (at 90 C) or "cool" (at 60 C, repaired), through its 30 reads of
    warm-up, and at 120 C from read ``worse_at``."""

    def reads(n: int, between: bool) -> dict[str, Rows]:
        back_at = 90.0 if back == "hot" else 60.0
        t3 = 120.0 if n >= worse_at else back_at if n >= 112 else 90.0 if n >= 80 else 60.0
        rows = [(g, (t3 if i == FAULTY else 60.0) + (n % 3) * 0.5 + i * 0.1) for i, g in enumerate(GPUS[:4])]
        return {TEMP: [r for i, r in enumerate(rows) if i != FAULTY or not between]}

    return reads


@pytest.mark.parametrize(
    ("back", "worse_at", "reraised"), [("cool", 146, 1), ("hot", 142, 0)], ids=["recovered", "warming_up"]
)
def test_an_adaptive_alert_is_re_raised_after_its_gpu_recovered_not_after_its_series_warmed_up_anew(
    back, worse_at, reraised
):
    # Back under a new series (forgotten while its node was down), a GPU is warmed up anew: 30 reads at 0
    # that judge nothing were taken for quiet reads, a recovery, and the fault worse at the warm-up's end
    # re-raised its alert mid-fault. Judged back in its band after the warm-up, it has recovered.
    reads = _forgotten(back, worse_at)
    detector = AdaptiveDetector(FORGETFUL)
    assert _re_raised(detector, reads, count=150, between=range(100, 112), cfg=FORGETFUL) == reraised
