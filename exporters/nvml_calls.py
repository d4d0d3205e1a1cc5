"""Calling NVML: error names, start-up, and the wrapper every call of a collection goes through.

``nvml`` is the ``pynvml`` module or a ``gpuwarden.sim`` ``SimNvml``. A call either answers, says
``NotSupported`` (the series is left out, silently), says the GPU is gone (``GpuLost`` is raised for the
collector to mark it down), or fails otherwise (counted by function and error; ``FunctionNotFound``, an
older driver, retires the function for the life of the collector).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pynvml

from exporters.field_values import NOT_AVAILABLE_VALUE, UNKNOWN_VALUE_TYPE
from exporters.nvml_said import NvmlSaid
from gpuwarden.errors import SourceError

UNINITIALIZED = 1
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
NOT_FOUND = 6
FUNCTION_NOT_FOUND = 13
ARGUMENT_VERSION_MISMATCH = 25
LOST_CODES = frozenset({15, 16, 28})  # GpuIsLost, ResetRequired, GpuNotFound
# The ``error`` label of a value NVML answered as NaN or infinite (left out, as DCGM leaves a blank out).
NON_FINITE = "NonFiniteValue"
NOT_AVAILABLE = "NotAvailable"
# NVML_VALUE_NOT_AVAILABLE: an unsigned int reading NVML does not have, answered with every bit set.
# Exported, one such temperature or utilisation is 4294967295 in every max() and avg() over the fleet.
NOT_AVAILABLE_U32 = 0xFFFFFFFF


def error_name(code: int | None) -> str:
    """``NVMLError_Timeout`` -> ``Timeout``: the value of the ``error`` label."""
    if code is None:
        return "Unknown"
    if code == UNKNOWN_VALUE_TYPE:
        return "UnknownValueType"
    if code == NOT_AVAILABLE_VALUE:
        return NOT_AVAILABLE
    try:
        return str(pynvml.nvmlExceptionClass(code).__name__).removeprefix("NVMLError_")
    except (KeyError, ValueError, AttributeError):
        return f"code_{code}"


def init_nvml(nvml: Any) -> None:
    """``nvmlInit`` with its failures (no library, no driver, no permission) as one clear SourceError."""
    try:
        nvml.nvmlInit()
    except pynvml.NVMLError as exc:
        name = error_name(getattr(exc, "value", None))
        hint = {
            "LibraryNotFound": "libnvidia-ml.so is not installed; is the NVIDIA driver installed? "
            "(use --simulate NODESxGPUS to run on a simulated fleet)",
            "DriverNotLoaded": "the NVIDIA kernel driver is not loaded",
            "NoPermission": "no permission to open the GPU devices",
            "LibRmVersionMismatch": "NVML library and kernel driver versions differ; reload the driver",
        }.get(name, str(exc))
        raise SourceError(f"cannot initialise NVML ({name}): {hint}", source="nvml", retryable=False) from exc


class GpuLost(Exception):
    """An NVML call said the GPU is lost, needs a reset or is gone."""

    def __init__(self, function: str, code: int) -> None:
        super().__init__(function)
        self.function = function
        self.code = code


class NvmlCalls:
    """The NVML calls of one collector: errors counted by function, retired functions, answers seen."""

    def __init__(self, nvml: Any, hostname: str) -> None:
        self._nvml = nvml
        self.hostname = hostname
        self._missing: set[str] = set()
        # By (function, error, gpu): ``gpu`` is the index of the GPU being read ("" for a host-wide call), so
        # an operator sees which GPU fails; bounded by the host's GPUs times the calls and errors.
        self._errors: dict[tuple[str, str, str], int] = {}
        self._said = NvmlSaid(hostname)  # what the errors and GPUs of a pass log at its end
        self._gpu = ""
        self._answers = 0  # NVML calls that returned (a value or NotSupported): the GPU is there
        self.current_call: str | None = None

    @contextmanager
    def _for_gpu(self, index: str) -> Iterator[None]:
        """The calls made meanwhile are for GPU ``index``: their errors are counted under it."""
        self._gpu = index
        try:
            yield
        finally:
            self._gpu = ""

    def _count_error(self, function: str, error: str) -> None:
        """Count one error (and log the first of its kind, at the end of the pass)."""
        key = (function, error, self._gpu)
        self._errors[key] = self._errors.get(key, 0) + 1
        self._said.error(function, error, self._gpu)

    def _available(self, function: str, reading: Any) -> bool:
        """False (counted under ``NotAvailable``) when an unsigned int gauge ``reading`` is NVML's
        not-available value: left out, as a NaN is, rather than served as 4294967295."""
        if reading == NOT_AVAILABLE_U32:
            self._count_error(function, NOT_AVAILABLE)
            return False
        return True

    def _call(self, name: str, *args: Any) -> Any:
        """Call one NVML function; None when its series must be left out. GPU loss raises ``GpuLost``."""
        return self._attempt(name, name, *args)[0]

    def _attempt(self, key: str, name: str, *args: Any) -> tuple[Any, int | None]:
        """(result, None) or (None, NVML error code): ``_call`` for callers that act on the code.

        ``key`` names the call in the error counter and in the retired set (a versioned call such as
        ``nvmlDeviceGetMemoryInfo_v2`` is retired on its own, not with its unversioned name).
        """
        fn = self._function(key, name)
        if fn is None:
            return None, FUNCTION_NOT_FOUND
        self.current_call = key
        try:
            result = fn(*args)
            self._answers += 1
            return result, None
        except pynvml.NVMLError as exc:
            return None, self._failed(key, exc)
        finally:
            self.current_call = None

    def _call_each(self, name: str, handle: Any, args: Iterable[Any]) -> list[Any]:
        """``name(handle, arg)`` for each of ``args`` (a GPU's links): what each answered, None where its
        series must be left out; shorter when the function turns out to be missing, which retires it.

        The same rules as ``_call``, with the function looked up once rather than per argument.
        """
        results: list[Any] = []
        fn = self._function(name, name)
        if fn is None:
            return results
        self.current_call = name
        try:
            for arg in args:
                try:
                    results.append(fn(handle, arg))
                    self._answers += 1
                except pynvml.NVMLError as exc:
                    if self._failed(name, exc) == FUNCTION_NOT_FOUND:
                        break
                    results.append(None)
        finally:
            self.current_call = None
        return results

    def _function(self, key: str, name: str) -> Any:
        """The NVML function ``name``, or None once ``key`` is retired (a missing one is retired now)."""
        if key in self._missing:
            return None
        fn = getattr(self._nvml, name, None)
        if fn is None:
            self._missing.add(key)
            self._count_error(key, "FunctionNotFound")
        return fn

    def _failed(self, key: str, exc: pynvml.NVMLError) -> int | None:
        """Handle a call's NVML error: NotSupported is an answer, loss raises ``GpuLost``, FunctionNotFound
        retires the call, the rest are counted. Returns the error code."""
        code: int | None = getattr(exc, "value", None)
        if code == NOT_SUPPORTED:
            self._answers += 1
            return code
        if code in LOST_CODES and self._gpu:
            # A GPU's call: that GPU is down. A host-wide one (nvmlDeviceGetCount) names no GPU to mark down:
            # raised, it ended the whole pass, every GPU's series gone, nvml_up 1 and a traceback each time.
            raise GpuLost(key, code) from exc
        if code == FUNCTION_NOT_FOUND:
            self._missing.add(key)
        self._count_error(key, error_name(code))
        return code
