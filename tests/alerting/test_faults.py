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
    ],
    ids=lambda v: (
        "-".join(v.get(k, "") for k in ("alertname", "xid", "model", "for")) if isinstance(v, dict) else ""
    ),
)
def test_alert_names_and_xid_codes_map_to_fault_kinds(labels: dict[str, str], kind: FaultKind) -> None:
    assert classify(labels) is kind


def test_clocks_reduced_is_throttling() -> None:
    from alerting.faults import classify  # noqa: PLC0415
    from gpuwarden.model import FaultKind  # noqa: PLC0415

    assert classify({"alertname": "GpuClocksReduced"}) is FaultKind.POWER_BRAKE
