"""Values that mean "not available": read as missing data (NaN), not as samples.

NVML marks an unsigned reading it does not have with every bit set (``NVML_VALUE_NOT_AVAILABLE``, -1 cast:
0xFFFFFFFF for an ``unsigned int``, 0xFFFFFFFFFFFFFFFF for an ``unsigned long long``), and DCGM marks a field
it has no value for with its blank values (``dcgm_structs.h``: ``DCGM_INT32_BLANK`` 0x7ffffff0,
``DCGM_INT64_BLANK`` 0x7ffffffffffffff0, ``DCGM_FP64_BLANK`` 2**47, with ``NOT_FOUND``, ``NOT_SUPPORTED`` and
``NOT_PERMISSIONED`` just above each; the header keeps the 16 values from each blank up for such codes).
Exporters have served both as numbers: dcgm-exporter's ``DCGM_FI_DEV_GPU_UTIL`` read 4294967295 now and then
(NVIDIA/DCGM issue 199), its NVLink fields read 9223372036854775794 until it filtered blanks out
(gpu-monitoring-tools PR 92), and a Slurm job exporter reading DCGM passed 140737488355328.0 on
(guilbaults/slurm-job-exporter issue 30). Through Prometheus they arrive as ordinary samples, and one such
sample on a GPU's metrics, scored, kept adaptive alerts open for an hour and a half (issue 4); as throttle
reasons it reads as every reason bit set.

An infinite sample (Prometheus answers ``+Inf``/``-Inf`` for an exporter's ``float('inf')``, a division by
0 in a query, or ``histogram_quantile`` past its highest finite bucket) is no reading either: it is read and
counted the same way, where before it was dropped by each detector without a word.

The values are compared exactly, as the float64 a Prometheus text or JSON answer parses to (every int64 blank
is 2**63 then). A real reading equal to one of them (a counter passing exactly 4294967295) becomes one missing
sample: a gap the detectors already handle, which costs far less than a sample 10^9 bands out.
"""

from __future__ import annotations

import numpy as np

from anomaly.thresholds import FloatArray

_DCGM_INT32_BLANK = 0x7FFFFFF0
_DCGM_INT64_BLANK = 0x7FFFFFFFFFFFFFF0
_DCGM_FP64_BLANK = 2.0**47
_DCGM_BLANK_SPAN = 16  # a blank and the codes above it (not found, not supported, not permissioned, ...)

NOT_AVAILABLE: frozenset[float] = frozenset(
    {
        float(0xFFFFFFFF),
        float(0xFFFFFFFFFFFFFFFF),
        *(float(_DCGM_INT32_BLANK + i) for i in range(_DCGM_BLANK_SPAN)),
        *(float(_DCGM_INT64_BLANK + i) for i in range(_DCGM_BLANK_SPAN)),
        *(_DCGM_FP64_BLANK + i for i in range(_DCGM_BLANK_SPAN)),
    }
)
_SORTED = np.array(sorted(NOT_AVAILABLE))
_SMALLEST = float(_SORTED[0])


def blank_not_available(values: FloatArray) -> tuple[FloatArray, int]:
    """``values`` with every not-available or infinite value replaced by NaN (a copy when any was), and how
    many were."""
    # Nearly every tick has none: one comparison finds the rare values that large before the exact test.
    large = (values >= _SMALLEST) | (values == -np.inf)
    if not large.any():
        return values, 0
    hit = np.zeros(values.shape, np.bool_)
    hit[large] = np.isin(values[large], _SORTED) | np.isinf(values[large])
    count = int(hit.sum())
    if count == 0:
        return values, 0
    out = values.copy()
    out[hit] = np.nan
    return out, count
