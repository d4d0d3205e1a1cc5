"""The signatures detector's other faults: row remapping, thermal slowdown, NVLink errors and links down, a
stale exporter, a hung GPU, and simulated faults through the exporter's collectors."""

from __future__ import annotations

import logging

import pytest

from alerting.faults import classify
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from exporters.simulated import sim_collectors
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import FaultKind, RecommendedAction
from gpuwarden.sim import build_fleet, parse_fault
from tests.anomaly.signature_feeds import GPU, Feed, fired


def test_row_remap_failure_asks_for_support_and_pending_for_a_reset():
    feed = Feed()
    hits = fired(
        feed.tick(
            ("DCGM_FI_DEV_ROW_REMAP_FAILURE", [GPU], [1], "gauge"),
            ("DCGM_FI_DEV_ROW_REMAP_PENDING", [GPU], [1], "gauge"),
        )
    )
    actions = {f.action_at(i) for f, i in hits}
    assert actions == {RecommendedAction.CONTACT_SUPPORT, RecommendedAction.DRAIN_AND_RESET}


def test_hardware_thermal_slowdown_fires_but_a_power_cap_does_not():
    feed = Feed()
    sw_power_cap, hw_thermal = 0x4, 0x40
    two = [GPU, {**GPU, "gpu": "1", "UUID": "GPU-b"}]
    hits = fired(feed.tick(("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", two, [sw_power_cap, hw_thermal], "gauge")))
    assert [f.labels[i]["UUID"] for f, i in hits] == ["GPU-b"]
    assert "hw_thermal" in hits[0][0].summary_at(hits[0][1])


def test_an_nvlink_error_burst_fires_but_a_trickle_does_not():
    feed = Feed()
    q = "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"
    feed.tick((q, [GPU], [0], "counter"))
    assert fired(feed.tick((q, [GPU], [2], "counter"))) == []
    assert len(fired(feed.tick((q, [GPU], [500], "counter")))) == 1


def test_one_nvlink_recovery_error_fires_because_a_link_retrained():
    feed = Feed()
    q = "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL"
    feed.tick((q, [GPU], [0], "counter"))
    assert fired(feed.tick((q, [GPU], [0], "counter"))) == []
    assert len(fired(feed.tick((q, [GPU], [1], "counter")))) == 1


def test_a_stale_exporter_fires():
    feed = Feed()
    hits = fired(feed.tick(("gpuwarden_exporter_stale", [{"Hostname": "n1"}], [1], "gauge")))
    assert hits[0][0].alert_labels["alertname"] == "GpuExporterStale"


def test_utilisation_pinned_while_the_sms_idle_reads_as_a_hung_gpu_and_busy_or_idle_gpus_do_not():
    feed = Feed()
    gpus = [{**GPU, "gpu": str(i), "UUID": f"GPU-{i}"} for i in range(4)]
    # hung; busy memory-bound; idle; pinned utilisation but no SM-active series for it
    util = [100.0, 100.0, 0.0, 100.0]
    sm = [0.02, 0.30, 0.0]
    hits = fired(
        feed.tick(
            ("DCGM_FI_DEV_GPU_UTIL", gpus, util, "gauge"),
            ("DCGM_FI_PROF_SM_ACTIVE", list(reversed(gpus[:3])), list(reversed(sm)), "gauge"),
        )
    )
    assert [(f.alert_labels["alertname"], f.labels[i]["UUID"]) for f, i in hits] == [("GpuHung", "GPU-0")]
    f, i = hits[0]
    assert f.action_at(i) is RecommendedAction.RESET_GPU


def test_a_downed_nvlink_fires_on_every_tick_until_it_is_active_again():
    feed = Feed()
    q = "DCGM_FI_DEV_NVLINK_LINK_STATUS"
    link0, link1 = {**GPU, "link": "0"}, {**GPU, "link": "1"}
    assert fired(feed.tick((q, [link0, link1], [1, 1], "gauge"))) == []
    for _ in range(3):  # the recovery-error counter moved once; the state keeps saying it
        hits = fired(feed.tick((q, [link0, link1], [0, 1], "gauge")))
        assert [(f.labels[i]["link"], f.summary_at(i), f.action_at(i)) for f, i in hits] == [
            ("0", "NVLink down", RecommendedAction.DRAIN_AND_RESET)
        ]
    assert fired(feed.tick((q, [link0, link1], [1, 1], "gauge"))) == []


def test_a_link_never_seen_active_is_not_called_down():
    """A board whose NVLink bridge leaves some links unused reads them inactive from the start."""
    feed = Feed()
    q = "DCGM_FI_DEV_NVLINK_LINK_STATUS"
    for _ in range(3):
        assert fired(feed.tick((q, [{**GPU, "link": "5"}], [0], "gauge"))) == []


def test_a_simulated_nvlink_down_raises_gpu_nvlink_down_through_the_exporters_collector():
    raised = simulated_fault_raises(
        {"kind": "nvlink_down", "node": "node-01", "gpu": 2, "link": 3},
        "GpuNvlinkDown",
        lambda a: (a.labels["gpu"], a.labels["link"]),
    )
    assert raised(2) == []
    assert raised(1) == [("2", "3")]


def simulated_fault_raises(fault, alertname, describe):
    """A one-node simulated fleet read by the signatures detector alone through the exporter's collectors.
    Returns ``raised(ticks)``: what those 30 s ticks raised named ``alertname`` (each through ``describe``);
    ``fault`` is injected once, after the first call."""
    clock = FakeClock()
    fleet = build_fleet(1, 4, seed=1, clock=clock)
    service = signatures_over(fleet, clock)
    calls = []

    def raised(ticks):
        if len(calls) == 1:
            fleet.inject(parse_fault(fault))
        calls.append(ticks)
        found = []
        for _ in range(ticks):
            clock.advance(30)
            found += [describe(a) for a in service.infer().raised if a.labels["alertname"] == alertname]
        return found

    return raised


def signatures_over(fleet, clock) -> AnomalyService:
    """The signatures detector alone over the simulated exporter's collectors."""
    sources = [CollectorSource(quiet_collectors(fleet, clock), clock)]
    return AnomalyService(AnomalyConfig(detectors=["signatures"]), sources, clock)


def quiet_collectors(fleet, clock):
    """The simulated exporter's collectors, its INFO lines off."""
    logging.getLogger("exporters").setLevel(logging.ERROR)
    return sim_collectors(fleet, clock).collectors


def test_a_simulated_ecc_sbe_storm_raises_in_one_tick_through_the_exporters_collector():
    raised = simulated_fault_raises(
        {"kind": "ecc_sbe_storm", "node": "node-01", "gpu": 1},
        "GpuSingleBitEccStorm",
        lambda a: a.labels["gpu"],
    )
    assert raised(3) == []
    assert raised(1) == ["1"]


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("hw_thermal_slowdown", FaultKind.THERMAL), ("power_brake", FaultKind.POWER_BRAKE)],
    ids=["thermal", "power-brake"],
)
def test_a_simulated_clock_slowdown_is_classified_by_what_slows_it(fault: str, kind: FaultKind) -> None:
    # Every GpuClockSlowdown read as a power brake by its name: a GPU slowed by heat opened an incident
    # titled "power brake".
    raised = simulated_fault_raises(
        {"kind": fault, "node": "node-01", "gpu": 2},
        "GpuClockSlowdown",
        lambda a: (a.labels["gpu"], classify(a.labels)),
    )
    assert raised(2) == []
    assert raised(3) == [("2", kind)]
