"""Which configured queries each built-in detector reads, and which of them a configuration lacks.

Detectors find their inputs by query name (``view.latest[name]``); a detector whose query is not configured
is not an error to it, it just never finds anything. ``missing_queries`` says so at start instead
(``config validate`` and ``anomaly run`` warn). Kept free of numpy so that ``config validate`` stays light;
the detector modules take these names from here.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpuwarden.config_anomaly import AnomalyConfig

TEMP = "DCGM_FI_DEV_GPU_TEMP"
POWER = "DCGM_FI_DEV_POWER_USAGE"
XID_COUNTER = "gpuwarden_xid_errors_total"
XID_GAUGE = "DCGM_FI_DEV_XID_ERRORS"
GPU_UP = "gpuwarden_gpu_up"
THROTTLE_REASONS = "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"  # GpuClockSlowdown: the slowdown bits
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
DBE = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
SBE = "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"
ROW_REMAP_PENDING = "DCGM_FI_DEV_ROW_REMAP_PENDING"
ROW_REMAP_FAILURE = "DCGM_FI_DEV_ROW_REMAP_FAILURE"
RETIRED_PENDING = "DCGM_FI_DEV_RETIRED_PENDING"  # GPUs before Ampere retire pages instead of remapping rows
RECOVERY_ACTION = "gpuwarden_gpu_recovery_action"
EXPORTER_STALE = "gpuwarden_exporter_stale"
NVLINK_RECOVERY = "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL"
NVLINK_STATUS = "DCGM_FI_DEV_NVLINK_LINK_STATUS"  # per link (label link): 1 active, 0 inactive
NVLINK_ERRORS = (
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    NVLINK_RECOVERY,
)
SM_ACTIVE = "DCGM_FI_PROF_SM_ACTIVE"
# What each signature rule reads (its alert in the comment); each entry: names of which any one will do.
SIGNATURE_NEEDS: tuple[tuple[str, ...], ...] = (
    (GPU_UP,),  # GpuLost
    (XID_GAUGE, XID_COUNTER),  # GpuXidError: the catalog lookup
    (THROTTLE_REASONS,),  # GpuClockSlowdown (the P2 throttling incident)
    (DBE,),  # GpuDoubleBitEcc
    (SBE,),  # GpuSingleBitEccStorm
    (ROW_REMAP_PENDING, RETIRED_PENDING),  # GpuRowRemapPending / GpuRetirePending (older GPUs)
    (ROW_REMAP_FAILURE,),  # GpuRowRemapFailure
    (RECOVERY_ACTION,),  # GpuRecoveryActionPending
    (EXPORTER_STALE,),  # GpuExporterStale
    *((name,) for name in NVLINK_ERRORS),  # GpuNvlinkErrors
    (NVLINK_STATUS,),  # GpuNvlinkDown
    (GPU_UTIL,),  # GpuHung: utilisation pinned ...
    (SM_ACTIVE,),  # ... while the SMs idle
)


NEEDS_SETTINGS = {
    "presence": ("presence_queries",),
    "fleet": ("fleet_queries", "fleet_load_query"),
    "multivariate": ("multivariate_queries",),
}
"""Per detector, the settings of ``anomaly`` besides ``queries`` that name the queries it reads."""


def _needs(cfg: AnomalyConfig) -> dict[str, list[tuple[str, ...]]]:
    """Per detector, its inputs; each input is a tuple of names of which any one will do."""
    fleet: list[tuple[str, ...]] = [(q,) for q in cfg.fleet_queries]
    if cfg.fleet_load_query:
        fleet.append((cfg.fleet_load_query,))
    return {
        "multivariate": [(q,) for q in cfg.multivariate_queries],  # a GPU is scored only with every column
        "thermal": [(TEMP,), (POWER,)],
        "fleet": fleet,
        "signatures": list(SIGNATURE_NEEDS),
    }


def missing_queries(cfg: AnomalyConfig) -> dict[str, list[str]]:
    """Configured detectors that lack queries they read: detector -> the missing names (``a|b``: either)."""
    names = {q.name for q in cfg.queries}
    needs = _needs(cfg)
    out: dict[str, list[str]] = {}
    for detector in dict.fromkeys(cfg.detectors):
        missing = ["|".join(alts) for alts in needs.get(detector, []) if not names.intersection(alts)]
        if detector == "presence" and not any(
            fnmatch.fnmatchcase(n, p) for n in names for p in cfg.presence_queries
        ):
            missing = [" or ".join(cfg.presence_queries) or "(presence_queries is empty)"]
        if missing:
            out[detector] = list(dict.fromkeys(missing))
    return out
