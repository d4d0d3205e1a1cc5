"""field_answers: an nvmlDeviceGetFieldValues answer read in one pass gives what its members hold."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pynvml

from exporters.field_values import NOT_AVAILABLE_VALUE, UNKNOWN_VALUE_TYPE, field_answers

# (valueType, union member, value): one of each NVML_VALUE_TYPE_*, at values a narrower read would garble.
TYPED = [
    (pynvml.NVML_VALUE_TYPE_DOUBLE, "dVal", 412.375),
    (pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, "uiVal", 2**32 - 2),
    (pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG, "ulVal", 2**40 + 3),
    (pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, "ullVal", 2**63 + 5),
    (pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG, "sllVal", -(2**40)),
    (pynvml.NVML_VALUE_TYPE_SIGNED_INT, "siVal", -7),
    (pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT, "usVal", 65535),
]


def answer() -> object:
    """A ctypes answer as NVML fills it: every value type, then an unsupported and a failed field."""
    values = (pynvml.c_nvmlFieldValue_t * (len(TYPED) + 2))()
    for i, (value_type, member, value) in enumerate(TYPED):
        values[i].valueType = value_type
        values[i].timestamp = 1_700_000_000_000_000 + i
        setattr(values[i].value, member, value)
    values[len(TYPED)].nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
    values[len(TYPED) + 1].nvmlReturn = pynvml.NVML_ERROR_GPU_IS_LOST
    values[len(TYPED) + 1].timestamp = 42
    return values


EXPECTED = [(0, float(v), 1_700_000_000_000_000 + i) for i, (_, _, v) in enumerate(TYPED)] + [
    (pynvml.NVML_ERROR_NOT_SUPPORTED, 0.0, 0),
    (pynvml.NVML_ERROR_GPU_IS_LOST, 0.0, 42),
]


def _as_members(values: Any) -> list[SimpleNamespace]:
    """NVML's field values as plain objects with the same members: not pynvml's ctypes array."""
    return [
        SimpleNamespace(
            nvmlReturn=fv.nvmlReturn, valueType=fv.valueType, timestamp=fv.timestamp, value=fv.value
        )
        for fv in values
    ]


def test_every_value_type_reads_as_its_union_member_holds_it() -> None:
    assert list(field_answers(answer())) == EXPECTED


def test_an_answer_that_is_not_pynvmls_array_is_read_member_by_member() -> None:
    assert list(field_answers(_as_members(answer()))) == EXPECTED


def test_an_unknown_value_type_is_that_fields_error_not_read_as_another() -> None:
    values = (pynvml.c_nvmlFieldValue_t * 3)()
    values[0].valueType = len(TYPED)
    values[0].timestamp = 7
    values[1].valueType, values[1].value.uiVal = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, 5
    values[2].valueType, values[2].nvmlReturn = len(TYPED) + 3, pynvml.NVML_ERROR_NOT_SUPPORTED
    expected = [(UNKNOWN_VALUE_TYPE, 0.0, 7), (0, 5.0, 0), (pynvml.NVML_ERROR_NOT_SUPPORTED, 0.0, 0)]
    assert list(field_answers(values)) == expected
    assert list(field_answers(_as_members(values))) == expected


def test_an_unsigned_field_with_every_bit_set_is_not_available_not_a_value() -> None:
    """NVML's not-available value (NVML_VALUE_NOT_AVAILABLE, every bit set) read as a number was a memory
    temperature of 4294967295 C, or an energy of 1.8e19 mJ."""
    values = (pynvml.c_nvmlFieldValue_t * 4)()
    values[0].valueType, values[0].value.uiVal = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, 0xFFFFFFFF
    values[1].valueType, values[1].value.ullVal = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, 2**64 - 1
    values[2].valueType, values[2].value.ullVal = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, 0xFFFFFFFF
    values[3].valueType, values[3].value.siVal = pynvml.NVML_VALUE_TYPE_SIGNED_INT, -1
    expected = [
        (NOT_AVAILABLE_VALUE, 0.0, 0),
        (NOT_AVAILABLE_VALUE, 0.0, 0),
        (0, 4294967295.0, 0),
        (0, -1.0, 0),
    ]
    assert list(field_answers(values)) == expected
    assert list(field_answers(_as_members(values))) == expected
