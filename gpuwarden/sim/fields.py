"""NVML field values (``nvmlDeviceGetFieldValues``) and GPM metrics as the simulator computes them."""

from __future__ import annotations

import ctypes
import functools
import struct
from collections.abc import Callable, Sequence
from operator import itemgetter

import pynvml

from gpuwarden.sim.dynamics import REASON_HW_POWER_BRAKE, REASON_HW_THERMAL, REASON_SW_THERMAL
from gpuwarden.sim.topology import GpuState, SimGpu

_UINT = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
_ULL = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG

Getter = Callable[[SimGpu], int]
_raw_setattr = ctypes.Structure.__setattr__


def _link_total(counter: int) -> Getter:
    pick = itemgetter(counter)  # map() in C: a generator here cost a Python frame step per link and field
    return lambda g: sum(map(pick, g.nvlink_errors))


def _state(name: str) -> Getter:
    return lambda g: int(getattr(g.state, name))


# field id -> (value type, getter). Anything absent comes back with nvmlReturn = NOT_SUPPORTED.
FIELDS: dict[int, tuple[int, Getter]] = {
    pynvml.NVML_FI_DEV_ECC_CURRENT: (_UINT, lambda g: 1),
    pynvml.NVML_FI_DEV_ECC_PENDING: (_UINT, lambda g: 1),
    pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL: (_ULL, _state("ecc_sbe_vol")),
    pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL: (_ULL, _state("ecc_dbe_vol")),
    pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL: (_ULL, _state("ecc_sbe_agg")),
    pynvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL: (_ULL, _state("ecc_dbe_agg")),
    pynvml.NVML_FI_DEV_MEMORY_TEMP: (_UINT, _state("mem_temp_c")),
    pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: (_ULL, _state("energy_mj")),
    pynvml.NVML_FI_DEV_POWER_INSTANT: (_UINT, _state("power_mw")),
    pynvml.NVML_FI_DEV_PCIE_REPLAY_COUNTER: (_ULL, _state("pcie_replay")),
    pynvml.NVML_FI_DEV_PCIE_COUNT_CORRECTABLE_ERRORS: (_UINT, _state("pcie_replay")),
    pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT: (_UINT, lambda g: len(g.nvlink_up)),
    pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL: (_ULL, _link_total(0)),
    pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL: (_ULL, _link_total(1)),
    pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL: (_ULL, _link_total(2)),
    pynvml.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL: (_ULL, _link_total(3)),
    pynvml.NVML_FI_DEV_NVLINK_ECC_DATA_ERROR_COUNT_TOTAL: (_ULL, _link_total(4)),
    pynvml.NVML_FI_DEV_NVLINK_BANDWIDTH_C0_TOTAL: (_ULL, _state("nvlink_tx_kib")),
    pynvml.NVML_FI_DEV_NVLINK_BANDWIDTH_C1_TOTAL: (_ULL, _state("nvlink_rx_kib")),
    pynvml.NVML_FI_DEV_REMAPPED_COR: (_UINT, _state("remap_corr")),
    pynvml.NVML_FI_DEV_REMAPPED_UNC: (_UINT, _state("remap_unc")),
    pynvml.NVML_FI_DEV_REMAPPED_PENDING: (_UINT, _state("remap_pending")),
    pynvml.NVML_FI_DEV_REMAPPED_FAILURE: (_UINT, _state("remap_failure")),
    pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION: (_UINT, _state("recovery_action")),
    # Throttle durations in ns, as NVML reports them (NVML_FI_DEV_PERF_POLICY_POWER is the same id, 74).
    pynvml.NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_POWER_CAP: (_ULL, _state("violation_power_ns")),
    pynvml.NVML_FI_DEV_PERF_POLICY_THERMAL: (_ULL, _state("violation_thermal_ns")),
    pynvml.NVML_FI_DEV_PERF_POLICY_SYNC_BOOST: (_ULL, lambda g: 0),  # no sync-boost groups here
    pynvml.NVML_FI_DEV_PERF_POLICY_BOARD_LIMIT: (_ULL, lambda g: 0),
    pynvml.NVML_FI_DEV_PERF_POLICY_LOW_UTILIZATION: (_ULL, _state("violation_low_util_ns")),
    pynvml.NVML_FI_DEV_PERF_POLICY_RELIABILITY: (_ULL, lambda g: 0),
    pynvml.NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN: (
        _ULL,
        lambda g: g.state.violation_thermal_ns if g.state.clock_reasons & REASON_SW_THERMAL else 0,
    ),
    pynvml.NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN: (
        _ULL,
        lambda g: g.state.violation_thermal_ns if g.state.clock_reasons & REASON_HW_THERMAL else 0,
    ),
    pynvml.NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN: (
        _ULL,
        lambda g: g.state.violation_power_ns if g.state.clock_reasons & REASON_HW_POWER_BRAKE else 0,
    ),
}

# NVLink throughput counters (cumulative KiB): ``scopeId`` is a link id, or UINT_MAX for the sum of all
# links (nvml.h). The simulator spreads a GPU's traffic evenly over its active links.
ALL_LINKS = 0xFFFFFFFF
ScopedGetter = Callable[[SimGpu, int], int | None]


def _throughput(name: str, overhead: float = 1.0) -> ScopedGetter:
    def get(g: SimGpu, scope: int) -> int | None:
        total = float(getattr(g.state, name)) * overhead
        if scope == ALL_LINKS:
            return int(total)
        if not 0 <= scope < len(g.nvlink_up):
            return None  # no such link: InvalidArgument
        active = sum(g.nvlink_up)
        return int(total / active) if active and g.nvlink_up[scope] else 0

    return get


SCOPED_FIELDS: dict[int, ScopedGetter] = {
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: _throughput("nvlink_tx_kib"),
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: _throughput("nvlink_rx_kib"),
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_TX: _throughput("nvlink_tx_kib", 1.06),
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_RX: _throughput("nvlink_rx_kib", 1.06),
}

# Per-link NVLink error fields: (first id of links 0-5, first id of links 6-11 or None, counter index).
_PER_LINK = (
    (pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_L0, "NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_L6", 2),
    (pynvml.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L0, "NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L6", 3),
    (pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_L0, "NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_L6", 0),
    (pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_L0, "NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_L6", 1),
)


def _per_link(link: int, counter: int) -> Getter:
    return lambda g: g.nvlink_errors[link][counter] if link < len(g.nvlink_errors) else 0


for _first, _second_name, _counter in _PER_LINK:
    for _link in range(6):
        FIELDS[_first + _link] = (_ULL, _per_link(_link, _counter))
    _second = getattr(pynvml, _second_name, None)
    if _second is not None:
        for _link in range(6, 12):
            FIELDS[_second + _link - 6] = (_ULL, _per_link(_link, _counter))

# Retired-page fields exist only before Ampere.
RETIRED_FIELDS = frozenset(
    {pynvml.NVML_FI_DEV_RETIRED_SBE, pynvml.NVML_FI_DEV_RETIRED_DBE, pynvml.NVML_FI_DEV_RETIRED_PENDING}
)


_FV = pynvml.c_nvmlFieldValue_t
_FV_SIZE = ctypes.sizeof(_FV)
_TIMESTAMP = struct.Struct("=" + {4: "i", 8: "q"}[_FV.timestamp.size])  # a C long
_RESULT = struct.Struct("=II")  # valueType, nvmlReturn: adjacent
_UINT_VALUE = struct.Struct("=I")
_ULL_VALUE = struct.Struct("=Q")
_TIMESTAMP_AT = _FV.timestamp.offset
_RESULT_AT = _FV.valueType.offset
_VALUE_AT = _FV.value.offset
_UINT_MASK = 0xFFFFFFFF  # ctypes wraps an assigned int to the field's width; struct would refuse it
_ULL_MASK = 0xFFFFFFFFFFFFFFFF
# One slot's work on each call: (slot offset, scope id, scoped getter or None, value format, getter or None).
_Write = tuple[int, int, ScopedGetter | None, struct.Struct | None, Getter | None]


@functools.lru_cache(maxsize=64)
def _field_plan(
    field_ids: tuple[int | tuple[int, int], ...], retired_pages: bool
) -> tuple[bytes, list[_Write], list[tuple[int | None, bytes]]]:
    """What never changes for one list of field ids: the array with ids, scopes, types and NOT_SUPPORTED
    answers already in place (built as a plain fill would), the slots whose value depends on the GPU, and a
    one-entry cache of (timestamp, the array stamped with it) that ``fill_field_values`` keeps."""
    values = (_FV * len(field_ids))()
    put = _raw_setattr  # pynvml's printable __setattr__ costs more than the value itself
    writes: list[_Write] = []
    for i, requested in enumerate(field_ids):
        slot = values[i]
        scope_id = 0
        if isinstance(requested, tuple | list):
            field_id, scope_id = requested
            put(slot, "scopeId", scope_id)
        else:
            field_id = requested
        put(slot, "fieldId", field_id)
        scoped = SCOPED_FIELDS.get(field_id)
        entry = FIELDS.get(field_id)
        if scoped is not None:
            writes.append((i * _FV_SIZE, scope_id, scoped, None, None))
        elif entry is None:
            if field_id in RETIRED_FIELDS and retired_pages:
                put(slot, "valueType", _UINT)
            else:
                put(slot, "nvmlReturn", pynvml.NVML_ERROR_NOT_SUPPORTED)
        else:
            value_type, getter = entry
            put(slot, "valueType", value_type)
            writes.append((i * _FV_SIZE, 0, None, _UINT_VALUE if value_type == _UINT else _ULL_VALUE, getter))
    return bytes(values), writes, [(None, b"")]


def _plan_key(field_ids: Sequence[int | tuple[int, int]]) -> tuple[int | tuple[int, int], ...]:
    key = tuple(field_ids)
    try:
        hash(key)
    except TypeError:  # ``[field id, scope id]`` lists
        key = tuple(tuple(r) if isinstance(r, list) else r for r in key)
    return key


def fill_field_values(gpu: SimGpu, field_ids: Sequence[int | tuple[int, int]], now_us: int) -> object:
    """Build pynvml's ``c_nvmlFieldValue_t`` array the way ``nvmlDeviceGetFieldValues`` returns it.

    The parts that depend only on the ids come from a cached template; each call copies it, stamps the time
    and packs the GPU's values straight into the array's memory (no ctypes attribute access per field)."""
    template, writes, stamped = _field_plan(_plan_key(field_ids), gpu.model.retired_pages)
    count = len(template) // _FV_SIZE
    # Every GPU of a node, and every node, is read at the same step: the template is stamped once per step,
    # not once per GPU. The cache is one tuple, replaced whole, so a reader on another thread never sees a
    # stamp paired with another time's bytes.
    at_us, stamped_bytes = stamped[0]
    if at_us != now_us:
        values = (_FV * count).from_buffer_copy(template)
        stamp = _TIMESTAMP.pack_into
        for at in range(_TIMESTAMP_AT, len(template), _FV_SIZE):
            stamp(values, at, now_us)
        stamped[0] = (now_us, bytes(values))
    else:
        values = (_FV * count).from_buffer_copy(stamped_bytes)
    links = gpu.nvlink_up
    for at, scope_id, scoped, value_format, getter in writes:
        if getter is not None and value_format is not None:
            mask = _UINT_MASK if value_format is _UINT_VALUE else _ULL_MASK
            value_format.pack_into(values, at + _VALUE_AT, getter(gpu) & mask)
            continue
        got = scoped(gpu, scope_id) if scoped is not None and links else None
        if got is None:
            bad = pynvml.NVML_ERROR_INVALID_ARGUMENT if links else pynvml.NVML_ERROR_NOT_SUPPORTED
            _RESULT.pack_into(values, at + _RESULT_AT, 0, bad)
        else:
            _RESULT.pack_into(values, at + _RESULT_AT, _ULL, 0)
            _ULL_VALUE.pack_into(values, at + _VALUE_AT, got & _ULL_MASK)
    return values


# GPM metric id -> which integral of GpuState it averages (percent of the interval).
GPM_METRICS: dict[int, tuple[str, str]] = {
    pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL: ("gr_active_s", "gr_active"),
    pynvml.NVML_GPM_METRIC_SM_UTIL: ("sm_active_s", "sm_active"),
    pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: ("sm_active_s", "sm_active"),
    pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: ("tensor_active_s", "tensor_active"),
    pynvml.NVML_GPM_METRIC_HMMA_TENSOR_UTIL: ("tensor_active_s", "tensor_active"),
    pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL: ("dram_active_s", "dram_active"),
}
# GPM metric id -> which byte counter of GpuState it turns into MiB/s, and the KB/s gauge behind it.
GPM_RATES: dict[int, tuple[str, str]] = {
    pynvml.NVML_GPM_METRIC_PCIE_TX_PER_SEC: ("pcie_tx_bytes", "pcie_tx_kbs"),
    pynvml.NVML_GPM_METRIC_PCIE_RX_PER_SEC: ("pcie_rx_bytes", "pcie_rx_kbs"),
}
_MIB = 1024.0 * 1024.0
_OCCUPANCY_SHARE = 0.55  # warps resident vs theoretical, relative to SM activity


def gpm_snapshot(state: GpuState) -> dict[str, float]:
    """The integrals a GPM sample captures."""
    return {
        "gr_active_s": state.gr_active_s,
        "sm_active_s": state.sm_active_s,
        "tensor_active_s": state.tensor_active_s,
        "dram_active_s": state.dram_active_s,
        "pcie_tx_bytes": state.pcie_tx_bytes,
        "pcie_rx_bytes": state.pcie_rx_bytes,
    }


def gpm_value(
    metric_id: int,
    first: tuple[float, dict[str, float]],
    second: tuple[float, dict[str, float]],
    state: GpuState,
    share: float,
) -> float | None:
    """Value of one GPM metric between two samples (percent, or MiB/s for PCIe); ``None`` if unsupported.

    When both samples share a timestamp (a fake clock that did not move) the current values stand in.
    """
    dt = second[0] - first[0]
    rate = GPM_RATES.get(metric_id)
    if rate is not None:
        counter, gauge_kbs = rate
        per_second = (
            (second[1][counter] - first[1][counter]) / dt if dt > 0 else getattr(state, gauge_kbs) * 1e3
        )
        # Conditional clamps, not min()/max() (which parse keyword arguments on every call in Python 3.11):
        # the same operand for every input, NaN included (see gpuwarden.sim.dynamics).
        return (per_second if per_second > 0.0 else 0.0) * share / _MIB
    names = GPM_METRICS.get(metric_id)
    if names is None:
        return None
    integral, gauge = names
    ratio = (second[1][integral] - first[1][integral]) / dt if dt > 0 else float(getattr(state, gauge))
    if metric_id == pynvml.NVML_GPM_METRIC_SM_OCCUPANCY:
        ratio *= _OCCUPANCY_SHARE
    percent = abs(ratio) * 100.0 * share
    percent = percent if percent < 100.0 else 100.0
    return percent if percent > 0.0 else 0.0
