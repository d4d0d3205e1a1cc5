"""Joining on one node's GPUs: an anomaly, an XID or a stale exporter (a sign) joins a fault of another GPU
only where the fault explains it, whichever came first."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuwarden.model import Alert, FaultKind
from tests.alerting.joining_alerts import ANOMALY, _engine_fleet, _on


@pytest.mark.parametrize(
    ("fault", "title"),
    [
        ({"alertname": "GPUXid", "xid": "79"}, "gpu r07-n01/2 lost (fell off the bus)"),
        ({"alertname": "GpuThermalSlowdown"}, "gpu r07-n01/2 thermal"),
    ],
    ids=["xid-79", "thermal"],
)
def test_an_anomaly_on_one_gpu_does_not_take_in_a_fault_on_another_gpu_of_its_node(
    tmp_path: Path, fault: dict[str, str], title: str
) -> None:
    # A power anomaly on GPU 5, then a fault on GPU 2: the anomaly's incident took the fault in as any
    # cause on its node, and a thermal slowdown's incident was titled "node r07-n01 GpuwardenAnomaly on
    # DCGM_FI_DEV_POWER_USAGE". The fault is its own incident, titled for it; the anomaly stays P3.
    clock, engine = _engine_fleet(tmp_path)
    anomaly, hard = _on(5, **ANOMALY), _on(2, **fault)
    engine.ingest([anomaly])
    [first] = engine.open_incident_ids()
    clock.advance(30)
    engine.ingest([hard])
    [other] = [i for i in engine.open_incident_ids() if i != first]
    assert engine.store.get(first).alert_fingerprints == [anomaly.fingerprint]
    assert engine.store.get(first).priority.value == "P3"
    assert engine.store.get(other).alert_fingerprints == [hard.fingerprint]
    assert engine.store.get(other).title.startswith(title)


@pytest.mark.parametrize("first_anomaly", [True, False], ids=["anomaly-first", "xid-first"])
def test_an_anomaly_and_a_hard_fault_on_one_gpu_are_one_incident_rooted_at_the_fault(
    tmp_path: Path, first_anomaly: bool
) -> None:
    # What an incident holding an anomaly takes in is for: the anomaly was the hard fault's first sign.
    clock, engine = _engine_fleet(tmp_path)
    anomaly, hard = _on(2, **ANOMALY), _on(2, alertname="GPUXid", xid="79")
    for alert in (anomaly, hard) if first_anomaly else (hard, anomaly):
        engine.ingest([alert])
        clock.advance(30)
    [incident_id] = engine.open_incident_ids()
    incident = engine.store.get(incident_id)
    assert sorted(incident.alert_fingerprints) == sorted([anomaly.fingerprint, hard.fingerprint])
    assert incident.root_cause.kind is FaultKind.GPU_LOST and incident.priority.value == "P1"


def _sign(labels: dict[str, str]) -> Alert:
    """An alert on GPU 2 of r07-n01, or on the node with ``gpu: "-"``."""
    if labels.get("gpu") == "-":
        return Alert(
            {"cluster": "c1", "Hostname": "r07-n01", **{k: v for k, v in labels.items() if k != "gpu"}}
        )
    return _on(2, **labels)


# A stale exporter hides the node's data; a fault another source reports there is not caused by it. An XID
# is its GPU's fault unless the catalog's action says the whole machine needs restarting (RESTART_VM, as
# 151) or it is a PCIe fault (167 PCIE_FATAL_TIMEOUT): those may be any fault's cause on their node.
@pytest.mark.parametrize(
    "first",
    [
        {"alertname": "GPUXid", "xid": "13"},
        {"alertname": "GPUXid", "xid": "31"},
        {"alertname": "GPUXid", "xid": "119"},
        {"alertname": "DCGMExporterStale", "gpu": "-"},
    ],
    ids=["xid-13", "xid-31", "xid-119", "exporter-stale"],
)
def test_an_xid_or_a_stale_exporter_does_not_take_in_a_fault_on_another_gpu_of_its_node(
    tmp_path: Path, first: dict[str, str]
) -> None:
    clock, engine = _engine_fleet(tmp_path)
    sign, hot = _sign(first), _on(5, alertname="GpuThermalSlowdown")
    engine.ingest([sign])
    [incident] = engine.open_incident_ids()
    clock.advance(30)
    engine.ingest([hot])
    [other] = [i for i in engine.open_incident_ids() if i != incident]
    assert engine.store.get(incident).alert_fingerprints == [sign.fingerprint]
    assert engine.store.get(other).alert_fingerprints == [hot.fingerprint]
    assert engine.store.get(other).title.startswith("gpu r07-n01/5 thermal")


@pytest.mark.parametrize(
    ("first", "gpu"),
    [
        ({"alertname": "GPUXid", "xid": "13"}, 2),  # on its own GPU
        ({"alertname": "GPUXid", "xid": "167"}, 5),  # a PCIe fault: the host's
        ({"alertname": "GPUXid", "xid": "151"}, 5),  # the catalog says RESTART_VM
        ({"alertname": "GPUXid", "xid": "13", "gpu": "-"}, 5),  # an XID of the node, no GPU named
    ],
    ids=["same-gpu", "xid-167-pcie", "xid-151-restart-vm", "node-xid"],
)
def test_an_xid_still_takes_in_what_it_may_cause(tmp_path: Path, first: dict[str, str], gpu: int) -> None:
    clock, engine = _engine_fleet(tmp_path)
    sign, hot = _sign(first), _on(gpu, alertname="GpuThermalSlowdown")
    engine.ingest([sign])
    clock.advance(30)
    engine.ingest([hot])
    [incident] = engine.open_incident_ids()
    assert sorted(engine.store.get(incident).alert_fingerprints) == sorted(
        [sign.fingerprint, hot.fingerprint]
    )


XID_13 = {"alertname": "GPUXid", "xid": "13"}


@pytest.mark.parametrize(
    ("first", "title"),
    [
        ({"alertname": "GpuThermalSlowdown"}, "gpu r07-n01/2 thermal"),
        ({"alertname": "GPUXid", "xid": "31"}, "gpu r07-n01/2 XID 31"),
    ],
    ids=["thermal", "xid-31"],
)
@pytest.mark.parametrize("new", [XID_13, ANOMALY], ids=["then-xid-13", "then-anomaly"])
def test_an_xid_or_an_anomaly_of_one_gpu_does_not_join_a_fault_of_another_gpu_of_its_node(
    tmp_path: Path, first: dict[str, str], title: str, new: dict[str, str]
) -> None:
    # GPU 2 slows down for heat (or an XID 31 there), then an XID 13 (or an anomaly) fires on GPU 5: it
    # joined GPU 2's incident as any fault's sign on the node, rooting it at the node ("node r07-n01
    # thermal"). It is GPU 5's own fault; GPU 2's incident stays what it was.
    clock, engine = _engine_fleet(tmp_path)
    fault, sign = _on(2, **first), _on(5, **new)
    engine.ingest([fault])
    [incident] = engine.open_incident_ids()
    clock.advance(30)
    engine.ingest([sign])
    [other] = [i for i in engine.open_incident_ids() if i != incident]
    assert engine.store.get(incident).alert_fingerprints == [fault.fingerprint]
    assert engine.store.get(incident).title.startswith(title)
    assert engine.store.get(other).alert_fingerprints == [sign.fingerprint]
    assert engine.store.get(other).title.startswith("gpu r07-n01/5 ")


@pytest.mark.parametrize(
    ("first", "new"),
    [
        ({"alertname": "GpuThermalSlowdown"}, XID_13),
        ({"alertname": "GPUXid", "xid": "31"}, XID_13),
        ({"alertname": "GpuThermalSlowdown"}, ANOMALY),
    ],
    ids=["thermal-xid-13", "xid-31-xid-13", "thermal-anomaly"],
)
@pytest.mark.parametrize("reverse", [False, True], ids=["fault-first", "sign-first"])
def test_a_sign_and_a_fault_of_another_gpu_are_two_incidents_whichever_came_first(
    tmp_path: Path, first: dict[str, str], new: dict[str, str], reverse: bool
) -> None:
    # GPU 2's fault then an XID 13 or an anomaly on GPU 5: one incident (the sign joined as any fault's),
    # while the other way round they were two (a sign explains only its GPU): two in either order now.
    clock, engine = _engine_fleet(tmp_path)
    fault, sign = _sign(first), _on(5, **new) if new.get("gpu") != "-" else _sign(new)
    for alert in (sign, fault) if reverse else (fault, sign):
        engine.ingest([alert])
        clock.advance(30)
    held = sorted(engine.store.get(i).alert_fingerprints for i in engine.open_incident_ids())
    assert held == sorted([[fault.fingerprint], [sign.fingerprint]])


@pytest.mark.parametrize(
    ("first", "new"),
    [
        ({"alertname": "GPUXid", "xid": "79"}, XID_13),  # GPU 2 fell off the bus: its job died everywhere
        ({"alertname": "GpuLost"}, ANOMALY),
        ({"alertname": "NodeDown", "gpu": "-"}, XID_13),
        ({"alertname": "GPUXid", "xid": "13"}, XID_13),  # the same XID on two GPUs: a pattern
        ({"alertname": "GpuThermalSlowdown"}, {**XID_13, "gpu": "-"}),  # an XID of the node, no GPU named
        ({"alertname": "GpuThermalSlowdown"}, {"alertname": "GPUXid", "xid": "151"}),  # the host's XID
        ({"alertname": "GpuThermalSlowdown"}, {"alertname": "DCGMExporterStale", "gpu": "-"}),  # the node's
    ],
    ids=["xid-79", "gpu-lost", "node-down", "same-xid", "node-xid", "host-xid-151", "node-stale-exporter"],
)
def test_a_sign_on_another_gpu_still_joins_the_fault_that_explains_it(
    tmp_path: Path, first: dict[str, str], new: dict[str, str]
) -> None:
    clock, engine = _engine_fleet(tmp_path)
    fault, sign = _sign(first), _on(5, **new) if new.get("gpu") != "-" else _sign(new)
    engine.ingest([fault])
    clock.advance(30)
    engine.ingest([sign])
    [incident] = engine.open_incident_ids()
    assert sorted(engine.store.get(incident).alert_fingerprints) == sorted(
        [fault.fingerprint, sign.fingerprint]
    )
