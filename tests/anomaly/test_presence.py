from __future__ import annotations

from datetime import timedelta

from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from gpuwarden.clock import FakeClock, rfc3339
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.fakes import TableCollector

TEMP = "DCGM_FI_DEV_GPU_TEMP"
POWER = "DCGM_FI_DEV_POWER_USAGE"
UP = "gpuwarden_gpu_up"
NODES = ("n1", "n2", "n3")


def gpu(node: str, i: int, host: str = "", **extra: str) -> dict[str, str]:
    return {"gpu": str(i), "UUID": f"GPU-{node}-{i}", "Hostname": host or node, "modelName": "H100", **extra}


class Fleet:
    """Three nodes of four GPUs reporting temperature, power and gpu_up; parts can go quiet."""

    def __init__(self, **cfg: object) -> None:
        self.clock = FakeClock()
        self.col = TableCollector()
        cfg.setdefault("detectors", ["signatures", "presence"])
        self.service = AnomalyService(
            AnomalyConfig(**cfg), [CollectorSource([self.col], self.clock)], self.clock
        )
        self.silent: set[tuple[str, int]] = set()
        self.lost: set[tuple[str, int]] = set()
        self.pod = "train-0"
        self.hosts: dict[str, str] = {}  # a node's Hostname label where a relabel rule renamed it

    def tick(self) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        gpus = [(n, i) for n in NODES for i in range(4)]
        live = [g for g in gpus if g not in self.silent and g not in self.lost]
        h = self.hosts
        self.col.set(TEMP, [(gpu(n, i, h.get(n, n), pod=self.pod, namespace="ml"), 60.0) for n, i in live])
        self.col.set(POWER, [(gpu(n, i, h.get(n, n), pod=self.pod, namespace="ml"), 500.0) for n, i in live])
        self.col.set(
            UP,
            [
                (gpu(n, i, h.get(n, n)), 0.0 if (n, i) in self.lost else 1.0)
                for n, i in gpus
                if (n, i) not in self.silent
            ],
        )
        self.clock.advance(30)
        result = self.service.infer()
        self.last = result
        return [dict(a.labels) for a in result.raised], [dict(a.labels) for a in result.resolved]

    def run(self, ticks: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        raised: list[dict[str, str]] = []
        resolved: list[dict[str, str]] = []
        for _ in range(ticks):
            r, s = self.tick()
            raised += r
            resolved += s
        return raised, resolved


def presence(alerts: list[dict[str, str]]) -> list[dict[str, str]]:
    return [a for a in alerts if a.get("model") == "presence"]


def test_a_node_whose_series_all_stop_raises_one_node_down_after_absent_after_and_resolves_when_back():
    fleet = Fleet(absent_after_seconds=90)
    assert fleet.run(10) == ([], [])
    fleet.silent = {("n2", i) for i in range(4)}
    raised, _ = fleet.run(3)  # 90 s without samples is not yet more than absent_after
    assert presence(raised) == []
    raised, _ = fleet.run(1)
    assert [(a["alertname"], a["Hostname"], a.get("gpu")) for a in presence(raised)] == [
        ("NodeDown", "n2", None)
    ]
    raised, resolved = fleet.run(10)
    assert presence(raised) == [] and resolved == []  # still down: one alert, not a repeat
    fleet.silent = set()
    raised, resolved = fleet.run(1)  # resolved on the first tick it reports again
    assert raised == []
    assert [(a["alertname"], a["Hostname"]) for a in presence(resolved)] == [("NodeDown", "n2")]
    fleet.silent = {("n2", i) for i in range(4)}  # down again: a new alert, not the old one still firing
    raised, _ = fleet.run(4)
    assert [(a["alertname"], a["Hostname"]) for a in presence(raised)] == [("NodeDown", "n2")]


def test_a_presence_alert_says_when_the_last_sample_came_as_its_onset():
    # Raised after the absence limit, so its startsAt is 120 s after the node went silent; the postmortem
    # measured MTTD from that startsAt ("0m 00s" for a node-down incident opened 91 s after the node died).
    fleet = Fleet(absent_after_seconds=90)
    fleet.run(10)
    last_sample = fleet.clock.now()
    fleet.silent = {("n2", i) for i in range(4)} | {("n3", 0)}
    fleet.run(4)
    alerts = {a.labels["alertname"]: a for a in fleet.last.raised if a.labels.get("model") == "presence"}
    assert set(alerts) == {"NodeDown", "GpuExporterStale"}
    for alert in alerts.values():
        assert alert.starts_at == last_sample + timedelta(seconds=120)
        assert alert.annotations["onset"] == rfc3339(last_sample)


def test_a_single_gpu_that_stops_reporting_raises_exporter_stale_for_that_gpu_only():
    fleet = Fleet()
    fleet.run(5)
    fleet.silent = {("n1", 2)}
    raised, _ = fleet.run(5)
    got = presence(raised)
    assert [(a["alertname"], a["Hostname"], a["gpu"], a["UUID"]) for a in got] == [
        ("GpuExporterStale", "n1", "2", "GPU-n1-2")
    ]


def test_the_bound_is_configurable():
    fleet = Fleet(absent_after_seconds=300)
    fleet.run(5)
    fleet.silent = {("n3", i) for i in range(4)}
    raised, _ = fleet.run(10)
    assert presence(raised) == []
    raised, _ = fleet.run(1)
    assert [a["alertname"] for a in presence(raised)] == ["NodeDown"]


def test_relabelled_series_a_lost_gpu_and_a_source_outage_raise_no_presence_alert():
    fleet = Fleet()
    fleet.run(5)
    fleet.pod = "train-1"  # every series of every GPU replaced by a new label set
    raised, _ = fleet.run(10)
    assert presence(raised) == []
    fleet.lost = {("n1", 0)}  # metrics gone, but the exporter says the GPU is lost: GpuLost speaks for it
    raised, _ = fleet.run(10)
    assert presence(raised) == []
    assert [a["alertname"] for a in raised] == ["GpuLost"]
    fleet.lost = set()
    fleet.col.fail = True  # the source fails: its own staleness alert, no node is blamed
    raised, _ = fleet.run(10)
    assert presence(raised) == []
    assert "GpuwardenSourceStale" in {a["alertname"] for a in raised}
    fleet.col.fail = False
    raised, _ = fleet.run(5)
    assert presence(raised) == []


def test_a_node_or_a_fleet_renamed_by_a_relabel_rule_is_not_down_its_gpus_report_under_the_new_name():
    # The same GPUs (their UUIDs) report under another Hostname: nothing stopped reporting.
    fleet = Fleet()
    fleet.run(5)
    fleet.hosts = {"n2": "n2.cluster.example"}
    raised, resolved = fleet.run(10)
    assert presence(raised) == [] and presence(resolved) == []
    fleet.hosts = {n: f"{n}.example" for n in NODES}  # a rule renames every node at once
    raised, resolved = fleet.run(10)
    assert presence(raised) == [] and presence(resolved) == []
    fleet.silent = {("n1", i) for i in range(4)}  # and a renamed node that goes down is still seen
    raised, _ = fleet.run(4)
    assert [(a["alertname"], a["Hostname"]) for a in presence(raised)] == [("NodeDown", "n1.example")]


def test_a_node_gone_for_good_is_forgotten_so_its_alert_resolves():
    fleet = Fleet(absent_forget_seconds=600)
    fleet.run(5)
    fleet.silent = {("n3", i) for i in range(4)}
    raised, _ = fleet.run(5)
    assert [a["alertname"] for a in presence(raised)] == ["NodeDown"]
    _, resolved = fleet.run(21)
    assert [a["alertname"] for a in presence(resolved)] == ["NodeDown"]
