"""Reading an ``nvmlDeviceGetFieldValues`` answer: (nvmlReturn, value, timestamp) of each requested field.

The answer is a ctypes array of ``c_nvmlFieldValue_t``. Read member by member, each element is a new
ctypes object, its value union another, and every read goes through pynvml's bytes-decoding
``__getattribute__``: with 32 fields per GPU that was the largest part of a collection's own CPU time.
Here the array's bytes are unpacked in one ``struct`` pass instead, with a record layout taken from the
ctypes type's own offsets, so a pynvml whose struct differs still reads right (or, if the layout cannot be
expressed, falls back to the member reads).
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Sequence
from typing import Any

import pynvml

# The c_nvmlValue_t member of each NVML_VALUE_TYPE_* (a field value's ``valueType``).
VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")
FieldAnswer = tuple[int, float, int]  # (nvmlReturn, value (0.0 unless it is success), timestamp in us)
# The nvmlReturn given to a field NVML answered with a value type this pynvml does not list (a newer driver):
# its value cannot be read as any member without garbling it, so it is an error of that field alone. No NVML
# return code is negative.
UNKNOWN_VALUE_TYPE = -1
# The nvmlReturn given to an unsigned field NVML answered with every bit set, its not-available value
# (NVML_VALUE_NOT_AVAILABLE): left out like an error of that field, not served as a memory temperature of
# 4294967295 C or an energy of 1.8e19 mJ.
NOT_AVAILABLE_VALUE = -2

_FIELD_VALUE = pynvml.c_nvmlFieldValue_t
# struct codes of the members read, by their size in the ctypes type (the value union is read as bytes).
_CODES = {"timestamp": {8: "q"}, "valueType": {4: "I"}, "nvmlReturn": {4: "I"}}
_READ = ("nvmlReturn", "valueType", "value", "timestamp")


def _record() -> tuple[struct.Struct, tuple[int, ...]] | None:
    """A struct reading the members in ``_READ`` from one element, and where each lands in its tuple."""
    members = sorted(
        (getattr(_FIELD_VALUE, name).offset, getattr(_FIELD_VALUE, name).size, name) for name in _READ
    )
    fmt, at = "=", 0
    for offset, size, name in members:
        code = f"{size}s" if name == "value" else _CODES[name].get(size)
        if code is None or offset < at:
            return None
        fmt += f"{offset - at}x{code}" if offset > at else code
        at = offset + size
    fmt += f"{ctypes.sizeof(_FIELD_VALUE) - at}x"
    order = [name for _, _, name in members]
    return struct.Struct(fmt), tuple(order.index(name) for name in _READ)


_RECORD = _record()
_UNION = dict(pynvml.c_nvmlValue_t._fields_)
# The struct reading the union member of each NVML_VALUE_TYPE_* (native sizes, as ctypes lays them out).
_VALUE_STRUCTS = tuple(struct.Struct("@" + _UNION[member]._type_) for member in VALUE_MEMBERS)
_VALUE_READERS = tuple(s.unpack_from for s in _VALUE_STRUCTS)  # bound once: ~32 reads per GPU
# The not-available value of each NVML_VALUE_TYPE_* that has one (unsigned int and long: every bit set), else
# None (a double, a signed value, and an unsigned short, whose 65535 nvml.h does not name).
_NOT_AVAILABLE = tuple((1 << 8 * s.size) - 1 if s.format[-1] in "ILQ" else None for s in _VALUE_STRUCTS)


def field_answers(values: Any) -> Sequence[FieldAnswer]:
    """(nvmlReturn, value, timestamp) of each element of a field-value answer, in order; a value type this
    pynvml does not know reads as ``UNKNOWN_VALUE_TYPE``."""
    if _RECORD is None or not isinstance(values, ctypes.Array) or values._type_ is not _FIELD_VALUE:
        return [_member_answer(fv) for fv in values]
    record, (ret_at, type_at, value_at, time_at) = _RECORD
    answers: list[FieldAnswer] = []
    answer, readers, missing = answers.append, _VALUE_READERS, _NOT_AVAILABLE
    known = len(readers)
    for row in record.iter_unpack(bytes(values)):
        ret, value_type = row[ret_at], row[type_at]
        if ret != 0:
            answer((ret, 0.0, row[time_at]))
        elif value_type < known:
            value = readers[value_type](row[value_at])[0]
            if value == missing[value_type]:
                answer((NOT_AVAILABLE_VALUE, 0.0, row[time_at]))
            else:
                answer((0, float(value), row[time_at]))
        else:
            answer((UNKNOWN_VALUE_TYPE, 0.0, row[time_at]))
    return answers


def _member_answer(fv: Any) -> FieldAnswer:
    """The same, read member by member (an answer that is not pynvml's ctypes array)."""
    ret, value_type = int(fv.nvmlReturn), int(fv.valueType)
    if ret != 0:
        return ret, 0.0, int(fv.timestamp)
    if not 0 <= value_type < len(VALUE_MEMBERS):
        return UNKNOWN_VALUE_TYPE, 0.0, int(fv.timestamp)
    value = getattr(fv.value, VALUE_MEMBERS[value_type])
    if value == _NOT_AVAILABLE[value_type]:
        return NOT_AVAILABLE_VALUE, 0.0, int(fv.timestamp)
    return 0, float(value), int(fv.timestamp)
