"""The root cause of a set of alerts, whatever order they are read in (``alerting.root_cause``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting.faults import classify
from alerting.inventory import Inventory
from alerting.inventory_file import load_inventory
from alerting.member import Member
from alerting.root_cause import root_cause
from alerting.topology import locate
from gpuwarden.model import label_fingerprint

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
INVENTORY = "\n".join(
    [
        "nodes:",
        *(f"  - {{name: r1-n{n}, cluster: c1, rack: r1, gpus: 8}}" for n in range(1, 5)),
        "",
    ]
)

Drawn = tuple[int, dict[str, str]]  # seconds after START, labels (cluster c1 added)

ROOTS: dict[str, tuple[list[Drawn], tuple[str, tuple[str, ...]]]] = {
    # Exporters stale on three nodes of a rack (its switch), then one of them unreachable: the rack's fault,
    # as a node that shut down in a rack running hot is the heat's (batch fuzz 2207).
    "a node down after its rack's exporters went stale on other nodes is the rack's": (
        [
            (14, {"alertname": "DCGMExporterStale", "Hostname": "r1-n4"}),
            (18, {"alertname": "DCGMExporterStale", "Hostname": "r1-n1"}),
            (27, {"alertname": "DCGMExporterStale", "Hostname": "r1-n2"}),
            (38, {"alertname": "NodeDown", "node": "r1-n1"}),
        ],
        ("exporter_stale", ("c1", "r1")),
    ),
    # One stale exporter is its node's sign, no fault that spread: the GPU lost after it is the root.
    "a gpu lost after its node's one stale exporter is the gpu's": (
        [
            (14, {"alertname": "DCGMExporterStale", "Hostname": "r1-n4"}),
            (20, {"alertname": "GPULost", "node": "r1-n4", "gpu": "2"}),
        ],
        ("gpu_lost", ("c1", "r1", "r1-n4", "2")),
    ),
    # A stale exporter hides its node's data and is no fault of its own beside faults its GPUs report: it
    # does not name the node's root for being placed at the node itself (batch fuzz 1586, 1474).
    "a stale exporter after its node's hot gpus leaves the root the node's heat": (
        [
            (28, {"alertname": "GpuTemperatureHigh", "node": "r1-n2", "gpu": "0"}),
            (54, {"alertname": "GpuTemperatureHigh", "node": "r1-n2", "gpu": "1"}),
            (96, {"alertname": "DCGMExporterStale", "Hostname": "r1-n2"}),
        ],
        ("thermal", ("c1", "r1", "r1-n2")),
    ),
    "a stale exporter after a power brake and a hot gpu leaves the root the brake": (
        [
            (12, {"alertname": "GpuPowerBrake", "node": "r1-n2", "gpu": "7"}),
            (42, {"alertname": "GpuTemperatureHigh", "node": "r1-n2", "gpu": "5"}),
            (91, {"alertname": "DCGMExporterStale", "Hostname": "r1-n2"}),
        ],
        ("power_brake", ("c1", "r1", "r1-n2")),
    ),
    # Alone, or the first of them, it still names the root.
    "a stale exporter alone names its node's root": (
        [(14, {"alertname": "DCGMExporterStale", "Hostname": "r1-n2"})],
        ("exporter_stale", ("c1", "r1", "r1-n2")),
    ),
    "a stale exporter before its node's hot gpu names its root": (
        [
            (14, {"alertname": "DCGMExporterStale", "Hostname": "r1-n2"}),
            (28, {"alertname": "GpuTemperatureHigh", "node": "r1-n2", "gpu": "0"}),
        ],
        ("exporter_stale", ("c1", "r1", "r1-n2")),
    ),
}


def _members(inventory: Inventory, drawn: list[Drawn]) -> list[Member]:
    members = []
    for at, drawn_labels in drawn:
        labels = {**drawn_labels, "cluster": "c1"}
        kind = classify(labels)
        where = locate(labels, kind, inventory)
        onset = START + timedelta(seconds=at)
        members.append(Member(label_fingerprint(labels), kind, where, onset, True, labels))
    return members


@pytest.mark.parametrize("name", sorted(ROOTS))
def test_root_cause_of_alerts_in_any_order(tmp_path: Path, name: str) -> None:
    drawn, expected = ROOTS[name]
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    inventory = load_inventory(tmp_path / "inventory.yaml")
    members = _members(inventory, drawn)
    found = set()
    for order in (members, members[::-1]):
        path, root = root_cause(order, inventory)
        found.add((root.kind.value, path))
    assert found == {expected}
