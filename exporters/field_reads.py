"""The collector's batched counters: one ``nvmlDeviceGetFieldValues`` call per GPU, and what an older driver
answers for field ids it does not know.

NVML documents ``NVML_ERROR_INVALID_ARGUMENT`` for the whole call only for an invalid device or a NULL array,
and a per-field ``nvmlReturn`` for each field it could not read; an older driver answers a field id newer than
itself in that per-field ``nvmlReturn`` with ``InvalidArgument``. Asked again at every collection, such a
field was an error counted every few seconds for ever; and a driver or shim that refused the whole call for
one unknown id lost every counter of the GPU (ECC, row remaps, NVLink errors, violations, energy). A field
answered ``InvalidArgument`` is left out of that GPU's later calls (counted once, said once); a whole call
answered ``InvalidArgument`` is asked again field by field, once, to find the ids the driver refuses. When
every field alone is refused too, the device is the problem, not the ids, and nothing is left out.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import pynvml

from exporters import fields as fams
from exporters.collected import FamilyBuilder, Gpu
from exporters.field_values import field_answers
from exporters.nvml_calls import (
    INVALID_ARGUMENT,
    LOST_CODES,
    NON_FINITE,
    NOT_SUPPORTED,
    GpuLost,
    NvmlCalls,
    error_name,
)

CALL = "nvmlDeviceGetFieldValues"
FieldId = int | tuple[int, int]  # a field id, or (field id, scope id) for a per-link one
_KIB = 1024
_DIRECTIONS = tuple(direction for _, _, direction in fams.NVLINK_THROUGHPUT_FIELDS)
# (field id, NVML_PERF_POLICY_*, family) read through nvmlDeviceGetViolationStatus when the field is missing.
_VIOLATION_FALLBACK = ((74, 0, fams.POWER_VIOLATION), (75, 1, fams.THERMAL_VIOLATION))
# What every field id of a call is read as: (field id, family, scale, whether it carries the DCGM labels),
# or None for an NVLink throughput counter (paired by direction, past the families).
_Entry = tuple[int, fams.Family, float, bool] | None
_ALL: tuple[tuple[FieldId, _Entry, str], ...] = (
    *((fid, (fid, family, scale, family.dcgm), family.name) for fid, family, scale in fams.FIELD_FAMILIES),
    *(
        ((fid, scope), None, f"NVLINK_THROUGHPUT_DATA_{d.upper()}")
        for fid, scope, d in fams.NVLINK_THROUGHPUT_FIELDS
    ),
)


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """The field ids one GPU is asked for, and what each answer (by position) is read as."""

    ids: list[FieldId]
    entries: list[_Entry]
    names: list[str]  # the ``function`` label of a field's errors: nvmlDeviceGetFieldValues(NAME)


@functools.cache
def field_plan(refused: frozenset[FieldId]) -> FieldPlan:
    """The plan without the ``refused`` field ids (one plan per distinct set, shared by the GPUs)."""
    kept = [row for row in _ALL if row[0] not in refused]
    return FieldPlan([fid for fid, _, _ in kept], [e for _, e, _ in kept], [n for _, _, n in kept])


class FieldReads(NvmlCalls):
    """``nvmlDeviceGetFieldValues`` per GPU, with the violations' and NVLink bandwidth's derived series."""

    _min_rate_interval: float

    def _field_values(self, gpu: Gpu, out: FamilyBuilder, labels: dict[str, str]) -> None:
        plan = field_plan(gpu.refused_fields)
        values, code = self._attempt(CALL, CALL, gpu.handle, plan.ids)
        if values is None and code == INVALID_ARGUMENT and self._refuse_unknown(gpu, plan):
            plan = field_plan(gpu.refused_fields)
            values = self._call(CALL, gpu.handle, plan.ids)
        if values is None:
            if CALL in self._missing:  # a driver without the call: the old one, then
                self._violations(gpu, out, labels, set())
            return
        throughput: list[tuple[float, int]] = []
        got: set[int] = set()
        isfinite, add, own, seen = math.isfinite, out.add, gpu.own, got.add  # locals: ~32 rounds per GPU
        # Each answer beside its plan entry; the NVLink throughput answers have no entry.
        for i, ((ret, value, at_us), entry) in enumerate(
            zip(field_answers(values), plan.entries, strict=False)
        ):
            if ret:
                if ret == NOT_SUPPORTED:
                    continue
                if ret in LOST_CODES:
                    raise GpuLost(CALL, ret)
                if ret == INVALID_ARGUMENT:  # a field id this driver does not know: not asked again
                    gpu.refused_fields = gpu.refused_fields | {plan.ids[i]}
                self._count_error(f"{CALL}({plan.names[i]})", error_name(ret))
                continue
            if not isfinite(value):  # a double field: NaN or Inf would poison every sum and avg
                self._count_error(f"{CALL}({plan.names[i]})", NON_FINITE)
                continue
            if entry is not None:
                fid, family, scale, dcgm = entry
                seen(fid)
                add(family, labels if dcgm else own, value * scale)
            else:
                throughput.append((value, at_us))
        if len(throughput) == len(fams.NVLINK_THROUGHPUT_FIELDS):
            self._nvlink(gpu, out, labels, throughput)
        self._violations(gpu, out, labels, got)

    def _refuse_unknown(self, gpu: Gpu, plan: FieldPlan) -> bool:
        """The whole call answered InvalidArgument: ask for each field alone, once per GPU, and leave out the
        ones the driver refuses. False (nothing left out) when none is refused, or every one is (the device,
        not the field ids, is what NVML refuses)."""
        if gpu.fields_probed:
            return False
        gpu.fields_probed = True
        fn, refused = self._nvml.nvmlDeviceGetFieldValues, []
        for fid in plan.ids:
            ret: int | None
            try:
                ret = field_answers(fn(gpu.handle, [fid]))[0][0]
            except pynvml.NVMLError as exc:
                ret = getattr(exc, "value", None)
                if ret in LOST_CODES:
                    raise GpuLost(CALL, int(ret or 0)) from exc
            if ret == INVALID_ARGUMENT:
                refused.append(fid)
        if not refused or len(refused) == len(plan.ids):
            return False
        gpu.refused_fields = gpu.refused_fields | frozenset(refused)
        for fid in refused:
            self._count_error(f"{CALL}({plan.names[plan.ids.index(fid)]})", error_name(INVALID_ARGUMENT))
        return True

    def _violations(self, gpu: Gpu, out: FamilyBuilder, labels: dict[str, str], got: set[int]) -> None:
        """The power and thermal violations the field values did not give, from nvmlDeviceGetViolationStatus:
        drivers without the perf-policy fields, or without nvmlDeviceGetFieldValues, still answer it."""
        for fid, policy, family in _VIOLATION_FALLBACK:
            if fid not in got:
                status = self._call("nvmlDeviceGetViolationStatus", gpu.handle, policy)
                if status is not None:
                    out.add(family, labels, float(status.violationTime))  # ns, as the field

    def _nvlink(
        self, gpu: Gpu, out: FamilyBuilder, labels: dict[str, str], kib: list[tuple[float, int]]
    ) -> None:
        """NVLink byte counters, and DCGM's bandwidth: the rate between two reads of them, as DCGM does.

        DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL is not a counter in DCGM, whatever dcgm-exporter's CSV says: DCGM
        differences NVML's cumulative KiB and divides by the time between reads (its unit is "MB/s"; measured
        against known copies it is MiB/s). The first read, and a read after a counter reset, have no rate.
        """
        for labels_of, (value, _) in zip(gpu.label_sets(gpu.own, "direction", _DIRECTIONS), kib, strict=True):
            out.add(fams.NVLINK_DATA_BYTES, labels_of, value * _KIB)
        total, at_us = sum(v for v, _ in kib), max(t for _, t in kib)
        prev = gpu.nvlink_prev
        if prev is not None and 0 <= (at_us - prev[1]) / 1e6 < self._min_rate_interval and total >= prev[0]:
            return  # too soon after the last read for a rate (see exporters.gpm): keep the older read
        gpu.nvlink_prev = (total, at_us)
        if prev is not None and at_us > prev[1] and total >= prev[0]:
            out.add(fams.NVLINK_BANDWIDTH_TOTAL, labels, (total - prev[0]) / ((at_us - prev[1]) / 1e6) / _KIB)
