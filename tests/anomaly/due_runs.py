"""``anomaly run`` against the fake Prometheus with queries on steps longer than its tick, and their names."""

from __future__ import annotations

from anomaly.detectors import Detector
from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig
from gpuwarden.model import Alert, AlertStatus
from tests.anomaly.fakes import FakePrometheus

UP = "gpuwarden_gpu_up"
TEMP = "DCGM_FI_DEV_GPU_TEMP"
POWER = "DCGM_FI_DEV_POWER_USAGE"
UTIL = "DCGM_FI_DEV_GPU_UTIL"
SM = "DCGM_FI_PROF_SM_ACTIVE"
REMAP = "DCGM_FI_DEV_ROW_REMAP_PENDING"
STEP, EVERY = 30.0, 5.0  # the README walkthrough's settings: a query read once every six ticks
NODES = ("n1", "n2", "n3")
GPUS = [
    {"Hostname": n, "gpu": str(i), "UUID": f"GPU-{n}-{i}", "modelName": "H100"}
    for n in NODES
    for i in range(4)
]


class Run:
    """``anomaly run`` against ``prometheus``: a tick every ``EVERY`` s, each query on a ``STEP`` grid
    unless ``steps`` gives it another; ``instances``: detectors built here rather than from the config;
    ``exprs``: a query's expression where it is not its name; ``every``: the tick, where not ``EVERY``."""

    def __init__(
        self,
        prometheus: FakePrometheus,
        queries: list[str],
        steps: dict[str, float] | None = None,
        instances: list[Detector] | None = None,
        exprs: dict[str, str] | None = None,
        every: float = EVERY,
        **cfg: object,
    ) -> None:
        self.clock = FakeClock()
        self.every = every
        step = {q: (steps or {}).get(q, STEP) for q in queries}
        expr = {q: (exprs or {}).get(q, q) for q in queries}
        config = AnomalyConfig(
            infer_every_seconds=every,
            queries=[AnomalyQueryConfig(name=q, expr=expr[q], step_seconds=step[q]) for q in queries],
            **cfg,
        )
        self.source = PromQLSource(
            prometheus.url, [PromQuery(q, expr[q], step[q]) for q in queries], self.clock
        )
        self.service = AnomalyService(config, [self.source], self.clock, instances)
        self.events: list[tuple[str, str, AlertStatus, float]] = []  # alertname, GPU or node, status, when
        self.alerts: list[Alert] = []

    def ticks(self, seconds: float) -> None:
        for _ in range(round(seconds / self.every)):
            self.clock.advance(self.every)
            result = self.service.infer()
            for alert in (*result.raised, *result.resolved):
                self.alerts.append(alert)
                labels = alert.labels
                who = labels.get("UUID") or labels.get("Hostname", "")
                self.events.append((labels["alertname"], who, alert.status, self.clock.time()))

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
