"""Event calls of ``SimNvml``: event sets, registration and a blocking, timed wait."""

from __future__ import annotations

from typing import Any

import pynvml

from gpuwarden.sim.events import EventQueue
from gpuwarden.sim.nvml_base import NO_INSTANCE, SUPPORTED_EVENTS, NvmlBase, fake_pointer, pointer_address


class NvmlEvents(NvmlBase):
    """``nvmlEventSet*``: XID events, each delivered once, waited for in real milliseconds."""

    def nvmlEventSetCreate(self) -> Any:
        """A new event set."""
        self._check("nvmlEventSetCreate")
        event_set = fake_pointer(pynvml.c_nvmlEventSet_t)
        self._event_sets[pointer_address(event_set) or 0] = EventQueue()
        return event_set

    def _queue(self, eventSet: Any) -> EventQueue:
        queue = self._event_sets.get(pointer_address(eventSet) or 0)
        if queue is None:
            raise pynvml.NVMLError_InvalidArgument()
        return queue

    def nvmlDeviceGetSupportedEventTypes(self, handle: Any) -> int:
        """Event types this GPU can deliver."""
        self._dev(handle, "nvmlDeviceGetSupportedEventTypes")
        return SUPPORTED_EVENTS

    def nvmlDeviceRegisterEvents(self, handle: Any, eventTypes: int, eventSet: Any) -> None:
        """Deliver this GPU's events of ``eventTypes`` to ``eventSet`` from now on."""
        gpu = self._dev(handle, "nvmlDeviceRegisterEvents").gpu
        if eventTypes & ~SUPPORTED_EVENTS:
            raise pynvml.NVMLError_NotSupported()
        self._fleet.subscribe(gpu.node, gpu.index, self._queue(eventSet), eventTypes)

    def nvmlEventSetWait_v2(self, eventSet: Any, timeoutms: int) -> Any:
        """Block up to ``timeoutms`` real milliseconds for the next event; NVMLError_Timeout if none."""
        self._check("nvmlEventSetWait_v2")
        queue = self._queue(eventSet)
        event = queue.get(max(0, timeoutms) / 1000.0)
        if event is None:
            raise pynvml.NVMLError_Timeout()
        data = pynvml.c_nvmlEventData_t()
        dev = self._device_of(event.index) if event.node == self.node_name else None
        if dev is not None:
            data.device = dev.handle
        data.eventType = event.event_type
        data.eventData = event.data
        data.gpuInstanceId = NO_INSTANCE
        data.computeInstanceId = NO_INSTANCE
        return data

    def nvmlEventSetWait(self, eventSet: Any, timeoutms: int) -> Any:
        """Same as ``nvmlEventSetWait_v2``."""
        return self.nvmlEventSetWait_v2(eventSet, timeoutms)

    def nvmlEventSetFree(self, eventSet: Any) -> None:
        """Release an event set and wake its waiters."""
        self._check("nvmlEventSetFree")
        queue = self._event_sets.pop(pointer_address(eventSet) or 0, None)
        if queue is None:
            raise pynvml.NVMLError_InvalidArgument()
        self._fleet.unsubscribe(queue)
        queue.close()
