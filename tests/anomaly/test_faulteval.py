"""A few simulated hours of the GPU-fault evaluation; the multi-day run is benchmarks/eval_gpu_faults.py."""

from __future__ import annotations

import logging

import pytest

from anomaly.faulteval import FAULT_CLASSES, EvalPlan, run_fault_eval
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from exporters.simulated import sim_collectors
from gpuwarden.clock import FakeClock
from gpuwarden.config import AnomalyConfig
from gpuwarden.sim import build_fleet


@pytest.fixture(scope="module")
def report():
    logging.getLogger("exporters").setLevel(logging.ERROR)
    clock = FakeClock()
    fleet = build_fleet(4, 8, seed=3, clock=clock)
    nvml = sim_collectors(fleet, clock)
    service = AnomalyService(AnomalyConfig(), [CollectorSource(nvml.collectors, clock)], clock)
    plan = EvalPlan(duration_seconds=5 * 3600, spacing_seconds=900, warmup_seconds=3600, seed=3)
    return run_fault_eval(fleet, service, clock, plan, before_tick=nvml.pump_xids)


def test_every_fault_class_was_injected(report):
    assert {name for name, c in report.classes.items() if c.injected} == {c.name for c in FAULT_CLASSES}


def test_hard_faults_are_all_detected_within_one_collection_interval(report):
    for c in report.classes.values():
        if c.hard:
            assert c.within_deadline == c.injected, c.to_json()
            assert max(c.latencies) <= report.interval_seconds


def test_soft_faults_are_detected_within_five_minutes(report):
    for c in report.classes.values():
        if not c.hard:
            assert c.within_deadline == c.injected, c.to_json()


def test_no_alert_is_raised_on_healthy_gpus(report):
    assert report.false_alerts == 0, report.false_alert_examples
    assert report.gpu_days == pytest.approx(32 * 4 / 24)
