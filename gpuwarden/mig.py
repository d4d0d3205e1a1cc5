"""MIG instance series: which DCGM fields are a MIG instance's own, which it repeats from its GPU, and how
the readers of those series keep one series per GPU of a repeated (device-level) field.

dcgm-exporter (and gpuwarden's exporter) serve each MIG instance's series with ``GPU_I_ID``/``GPU_I_PROFILE``
labels and the pod that holds the instance. DCGM answers a device-level field (temperature, power, clocks,
ECC, XID, ...) there with the whole GPU's value, so a MIG GPU's temperature is read once per instance, plus
once under the whole GPU's labels with ``--devices g+i`` (gpuwarden's exporter serves both). Framebuffer and
profiling fields (``DCGM_FI_DEV_FB_*``, ``DCGM_FI_PROF_*``) are the instance's own. The exporter's table
(``exporters.fields``) and the anomaly service and chart queries all read these lists from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

INSTANCE_ID = "GPU_I_ID"
INSTANCE_PROFILE = "GPU_I_PROFILE"
# Labels that say which instance, or which workload holds it: they differ between a GPU's instances.
PER_INSTANCE_LABELS = frozenset(
    {INSTANCE_ID, INSTANCE_PROFILE, "namespace", "pod", "container", "pod_uid", "slurm_job"}
)
_WORKLOAD_LABELS = PER_INSTANCE_LABELS - {INSTANCE_ID, INSTANCE_PROFILE}
INSTANCE_OWN_PREFIXES = ("DCGM_FI_DEV_FB_", "DCGM_FI_PROF_")
# "Not supported for MIG configurations" (dcgm-exporter issues #430, #50): no series of a MIG GPU has them.
MIG_UNSUPPORTED = frozenset(
    {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_DEC_UTIL"}
)


def instance_own(metric: str) -> bool:
    """Whether a MIG instance's series of ``metric`` are its own values (framebuffer, profiling)."""
    return metric.startswith(INSTANCE_OWN_PREFIXES)


def device_level(metric: str) -> bool:
    """Whether a MIG instance's series of ``metric`` repeat its GPU's value (a DCGM field, neither the
    instance's own nor unsupported on MIG)."""
    return metric.startswith("DCGM_FI_") and not instance_own(metric) and metric not in MIG_UNSUPPORTED


def _same_gpu(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """What a series is about once the instance and its workload are left out (the GPU, and any other
    label such as an NVLink's)."""
    return tuple((k, v) for k, v in sorted(labels.items()) if k not in PER_INSTANCE_LABELS)


def _workload(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in sorted(labels.items()) if k in _WORKLOAD_LABELS)


def _instance_order(labels: Mapping[str, str]) -> tuple[int, str]:
    text = labels.get(INSTANCE_ID, "")
    return (int(text), text) if text.isdigit() else (1 << 62, text)


def one_per_gpu(labels: Sequence[Mapping[str, str]]) -> tuple[list[int], list[Mapping[str, str]]] | None:
    """The rows of a device-level metric to keep, one per GPU, and their labels; None when no row is a MIG
    instance's (keep them all, as they are).

    A GPU's whole-GPU row is kept as it is and its instances' rows dropped (identical values); a GPU
    served by its instances only (dcgm-exporter's default) keeps its lowest instance's row, without
    ``GPU_I_ID``/``GPU_I_PROFILE``, and without its workload labels (pod, job) unless every instance is
    that one workload's, so the series names the GPU, the same one whichever instances exist.
    """
    instances = [i for i, lab in enumerate(labels) if INSTANCE_ID in lab]
    if not instances:
        return None
    groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for i in instances:
        groups.setdefault(_same_gpu(labels[i]), []).append(i)
    uuids = {labels[i].get("UUID") for i in instances}
    for lab in labels:
        if INSTANCE_ID not in lab and lab.get("UUID") in uuids:
            groups.pop(_same_gpu(lab), None)  # the GPU has its whole-GPU row: its instances' rows go
    chosen: dict[int, Mapping[str, str]] = {}
    for rows in groups.values():
        first = min(rows, key=lambda r: _instance_order(labels[r]))
        one = len({_workload(labels[r]) for r in rows}) == 1  # every slice is one workload's: the GPU is too
        dropped_labels = (INSTANCE_ID, INSTANCE_PROFILE) if one else PER_INSTANCE_LABELS
        chosen[first] = {k: v for k, v in labels[first].items() if k not in dropped_labels}
    dropped = set(instances) - set(chosen)
    kept = [i for i in range(len(labels)) if i not in dropped]
    return kept, [chosen.get(i, labels[i]) for i in kept]
