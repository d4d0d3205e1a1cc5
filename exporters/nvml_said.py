"""What the NVML collector logs: each (function, error) the first time, a GPU going down or coming back, and a
host whose NVML answers nothing, once per change.

Counted without a word, a GPU's Timeout or a GPU falling off the bus showed only in the metrics; logged at
each collection, the same error would bury the log (every 5 s, per GPU). What a pass found is said at its
end: a pass in which NVML answered no call at all (a driver reload, the node going down) is one host line,
not a line per function and GPU, and leaves each GPU's state as it was, so nothing is said again when NVML
comes back.
"""

from __future__ import annotations

import logging

from exporters.collected import Gpu

logger = logging.getLogger(__name__)

# Errors the "gpu not answering" line names (once per GPU going down), not a line of their own.
_SAID_AS_GPU_DOWN = frozenset({"GpuIsLost", "ResetRequired", "GpuNotFound"})
# Errors said elsewhere: the collection boundary logs its exception with the traceback; NVML shut down under
# the collector is said by its "initialised it again" line, or by the host's "answers no call".
_SAID_ELSEWHERE = frozenset({"Exception", "Uninitialized"})


# What an operator should check when NVML gives no handle for a GPU, by the error nvmlDeviceGetHandleByIndex
# answered ("no handle" alone said nothing of where to look).
_NO_HANDLE_CHECKS = {
    "GpuIsLost": "the GPU fell off the bus: look for XID 79 in the kernel log (dmesg) and for the device in "
    "`lspci -d 10de:`; a GPU reset (nvidia-smi -r -i {i}) or a node reboot brings it back",
    "GpuNotFound": "the GPU is gone from the bus: look for it in `lspci -d 10de:` and for XID 79 in the "
    "kernel log (dmesg); a PCI rescan or a node reboot brings it back",
    "ResetRequired": "the GPU needs a reset: nvidia-smi -r -i {i} once its processes are stopped",
    "NoPermission": "the exporter may not open /dev/nvidia{i}: check that device's permissions, or that its "
    "container is given the GPU (the NVIDIA device plugin, NVIDIA_VISIBLE_DEVICES)",
    "Timeout": "the driver did not answer in time: look for XIDs in the kernel log (dmesg) and run "
    "`nvidia-smi -i {i}`",
}


def no_handle_reason(index: int, error: str) -> str:
    """Why GPU ``index`` has no NVML handle (``error``: what nvmlDeviceGetHandleByIndex answered, "" if not
    known), and what to check."""
    said = f"nvmlDeviceGetHandleByIndex({index}) answered {error}" if error else "NVML gave no handle"
    check = _NO_HANDLE_CHECKS.get(
        error, "run `nvidia-smi -i {i}` and look for XIDs in the kernel log (dmesg)"
    )
    return f"no NVML handle: {said}; {check.format(i=index)}"


class NvmlSaid:
    """The log of one collector (one host): fed during a pass, said at its end."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self._said: set[tuple[str, str]] = set()  # (function, error) already logged
        self._errors: list[tuple[str, str, str]] = []  # this pass's first (function, error, gpu)
        self._gpus: list[tuple[Gpu, bool, str]] = []  # this pass's (gpu, up, why)
        self._first = ""  # this pass's first error, whatever it was: what the host's line names
        self._answered = True

    def error(self, function: str, error: str, gpu: str) -> None:
        """An error was counted; it is said at the end of the pass if it is the first of its kind."""
        self._first = self._first or f"{function} {error}"
        said = (function, error)
        down = error in _SAID_AS_GPU_DOWN and gpu  # a host-wide call's has no GPU line to say it
        if said in self._said or down or error in _SAID_ELSEWHERE:
            return
        self._said.add(said)
        self._errors.append((function, error, gpu))

    def gpu(self, gpu: Gpu, up: bool, why: str) -> None:
        """What the pass found of one GPU: up, or down and why."""
        self._gpus.append((gpu, up, why))

    def end_pass(self, answered: bool) -> None:
        """Say what changed in the pass; ``answered`` is False when NVML answered no call at all."""
        errors, self._errors = self._errors, []
        gpus, self._gpus = self._gpus, []
        was, self._answered = self._answered, answered
        first, self._first = self._first, ""
        if not answered:
            # Said by the host's line; each is said on its own if it comes again once NVML answers.
            self._said.difference_update((function, error) for function, error, _ in errors)
            if was:
                logger.warning(
                    "nvml answers no call host=%s first_error=%s; no GPU is served until it does",
                    self.hostname,
                    first or "-",
                )
            return
        if not was:
            logger.info("nvml answers again host=%s", self.hostname)
        for function, error, index in errors:
            if error == "FunctionNotFound":
                logger.warning(
                    "nvml function missing, degrading function=%s host=%s", function, self.hostname
                )
                continue
            logger.warning(
                "nvml call failed function=%s error=%s gpu=%s host=%s; said once, counted in"
                " gpuwarden_nvml_call_errors_total",
                function,
                error,
                index or "-",
                self.hostname,
            )
        for gpu, up, why in gpus:
            self._say_gpu(gpu, up, why)

    def _say_gpu(self, gpu: Gpu, up: bool, why: str) -> None:
        was, gpu.up = gpu.up, up
        if not up and was is not False:
            uuid = gpu.uuid or "-"
            logger.warning(
                "gpu not answering gpu=%s gpu_uuid=%s host=%s reason=%s", gpu.index, uuid, self.hostname, why
            )
        elif up and was is False:
            logger.info("gpu answers again gpu=%s gpu_uuid=%s host=%s", gpu.index, gpu.uuid, self.hostname)
