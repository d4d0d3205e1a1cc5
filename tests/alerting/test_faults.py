from __future__ import annotations

import pytest

from alerting.faults import classify
from gpuwarden.model import FaultKind


@pytest.mark.parametrize(
    ("labels", "kind"),
    [
        ({"alertname": "GpuXidError", "xid": "79"}, FaultKind.GPU_LOST),
        ({"alertname": "GpuXidError", "xid": "48"}, FaultKind.ECC_DBE),
        ({"alertname": "GpuXidError", "xid": "13"}, FaultKind.XID),
        ({"alertname": "GpuRecoveryActionPending"}, FaultKind.XID),  # the anomaly service's own
        ({"alertname": "GpuDoubleBitEcc"}, FaultKind.ECC_DBE),
        ({"alertname": "GpuRetirePending"}, FaultKind.ROW_REMAP_PENDING),
        ({"alertname": "GpuRowRemapFailure"}, FaultKind.ROW_REMAP_FAILURE),
        ({"alertname": "GpuClockSlowdown"}, FaultKind.POWER_BRAKE),
        ({"alertname": "GpuNvlinkErrors"}, FaultKind.NVLINK),
        ({"alertname": "GpuwardenSourceStale"}, FaultKind.EXPORTER_STALE),
        ({"alertname": "NodeDown"}, FaultKind.NODE_DOWN),
        ({"alertname": "KubeNodeNotReady"}, FaultKind.NODE_DOWN),
        ({"alertname": "RackPowerLoss"}, FaultKind.RACK_DOWN),
        ({"alertname": "TrainingJobStalled"}, FaultKind.JOB_STALLED),
        ({"alertname": "InferenceSLOFastBurn"}, FaultKind.SERVICE_DEGRADED),
        ({"alertname": "GpuwardenAnomaly", "fault_kind": "thermal"}, FaultKind.THERMAL),
        (
            {"alertname": "GpuwardenAnomaly", "model": "thermal", "for": "DCGM_FI_DEV_SM_CLOCK"},
            FaultKind.THERMAL,
        ),
        (  # the series' own ``model`` (an inference server's) moved the detector to ``model_alias``
            {
                "alertname": "GpuwardenAnomaly",
                "model": "llama-70b",
                "model_alias": "thermal",
                "for": "DCGM_FI_DEV_SM_CLOCK",
            },
            FaultKind.THERMAL,
        ),
        (
            {"alertname": "GpuwardenAnomaly", "model": "fleet", "for": "DCGM_FI_DEV_GPU_TEMP"},
            FaultKind.THERMAL,
        ),
        (
            {"alertname": "GpuwardenAnomaly", "for": "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"},
            FaultKind.NVLINK,
        ),
        (
            {"alertname": "GpuwardenAnomaly", "model": "adaptive", "for": "DCGM_FI_DEV_POWER_USAGE"},
            FaultKind.UNKNOWN,
        ),
        ({"alertname": "SomethingElse"}, FaultKind.UNKNOWN),
        # "fell off the bus" as people write it: "felloffbus" alone missed the "the"
        ({"alertname": "GPUFellOffTheBus"}, FaultKind.GPU_LOST),
        # a name no pattern knows, with the XID in its own label: the code says what broke (was unknown)
        ({"alertname": "GpuHardwareError", "xid": "79"}, FaultKind.GPU_LOST),
        ({"alertname": "GpuHardwareError", "xid_code": "48"}, FaultKind.ECC_DBE),
        ({"alertname": "GpuHardwareError", "xid": "31"}, FaultKind.XID),
        # a bare ``code`` is anything (an exit code) unless the name says XID
        ({"alertname": "BatchJobFailed", "code": "79"}, FaultKind.UNKNOWN),
        # a name a pattern knows still wins over an XID label
        ({"alertname": "GpuThermalSlowdown", "xid": "31"}, FaultKind.THERMAL),
    ],
    ids=lambda v: (
        "-".join(v.get(k, "") for k in ("alertname", "xid", "xid_code", "code", "model", "for"))
        if isinstance(v, dict)
        else ""
    ),
)
def test_alert_names_and_xid_codes_map_to_fault_kinds(labels: dict[str, str], kind: FaultKind) -> None:
    assert classify(labels) is kind


def test_clocks_reduced_is_throttling() -> None:
    from alerting.faults import classify  # noqa: PLC0415
    from gpuwarden.model import FaultKind  # noqa: PLC0415

    assert classify({"alertname": "GpuClocksReduced"}) is FaultKind.POWER_BRAKE


@pytest.mark.parametrize(
    ("deviation", "kind"),
    [("down", FaultKind.UNKNOWN), ("up", FaultKind.THERMAL), (None, FaultKind.THERMAL)],
    ids=["fell", "rose", "no-band"],
)
def test_a_temperature_that_fell_below_its_band_is_no_thermal_fault(deviation, kind) -> None:
    """The soak: a GPU cooling to 60 C after its reset (band 64-87) was rooted "thermal"."""
    labels = {"alertname": "GpuwardenAnomaly", "model": "adaptive", "for": "DCGM_FI_DEV_GPU_TEMP"}
    if deviation is not None:
        labels["deviation"] = deviation
    assert classify(labels) is kind


def test_a_single_bit_ecc_storm_signature_is_an_ecc_sbe_storm() -> None:
    assert classify({"alertname": "GpuSingleBitEccStorm"}) is FaultKind.ECC_SBE_STORM


@pytest.mark.parametrize("label", ["node", "Hostname", "hostname", "nodename"])
def test_a_scrape_down_alert_naming_its_node_by_any_node_label_is_a_node_down(label: str) -> None:
    """node-exporter's ``nodename`` names a target as well as ``node`` does: its job's ``up == 0`` alert with
    only ``nodename`` was read as a job's alert about no one target."""
    labels = {"alertname": "TargetDown", "job": "node-exporter", label: "n1"}
    assert classify(labels) is FaultKind.NODE_DOWN


@pytest.mark.parametrize(
    ("metric", "deviation", "kind"),
    [
        ("inference_latency_p95", "up", FaultKind.SERVICE_DEGRADED),
        ("gpuwarden_inference_request_duration_seconds", "up", FaultKind.SERVICE_DEGRADED),
        ("gpuwarden_inference_time_to_first_token_seconds", "up", FaultKind.SERVICE_DEGRADED),
        ("inference_error_ratio", "up", FaultKind.SERVICE_DEGRADED),
        ("inference_latency_p95", "down", FaultKind.UNKNOWN),
        ("inference_error_ratio", "down", FaultKind.UNKNOWN),
        ("gpuwarden_training_step_duration_seconds", "down", FaultKind.UNKNOWN),
    ],
    ids=[
        "latency-rose",
        "request-duration",
        "ttft",
        "error-ratio-rose",
        "latency-fell",
        "errors-fell",
        "step-fell",
    ],
)
def test_an_anomaly_on_a_request_latency_or_error_share_that_rose_is_a_service_degraded(
    metric: str, deviation: str, kind: FaultKind
) -> None:
    # anomaly run scoring an inference server's P95 (8x up under a straggling GPU) raised GpuwardenAnomaly
    # on it, and serve opened "node 127.0.0.1 GpuwardenAnomaly on inference_latency_p95", unknown, P3.
    for model in ("adaptive", "level_shift"):
        labels = {"alertname": "GpuwardenAnomaly", "model": model, "for": metric, "deviation": deviation}
        assert classify(labels) is kind


@pytest.mark.parametrize(
    ("metric", "deviation", "kind"),
    [
        ("gpuwarden_training_step_duration_seconds", "up", FaultKind.STRAGGLER),
        ("gpuwarden_training_last_step_duration_seconds", "up", FaultKind.STRAGGLER),
        ("train_step_time_seconds", "up", FaultKind.STRAGGLER),
        ("gpuwarden_training_step_duration_seconds", "down", FaultKind.UNKNOWN),
        ("train_step_time_seconds", "down", FaultKind.UNKNOWN),
    ],
    ids=[
        "step-duration-rose",
        "last-step-duration-rose",
        "step-time-rose",
        "step-duration-fell",
        "step-time-fell",
    ],
)
def test_an_anomaly_on_a_training_step_time_that_rose_is_a_straggler(
    metric: str, deviation: str, kind: FaultKind
) -> None:
    # anomaly run's level-shift detector scores the training exporter's step duration; its shift up raised
    # GpuwardenAnomaly{for="gpuwarden_training_step_duration_seconds"}, which serve opened as unknown, P3.
    for model in ("adaptive", "level_shift"):
        labels = {"alertname": "GpuwardenAnomaly", "model": model, "for": metric, "deviation": deviation}
        assert classify(labels) is kind
