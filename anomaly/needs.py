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


def _needs(cfg: AnomalyConfig) -> dict[str, list[tuple[str, ...]]]:
    """Per detector, its inputs; each input is a tuple of names of which any one will do."""
    fleet: list[tuple[str, ...]] = [(q,) for q in cfg.fleet_queries]
    if cfg.fleet_load_query:
        fleet.append((cfg.fleet_load_query,))
    return {
        "multivariate": [(q,) for q in cfg.multivariate_queries],  # a GPU is scored only with every column
        "thermal": [(TEMP,), (POWER,)],
        "fleet": fleet,
        # GpuLost; the XID catalog lookup; GpuClockSlowdown (the P2 throttling incident)
        "signatures": [(GPU_UP,), (XID_GAUGE, XID_COUNTER), (THROTTLE_REASONS,)],
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
