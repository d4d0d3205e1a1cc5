"""Ticks at which a query is not due (its ``step_seconds`` longer than ``infer_every_seconds``).

The service reads a fake Prometheus through the real ``PromQLSource``, so a query is not read at the ticks
between its steps, exactly as ``anomaly run`` reads it. Such a tick says nothing about the query's series:
their alerts must neither count it quiet (resolve, then raise again) nor as a break in a learned detector's
``pending_ticks``.
"""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig, AnomalyThresholdConfig
from gpuwarden.model import AlertStatus
from tests.anomaly.fakes import FakePrometheus

UP = "gpuwarden_gpu_up"
TEMP = "DCGM_FI_DEV_GPU_TEMP"
STEP, EVERY = 30.0, 5.0  # the README walkthrough's settings: a query read once every six ticks
NODES = ("n1", "n2", "n3")
GPUS = [
    {"Hostname": n, "gpu": str(i), "UUID": f"GPU-{n}-{i}", "modelName": "H100"}
    for n in NODES
    for i in range(4)
]


@pytest.fixture(scope="module")
def server():
    fake = FakePrometheus()
    yield fake
    fake.close()  # waits out serve_forever's poll: once for the module, not per test


@pytest.fixture
def prometheus(server):
    server.answers.clear()
    return server


class Run:
    """``anomaly run`` against ``prometheus``: a tick every ``EVERY`` s, each query on a ``STEP`` grid
    unless ``steps`` gives it another."""

    def __init__(
        self,
        prometheus: FakePrometheus,
        queries: list[str],
        steps: dict[str, float] | None = None,
        **cfg: object,
    ) -> None:
        self.clock = FakeClock()
        step = {q: (steps or {}).get(q, STEP) for q in queries}
        config = AnomalyConfig(
            infer_every_seconds=EVERY,
            queries=[AnomalyQueryConfig(name=q, expr=q, step_seconds=step[q]) for q in queries],
            **cfg,
        )
        self.source = PromQLSource(prometheus.url, [PromQuery(q, q, step[q]) for q in queries], self.clock)
        self.service = AnomalyService(config, [self.source], self.clock)
        self.events: list[tuple[str, str, AlertStatus, float]] = []  # alertname, GPU or node, status, when

    def ticks(self, seconds: float) -> None:
        for _ in range(round(seconds / EVERY)):
            self.clock.advance(EVERY)
            result = self.service.infer()
            for alert in (*result.raised, *result.resolved):
                labels = alert.labels
                who = labels.get("UUID") or labels.get("Hostname", "")
                self.events.append((labels["alertname"], who, alert.status, self.clock.time()))

    def close(self) -> None:
        self.source.close()


def test_a_lost_gpu_read_every_sixth_tick_fires_once_and_stays_firing_until_it_is_back(prometheus):
    # XID 79 took GPU n1/1 off the bus: gpu_up reads 0 at every step. Before, the five ticks between two
    # steps counted as quiet: GpuLost resolved 20 s after it fired, fired again at the next step, and serve
    # marked the incident flapping while the GPU was still gone. Temperatures are read at every tick: what
    # counts is whether gpu_up was read, not whether the tick read anything.
    back = FakeClock().time() + 300
    prometheus.answers[UP] = lambda t: [
        (g, 0.0 if g["UUID"] == "GPU-n1-1" and t < back else 1.0) for g in GPUS
    ]
    prometheus.answers[TEMP] = lambda t: [(g, 60.0) for g in GPUS]
    run = Run(prometheus, [UP, TEMP], {TEMP: EVERY}, detectors=["signatures"])
    try:
        run.ticks(300)
        assert [e[:3] for e in run.events] == [("GpuLost", "GPU-n1-1", AlertStatus.FIRING)]
        run.ticks(300)
    finally:
        run.close()
    resolved = [e for e in run.events if e[2] is AlertStatus.RESOLVED]
    assert [e[:3] for e in run.events] == [
        ("GpuLost", "GPU-n1-1", AlertStatus.FIRING),
        ("GpuLost", "GPU-n1-1", AlertStatus.RESOLVED),
    ]
    # immediate_resolve_after (4) reads that saw it up: the steps at back, +30, +60 and +90 s.
    assert resolved[0][3] == back + 3 * STEP


def test_an_alert_whose_series_is_no_longer_answered_still_resolves(prometheus):
    # The opposite case: the query is read, and answers without the series (its GPU's exporter went away
    # for good). A read with the series absent is no outage: the alert ends.
    gone = FakeClock().time() + 300
    prometheus.answers["DCGM_FI_DEV_ROW_REMAP_PENDING"] = lambda t: [
        (g, 1.0 if g is GPUS[0] else 0.0) for g in GPUS if t < gone or g is not GPUS[0]
    ]
    run = Run(prometheus, ["DCGM_FI_DEV_ROW_REMAP_PENDING"], detectors=["signatures"])
    try:
        run.ticks(600)
    finally:
        run.close()
    assert [e[:3] for e in run.events] == [
        ("GpuRowRemapPending", "GPU-n1-0", AlertStatus.FIRING),
        ("GpuRowRemapPending", "GPU-n1-0", AlertStatus.RESOLVED),
    ]
    assert run.events[1][3] == gone + 3 * STEP  # its 4th read with no series


def test_a_lasting_spike_read_every_sixth_tick_raises_a_learned_alert_after_pending_ticks_reads(prometheus):
    # Before, the ticks between two steps dropped the alert's pending count: a learned detector (three
    # agreeing reads in a row) never raised at all with step_seconds longer than infer_every_seconds.
    rng = np.random.default_rng(4)
    hot = FakeClock().time() + 60

    def temps(t: float) -> list[tuple[dict[str, str], float]]:
        vals = 60 + rng.normal(0, 0.5, len(GPUS))
        if t >= hot:
            vals[7] = 95.0
        return list(zip(GPUS, vals.tolist(), strict=True))

    prometheus.answers[TEMP] = temps
    run = Run(
        prometheus,
        [TEMP],
        detectors=["adaptive"],
        adaptive_metrics=[TEMP],
        thresholds=AnomalyThresholdConfig(volatility_k=0),
    )
    try:
        assert run.service.warm_up() > 0  # an hour of history, as anomaly run reads at start
        run.ticks(600)
    finally:
        run.close()
    pending = run.service.cfg.pending_ticks
    assert [e[:3] for e in run.events] == [("GpuwardenAnomaly", GPUS[7]["UUID"], AlertStatus.FIRING)]
    assert run.events[0][3] == hot + (pending - 1) * STEP  # its third read past the band


def test_a_node_down_read_every_sixth_tick_is_raised_after_absent_after_and_stays_open(prometheus):
    # Before, the presence detector took a tick that read none of its queries for an outage of the source
    # and moved every clock on by it: n3's absence grew 5 s per 30 s, and NodeDown, once raised, resolved
    # at the next tick (resolve_after 1) and was raised again at the next step.
    down = FakeClock().time() + 120
    prometheus.answers[TEMP] = lambda t: [(g, 60.0) for g in GPUS if t < down or g["Hostname"] != "n3"]
    run = Run(prometheus, [TEMP], detectors=["presence"], absent_after_seconds=90)
    try:
        run.ticks(600)
    finally:
        run.close()
    assert [e[:3] for e in run.events] == [("NodeDown", "n3", AlertStatus.FIRING)]
    # Its last sample at down - 30; absent once more than 90 s older than a step: 120 s after it.
    assert run.events[0][3] == down - STEP + 4 * STEP
