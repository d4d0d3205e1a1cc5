"""Joins and merges within one POST that must not depend on how alerts are batched: the same alerts posted one
per POST and all in one POST give the same incidents (storms found by ``benchmarks/batch_order_fuzz.py``, cut
down to the alerts that made them differ; the fleet of ``test_batch_merging``)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from alerting.engine import IncidentEngine
from alerting.inventory_file import load_inventory
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from tests.alerting.test_batch_merging import INVENTORY, START, _alert, _grouped
from tests.migrated_store import migrated_sqlite

LATENCY = {"service": "llama", "namespace": "prod"}

STORMS = {
    # r1-n2 and r1-n3 down make the rack's partial outage, which takes r1-n1 GPU 0 lost in. Posted after,
    # llama's latency joins r2-n1 down, the most specific root holding llama; in one POST it joined the GPU's
    # incident, the most specific then, and went into the rack's with it (batch fuzz seed 1085).
    "a latency joins no gpu's incident its rack's outage takes in": (
        [
            _alert(19, "GPULost", node="r1-n1", gpu="0"),
            _alert(49, "NodeDown", node="r1-n2"),
            _alert(56, "NodeDown", node="r2-n1"),
            _alert(82, "NodeDown", node="r1-n3"),
            _alert(104, "LlamaLatencyHigh", **LATENCY),
        ],
        {
            ("node_down", frozenset({"GPULost@19", "NodeDown@49", "NodeDown@82"})),
            ("node_down", frozenset({"NodeDown@56", "LlamaLatencyHigh@104"})),
        },
    ),
    # r1-n3 down, an XID on r1-n2 GPU 1 and r1-n1 down (the rack's partial outage, which takes the XID's
    # incident in): llama's latency at the same second joins r2-n1 down (batch fuzz seed 1704).
    "a latency joins no xid's incident its rack's outage takes in": (
        [
            _alert(20, "NodeDown", node="r1-n3"),
            _alert(52, "NodeDown", node="r2-n1"),
            _alert(57, "XidError", node="r1-n2", gpu="1", xid="119"),
            _alert(67, "NodeDown", node="r1-n1"),
            _alert(67, "LlamaLatencyHigh", **LATENCY),
        ],
        {
            ("node_down", frozenset({"NodeDown@20", "XidError@57", "NodeDown@67"})),
            ("node_down", frozenset({"NodeDown@52", "LlamaLatencyHigh@67"})),
        },
    ),
    # Power brakes on three nodes of r1 are its power: posted after, llama's latency joins the GPUs lost on
    # r1-n2 (llama's), more specific than the rack; in one POST it joined r1-n1 GPU 1's brake (llama's), the
    # most specific then, which the merge put into the rack's (batch fuzz seed 2693).
    "a latency joins no brake that its rack's power takes in": (
        [
            _alert(48, "GPULost", node="r1-n2", gpu="0"),
            _alert(87, "GPULost", node="r1-n2", gpu="5"),
            _alert(89, "GpuPowerBrake", node="r1-n1", gpu="1"),
            _alert(91, "GpuPowerBrake", node="r1-n3", gpu="4"),
            _alert(100, "GpuPowerBrake", node="r1-n4", gpu="5"),
            _alert(118, "LlamaLatencyHigh", **LATENCY),
        ],
        {
            ("gpu_lost", frozenset({"GPULost@48", "GPULost@87", "LlamaLatencyHigh@118"})),
            ("power_brake", frozenset({"GpuPowerBrake@89", "GpuPowerBrake@91", "GpuPowerBrake@100"})),
        },
    ),
    # Heat on three nodes of r1 is the rack's: r1-n1's stale exporter posted after joins it (a rack's stale
    # exporter is its own); in one POST it joined the XID on r1-n1, the heat still three incidents (2711).
    "a stale exporter joins its rack's heat formed earlier in the post": (
        [
            _alert(24, "GpuTemperatureHigh", node="r1-n2", gpu="6"),
            _alert(27, "GpuTemperatureHigh", node="r1-n4", gpu="0"),
            _alert(32, "XidError", node="r1-n1", gpu="6", xid="31"),
            _alert(82, "GpuTemperatureHigh", node="r1-n3", gpu="1"),
            _alert(92, "DCGMExporterStale", Hostname="r1-n1"),
        ],
        {
            (
                "thermal",
                frozenset(
                    {"GpuTemperatureHigh@24", "GpuTemperatureHigh@27", "GpuTemperatureHigh@82"}
                    | {"DCGMExporterStale@92"}
                ),
            ),
            ("xid", frozenset({"XidError@32"})),
        },
    ),
    # r1-n1's stale exporter beside its GPU 7 lost roots that incident at the node; posted after, llama's
    # latency joins r1-n2 GPU 1's brake (llama's), more specific than the node, where in one POST the GPU
    # lost was still the root and took it (batch fuzz seed 3008).
    "a node's stale exporter beside a gpu lost heads the root to the node": (
        [
            _alert(67, "GpuPowerBrake", node="r1-n1", gpu="7"),
            _alert(73, "GpuPowerBrake", node="r1-n2", gpu="1"),
            _alert(104, "GPULost", node="r1-n1", gpu="7"),
            _alert(109, "DCGMExporterStale", Hostname="r1-n1"),
            _alert(117, "LlamaLatencyHigh", **LATENCY),
        ],
        {
            ("gpu_lost", frozenset({"GpuPowerBrake@67", "GPULost@104", "DCGMExporterStale@109"})),
            ("power_brake", frozenset({"GpuPowerBrake@73", "LlamaLatencyHigh@117"})),
        },
    ),
    # XID 79 takes r1-n1 GPU 1 (NVLink errors, llama's) off the bus beside the rack's partial outage, which
    # takes it in: llama's latency posted after joins r1-n2 GPU 0's brake (batch fuzz seed 3286).
    "a gpu's first outage goes into its rack's outage before the next alert": (
        [
            _alert(31, "NVLinkErrors", node="r1-n1", gpu="1"),
            _alert(57, "NodeDown", node="r1-n4"),
            _alert(81, "NodeDown", node="r1-n3"),
            _alert(86, "GpuPowerBrake", node="r1-n2", gpu="0"),
            _alert(98, "XidError", node="r1-n1", gpu="1", xid="79"),
            _alert(102, "LlamaLatencyHigh", **LATENCY),
        ],
        {
            ("node_down", frozenset({"NVLinkErrors@31", "NodeDown@57", "NodeDown@81", "XidError@98"})),
            ("power_brake", frozenset({"GpuPowerBrake@86", "LlamaLatencyHigh@102"})),
        },
    ),
    # r1-n1 down beside r1-n2 down makes the rack's partial outage, which takes r1-n4's incident in; an XID
    # 13 on r1-n4 GPU 6 posted after is its own, where in one POST it joined r1-n4's first (seed 3408).
    "an xid joins no node's incident its rack's outage takes in": (
        [
            _alert(11, "GpuTemperatureHigh", node="r1-n4", gpu="5"),
            _alert(28, "DCGMExporterStale", Hostname="r1-n4"),
            _alert(39, "GpuPowerBrake", node="r1-n4", gpu="6"),
            _alert(59, "NodeDown", node="r1-n2"),
            _alert(103, "NodeDown", node="r1-n1"),
            _alert(115, "XidError", node="r1-n4", gpu="6", xid="13"),
        ],
        {
            (
                "node_down",
                frozenset(
                    {"GpuTemperatureHigh@11", "DCGMExporterStale@28", "GpuPowerBrake@39"}
                    | {"NodeDown@59", "NodeDown@103"}
                ),
            ),
            ("xid", frozenset({"XidError@115"})),
        },
    ),
    # Heat on three nodes of r1 is the rack's: llama's latency posted after joins r2-n1 GPU 1's brake
    # (llama's), more specific than the rack, not r1-n1 GPU 1's heat (batch fuzz seed 3491).
    "a latency joins no hot gpu its rack's heat takes in": (
        [
            _alert(46, "GpuTemperatureHigh", node="r1-n1", gpu="1"),
            _alert(48, "GpuPowerBrake", node="r2-n1", gpu="1"),
            _alert(70, "GpuTemperatureHigh", node="r1-n2", gpu="3"),
            _alert(85, "GpuTemperatureHigh", node="r1-n3", gpu="6"),
            _alert(116, "LlamaLatencyHigh", **LATENCY),
        ],
        {
            ("power_brake", frozenset({"GpuPowerBrake@48", "LlamaLatencyHigh@116"})),
            (
                "thermal",
                frozenset({"GpuTemperatureHigh@46", "GpuTemperatureHigh@70", "GpuTemperatureHigh@85"}),
            ),
        },
    ),
    # r1-n2 GPU 4 hot (job 300's) joins llama's latency (r1-n2 runs llama), which brings job 300, which r2-n4
    # GPU 1 lost shares: posted after, the merge had put the latency's incident into that GPU's, and r1-n2
    # GPU 1 hot (llama's) joined r1-n2 GPU 2's heat; in one POST it joined the heat first, which then took
    # the latency's incident (batch fuzz seed 3657).
    "a rootless incident goes to the first rooted one to share its workload": (
        [
            _alert(38, "GpuTemperatureHigh", node="r1-n2", gpu="2"),
            _alert(49, "GpuTemperatureHigh", node="r1-n3", gpu="0"),
            _alert(71, "NodeDown", node="r1-n3"),
            _alert(81, "LlamaLatencyHigh", **LATENCY),
            _alert(95, "GPULost", node="r2-n4", gpu="1"),
            _alert(97, "GpuTemperatureHigh", node="r1-n2", gpu="4"),
            _alert(113, "GpuTemperatureHigh", node="r1-n2", gpu="1"),
        ],
        {
            ("gpu_lost", frozenset({"LlamaLatencyHigh@81", "GPULost@95", "GpuTemperatureHigh@97"})),
            ("thermal", frozenset({"GpuTemperatureHigh@38", "GpuTemperatureHigh@113"})),
            ("node_down", frozenset({"GpuTemperatureHigh@49", "NodeDown@71"})),
        },
    ),
    # Heat on r1-n4 (two GPUs), r1-n3 down, then heat on r1-n2: the rack's heat, which takes r1-n3 down in
    # (it went down after the heat began); r1-n3 GPU 5 lost posted after joins it there. In one POST the GPU
    # had joined r1-n3's incident, which the rack's heat then did not take: a GPU lost is no heat's (4012).
    "a rack's heat takes a node down with a gpu lost on it after": (
        [
            _alert(22, "GpuTemperatureHigh", node="r1-n4", gpu="3"),
            _alert(97, "NodeDown", node="r1-n3"),
            _alert(97, "GpuTemperatureHigh", node="r1-n4", gpu="6"),
            _alert(104, "GpuTemperatureHigh", node="r1-n2", gpu="0"),
            _alert(108, "GPULost", node="r1-n3", gpu="5"),
        ],
        {
            (
                "node_down",
                frozenset(
                    {"GpuTemperatureHigh@22", "GpuTemperatureHigh@97", "GpuTemperatureHigh@104"}
                    | {"NodeDown@97", "GPULost@108"}
                ),
            ),
        },
    ),
    # r1-n3 down after an XID there takes r1-n3 GPU 6 hot in, before heat on a third node of r1 (r1-n2):
    # posted one by one, the rack's heat never reached three nodes; in one POST the merge pass came to r1-n1's
    # heat first and counted r1-n3's, still apart, as the third (batch fuzz seed 4044).
    "a hot gpu its node's outage takes in does not count toward its rack's heat": (
        [
            _alert(10, "GpuTemperatureHigh", node="r1-n1", gpu="3"),
            _alert(41, "XidError", node="r1-n3", gpu="0", xid="74"),
            _alert(44, "GpuTemperatureHigh", node="r1-n3", gpu="6"),
            _alert(75, "NodeDown", node="r1-n3"),
            _alert(93, "GpuTemperatureHigh", node="r1-n2", gpu="7"),
        ],
        {
            ("node_down", frozenset({"XidError@41", "GpuTemperatureHigh@44", "NodeDown@75"})),
            ("thermal", frozenset({"GpuTemperatureHigh@10"})),
            ("thermal", frozenset({"GpuTemperatureHigh@93"})),
        },
    ),
    # r1-n2 GPU 1 lost (a llama replica's) brings llama into r1-n2's GPUs lost, which takes llama's latency
    # in: posted after, r1-n1 GPU 2 hot (llama's) is its own; in one POST it went with the latency's incident,
    # still apart, into r1-n2's (seen with the early merge before it took a grown workload in; seed 2537).
    "a latency goes into the incident that brings its workload before the next alert": (
        [
            _alert(5, "GPULost", node="r1-n2", gpu="4"),
            _alert(35, "GPULost", node="r1-n2", gpu="2"),
            _alert(65, "LlamaLatencyHigh", **LATENCY),
            _alert(89, "GPULost", node="r1-n2", gpu="1"),
            _alert(103, "GpuTemperatureHigh", node="r1-n1", gpu="2"),
        ],
        {
            ("gpu_lost", frozenset({"GPULost@5", "GPULost@35", "LlamaLatencyHigh@65", "GPULost@89"})),
            ("thermal", frozenset({"GpuTemperatureHigh@103"})),
        },
    ),
    # An XID 13 on r1-n2 GPU 1 joins that GPU's NVLink errors, which r1-n2's GPUs lost then take in (the node
    # explains the XID): posted after, llama's latency joins r1-n1 GPU 3 lost (llama's), more specific than
    # the node; in one POST it joined GPU 1's incident (llama's), the most specific then (batch fuzz 4989).
    "a fault that lets its node's outage take its gpu's incident in merges before the next alert": (
        [
            _alert(14, "NVLinkErrors", node="r1-n2", gpu="1"),
            _alert(39, "GPULost", node="r1-n1", gpu="3"),
            _alert(60, "GPULost", node="r1-n2", gpu="2"),
            _alert(88, "GPULost", node="r1-n2", gpu="7"),
            _alert(91, "XidError", node="r1-n2", gpu="1", xid="13"),
            _alert(117, "LlamaLatencyHigh", **LATENCY),
        ],
        {
            ("gpu_lost", frozenset({"GPULost@39", "LlamaLatencyHigh@117"})),
            ("gpu_lost", frozenset({"NVLinkErrors@14", "GPULost@60", "GPULost@88", "XidError@91"})),
        },
    ),
}


@pytest.mark.parametrize("name", sorted(STORMS))
def test_alerts_of_one_post_join_what_they_would_posted_one_by_one(tmp_path: Path, name: str) -> None:
    alerts, expected = STORMS[name]
    one_by_one = _grouped(tmp_path, [[a] for a in alerts])
    together = _grouped(tmp_path, [alerts])
    assert (one_by_one, together) == (expected, expected)


def test_an_incident_merged_within_its_post_tells_its_alerts_before_its_merge(tmp_path: Path) -> None:
    # r1-n2 GPU 0's brake goes into the rack's power as r1-n4 brakes (the third node), within the POST: its
    # timeline says the brake joined, then the merge, as posted one by one, not the merge and then a join.
    alerts, _ = STORMS["a latency joins no brake that its rack's power takes in"]
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    sql = migrated_sqlite(tmp_path / f"{uuid.uuid4().hex}.db")
    at = START + timedelta(seconds=130)
    engine = IncidentEngine(
        sql, FakeClock(at.timestamp()), AlertingConfig(announce_delay_seconds=0), load_inventory(inventory)
    )
    engine.ingest(alerts)
    merged = [row.id for row, _ in engine.store.list_rows(include_merged=True) if row.merged_into]
    timelines = [[e.kind for e in engine.store.get(i).timeline] for i in merged]
    sql.dispose()
    assert len(timelines) == 2  # two of the three brakes' incidents went into the first
    assert all(kinds[:2] == ["opened", "alert_added"] and kinds[-1] == "merged" for kinds in timelines)
