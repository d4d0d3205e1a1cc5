"""NvmlCollector: one pass over every GPU of one NVML instance, producing DCGM-compatible families.

``nvml`` is the ``pynvml`` module on a real host or a ``gpuwarden.sim`` ``SimNvml`` (same names, same
``NVMLError_*`` classes), so the simulator exercises this exact code path. The rules:

- ``collect()`` never raises; a failing call leaves its series out and is counted in
  ``gpuwarden_nvml_call_errors_total{function,error}``, with ``gpu`` for a call made for one GPU.
- ``NotSupported`` leaves the series out, silently; never a 0 or a sentinel.
- A NaN or infinite value (a double field, a GPM metric) is left out and counted under the error
  ``NonFiniteValue``: one NaN GPU would make every ``avg``/``sum`` over the fleet NaN. An unsigned int gauge
  answered as NVML's not-available value (0xFFFFFFFF) is left out and counted under ``NotAvailable``.
- ``GpuIsLost`` / ``ResetRequired`` / ``GpuNotFound`` set ``gpuwarden_gpu_up`` to 0; the ``up`` series and
  the XID counters keep their labels, the GPU's other series are absent until it answers again. A GPU
  whose every call of a pass fails, whatever the error, reads 0 too; when no call of a pass answers at
  all (NVML uninitialised, the node going down) no GPU series is reported and ``gpuwarden_nvml_up`` is 0
  (``nvml_answered`` tells the collection loop, which marks the host stale).
- A GPU keeps the labels of its last identification while it cannot be identified; GPUs that answer are
  offered to the XID watcher, so one missed at start gets its XIDs once it is back.
- ``FunctionNotFound`` (an older driver) retires that function for the life of the collector.
- ``Uninitialized`` from the first call of a pass (NVML shut down under it, a driver reload) makes it call
  ``nvmlInit`` again and find its GPUs anew.
- A MIG instance's series repeat the GPU's device-level DCGM values (``fields.MIG_REPEATED``), as
  dcgm-exporter serves them, beside the instance's own framebuffer and GPM values.
- Counters that batch well (ECC, retired pages, row remaps, NVLink errors, violations, energy) come from
  one ``nvmlDeviceGetFieldValues`` call per GPU.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import pynvml
from prometheus_client import Metric

from exporters import fields as fams
from exporters.attribution import (
    UNKNOWN,
    ProcessIdentity,
    WorkloadMemory,
    process_labels,
    shared,
    workload_labels,
)
from exporters.collected import FamilyBuilder, Gpu
from exporters.field_reads import FieldReads
from exporters.gpm import MIN_RATE_INTERVAL_SECONDS
from exporters.mig_instances import MigInstances, PodAssignments, add_framebuffer, text
from exporters.nvlink import NvLinkStates
from exporters.nvml_calls import (
    UNINITIALIZED,
    GpuLost,
    error_name,
    init_nvml,
)
from exporters.nvml_said import no_handle_reason
from exporters.xid import XidLedger, XidWatcher, handle_key
from gpuwarden.clock import Clock, SystemClock
from gpuwarden.xid import xid_catalog

__all__ = ["NvmlCollector", "PodAssignments", "ProcessResolver", "error_name", "init_nvml", "xid_message"]

logger = logging.getLogger(__name__)

_TEMPERATURE_GPU = 0
_CLOCK_SM, _CLOCK_MEM = 1, 2
_PCIE_TX, _PCIE_RX = 0, 1  # NVML_PCIE_UTIL_TX_BYTES / RX_BYTES
_REASON_BITS = tuple(bit for bit, _ in fams.CLOCK_EVENT_REASONS)
_REASON_NAMES = tuple(reason for _, reason in fams.CLOCK_EVENT_REASONS)
# DCGM-only labels: gpuwarden's own families leave them out (promtool rejects camelCase; join on UUID).
_DCGM_ONLY_LABELS = frozenset({"modelName", "DCGM_FI_DRIVER_VERSION"})


class ProcessResolver(Protocol):
    """Maps a host PID to its pod or Slurm job (``exporters.attribution.ProcCgroupResolver``)."""

    def resolve(self, pid: int) -> ProcessIdentity:
        """Identity of one process."""
        ...

    def retain(self, pids: Sequence[int]) -> None:
        """Forget PIDs not in ``pids``."""
        ...


class NvmlCollector(MigInstances, NvLinkStates, FieldReads):
    """Collects every GPU of one NVML instance. Register it in a ``CollectorRegistry`` or run it in a
    ``CollectionLoop``; ``describe()`` is empty so registering never touches NVML."""

    def __init__(
        self,
        nvml: Any,
        *,
        hostname: str,
        xids: XidLedger | None = None,
        resolver: ProcessResolver | None = None,
        pods: PodAssignments | None = None,
        watcher: XidWatcher | None = None,
        clock: Clock | None = None,
        min_rate_interval: float = MIN_RATE_INTERVAL_SECONDS,
    ) -> None:
        super().__init__(nvml, hostname)
        self._min_rate_interval = min_rate_interval
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._workloads = WorkloadMemory()
        self._xids = xids
        self._watcher = watcher
        self._resolver = resolver
        self._pods = pods
        self._gpus: list[Gpu] = []
        self._driver: str | bytes | None = None
        self._metrics_get_type = getattr(nvml, "c_nvmlGpmMetricsGet_t", None) or pynvml.c_nvmlGpmMetricsGet_t
        self.nvml_answered = True

    # --- the collector protocol -------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        """Nothing: registering must not call NVML."""
        return []

    def collect(self) -> list[Metric]:
        """One pass over all GPUs. Never raises."""
        out = FamilyBuilder()
        try:
            self._collect(out)
        except Exception:  # the collection boundary: log and count, keep what was gathered
            logger.exception("nvml collection failed host=%s", self.hostname)
            self._count_error("collect", "Exception")
        self._said.end_pass(self.nvml_answered)
        for (function, error, gpu), count in self._errors.items():
            labels = {"Hostname": self.hostname, "gpu": gpu} if gpu else {"Hostname": self.hostname}
            out.add(fams.NVML_CALL_ERRORS, {**labels, "function": function, "error": error}, count)
        host = {"Hostname": self.hostname}
        out.add(fams.NVML_UP, host, 1.0 if self.nvml_answered else 0.0)
        kubelet_errors = getattr(
            self._pods, "errors", None
        )  # a kubelet's (``PodResourcesMap``), not the sim's
        if isinstance(kubelet_errors, int):
            out.add(fams.POD_RESOURCES_ERRORS, host, kubelet_errors)
        if self._watcher is not None:
            self._watcher.say_hung()
            out.add(fams.XID_WATCHER_UP, host, 1.0 if self._watcher.watching else 0.0)
            out.add(fams.XID_WATCHER_GPUS, host, self._watcher.registered)
            out.add(fams.XID_WATCHER_ERRORS, host, self._watcher.errors)
        return out.families()

    def found(self) -> tuple[Counter[str], str]:
        """The GPUs the last pass found, counted by model, and the driver version ("" if NVML did not say)."""
        models = Counter(gpu.labels.get("modelName") or "unknown model" for gpu in self._gpus)
        return models, text(self._driver or "")

    def xid_families(self) -> list[Metric]:
        """The XID families from the watcher's ledger alone, calling no NVML: what the collection loop serves
        for a host whose collection hangs (a GPU falling off the bus hangs NVML, and its XID 79 says why)."""
        out = FamilyBuilder()
        for gpu in list(self._gpus):
            self._add_xids(gpu, out)
        return out.families()

    # --- NVML calls -------------------------------------------------------------------------------

    def _initialise_again(self) -> bool:
        """NVML says it is not initialised (shut down under the exporter, as by a driver reload): initialise
        it again, and drop every handle and GPM sample taken before, so the GPUs are found anew. Without
        this the exporter stayed blind (gpuwarden_nvml_up 0) until restarted."""
        try:
            self._nvml.nvmlInit()
        except pynvml.NVMLError as exc:  # the driver is not back yet: counted, tried again next pass
            self._count_error("nvmlInit", error_name(getattr(exc, "value", None)))
            return False
        logger.warning("nvml was not initialised; initialised it again host=%s", self.hostname)
        for gpu in self._gpus:
            self._forget_gpm(gpu)
            gpu.handle = None  # rediscovered this pass
            gpu.refused_fields, gpu.fields_probed = frozenset(), False  # a reload may bring a newer driver
        return True

    def _handle_changed(self) -> bool:
        """Whether NVML now gives another handle for a GPU that did not answer last pass. A GPU back from a
        PCI rescan or ``nvmlDeviceDiscoverGpus`` has a new handle ("all device handles are no longer
        guaranteed to be valid post discovery"), and the old one answered GpuIsLost for ever: the GPU read
        down until the exporter restarted."""
        for gpu in self._gpus:
            if gpu.up is False and gpu.handle is not None:
                with self._for_gpu(str(gpu.index)):
                    try:
                        handle = self._call("nvmlDeviceGetHandleByIndex", gpu.index)
                    except GpuLost:  # still gone: its own calls say so
                        continue
                if handle is not None and handle_key(handle) != handle_key(gpu.handle):
                    return True
        return False

    # --- discovery --------------------------------------------------------------------------------

    def _discover(self, count: int) -> None:
        """(Re)build the GPU list. A GPU that cannot be identified now keeps what an earlier read said."""
        known = {gpu.index: gpu for gpu in self._gpus}
        self._driver = self._call("nvmlSystemGetDriverVersion") or self._driver
        gpus = []
        for index in range(count):
            with self._for_gpu(str(index)):
                handle, uuid, labels, no_handle = self._identify(index)
            prev = known.pop(index, None)
            if prev is not None and (not uuid or uuid == prev.uuid):
                # The same GPU, or one that does not answer now (its UUID unknown): keep its identity, so its
                # series do not turn into UUID="" ones while it is lost, and its per-GPU state.
                moved = handle is not None and (
                    prev.handle is None or handle_key(handle) != handle_key(prev.handle)
                )
                if moved and not uuid and prev.uuid:
                    # A new handle that does not say whose it is: after a rescan another GPU may answer at
                    # this index (one before it not found again). Read under the kept UUID, that GPU's
                    # series and XIDs were served as this one's, for ever. Not read until its UUID answers.
                    self._forget_gpm(prev)
                    prev.handle, prev.no_handle = None, _unidentified(index)
                    gpus.append(prev)
                    continue
                if moved and prev.handle is not None:
                    self._forget_gpm(prev)  # back under a new handle: samples of the old one are void
                prev.handle = handle if handle is not None else prev.handle
                prev.no_handle = no_handle
                gpus.append(prev)
                continue
            if prev is not None:
                self._forget_gpm(prev)
            own = {k: v for k, v in labels.items() if k not in _DCGM_ONLY_LABELS}
            gpus.append(Gpu(index, handle, labels["UUID"], labels, own, no_handle=no_handle))
        for gone in known.values():
            self._forget_gpm(gone)
        self._gpus = gpus

    def _identify(self, index: int) -> tuple[Any, str, dict[str, str], str]:
        """(handle, UUID or "", DCGM labels, why there is no handle or "") of GPU ``index``, as far as NVML
        answers."""
        handle = uuid = code = None
        name = bus = ""
        minor: Any = index
        try:
            handle, code = self._attempt("nvmlDeviceGetHandleByIndex", "nvmlDeviceGetHandleByIndex", index)
            if handle is not None:
                uuid = self._call("nvmlDeviceGetUUID", handle)
                name = self._call("nvmlDeviceGetName", handle) or ""
                pci = self._call("nvmlDeviceGetPciInfo", handle)
                bus = pci.busId if pci is not None else ""
                got = self._call("nvmlDeviceGetMinorNumber", handle)
                minor = index if got is None else got
        except GpuLost as lost:
            self._count_error(lost.function, error_name(lost.code))
            code = lost.code if handle is None else None
        labels = {
            "gpu": str(index),
            "UUID": text(uuid or ""),
            "pci_bus_id": text(bus),
            "device": f"nvidia{minor}",
            "modelName": text(name),
            "Hostname": self.hostname,
        }
        if self._driver:
            labels["DCGM_FI_DRIVER_VERSION"] = text(self._driver)  # a "label" field in dcgm-exporter's CSVs
        no_handle = "" if handle is not None else no_handle_reason(index, error_name(code))
        return handle, labels["UUID"], labels, no_handle

    def _collect(self, out: FamilyBuilder) -> None:
        start, answers = out.mark(), self._answers
        try:
            self._collect_all(out)
        finally:  # also for a pass cut short by a bug: one that got no answer must not read as fresh
            self.nvml_answered = self._answers != answers
        if not self.nvml_answered:
            # Not one call answered (NVML uninitialised, the node going down): the exporter is blind. Report
            # no GPU rather than guess; the errors say why, gpuwarden_nvml_up 0 says so, and the loop marks
            # the host stale without advancing its last success.
            out.rollback(start)

    def _collect_all(self, out: FamilyBuilder) -> None:
        self._pass_at = self._clock.monotonic()
        count, code = self._attempt("nvmlDeviceGetCount", "nvmlDeviceGetCount")
        if code == UNINITIALIZED and self._initialise_again():
            count = self._call("nvmlDeviceGetCount")
        if count is None:
            count = len(self._gpus)
        unknown = any(g.handle is None or not g.uuid for g in self._gpus)
        if count != len(self._gpus) or unknown or self._handle_changed():
            self._discover(count)
        pids: list[int] = []
        for gpu in self._gpus:
            with self._for_gpu(gpu.labels["gpu"]):  # the errors of its calls name it
                self._collect_one(gpu, out, pids)
        if self._resolver is not None:
            self._resolver.retain(pids)

    def _collect_one(self, gpu: Gpu, out: FamilyBuilder, pids: list[int]) -> None:
        """One GPU's series, its ``up`` and its XIDs."""
        up, why = 0.0, gpu.no_handle or no_handle_reason(gpu.index, "")
        if gpu.handle is not None:
            mark = out.mark()
            try:
                self._collect_gpu(gpu, out, pids, mark)
                # A GPU that gave not one series (every call failed: the driver is wedged) did not
                # answer: it is not up, even though no call said it was lost.
                up, why = (1.0, "") if out.grew(mark) else (0.0, "every call failed")
                if up and self._watcher is not None:
                    self._watcher.offer(gpu.handle, gpu.uuid)  # lost at start, or new: XIDs from now on
            except GpuLost as lost:
                out.rollback(mark)
                why = f"{lost.function} answered {error_name(lost.code)}"
                self._count_error(lost.function, error_name(lost.code))
                self._forget_gpm(gpu)
        self._said.gpu(gpu, bool(up), why)
        out.add(fams.GPU_UP, gpu.own, up)
        self._add_xids(gpu, out)

    # --- one GPU ----------------------------------------------------------------------------------

    def _collect_gpu(self, gpu: Gpu, out: FamilyBuilder, pids: list[int], mark: dict[str, int]) -> None:
        call, h, ok = self._call, gpu.handle, self._available
        mig = self._mig_enabled(h)
        labels = self._attribute(gpu, out, pids, mig)
        util = call("nvmlDeviceGetUtilizationRates", h)
        if util is not None:
            for family, reading in ((fams.GPU_UTIL, util.gpu), (fams.MEM_COPY_UTIL, util.memory)):
                if ok("nvmlDeviceGetUtilizationRates", reading):
                    out.add(family, labels, reading)
        add_framebuffer(out, labels, self._memory(h))
        for family, args in (
            (fams.GPU_TEMP, ("nvmlDeviceGetTemperature", h, _TEMPERATURE_GPU)),
            (fams.SM_CLOCK, ("nvmlDeviceGetClockInfo", h, _CLOCK_SM)),
            (fams.MEM_CLOCK, ("nvmlDeviceGetClockInfo", h, _CLOCK_MEM)),
        ):
            value = call(*args)
            if value is not None and ok(str(args[0]), value):
                out.add(family, labels, value)
        power = call("nvmlDeviceGetPowerUsage", h)
        if power is not None and ok("nvmlDeviceGetPowerUsage", power):
            out.add(fams.POWER_USAGE, labels, power / 1000.0)
        for family, name in ((fams.ENC_UTIL, "nvmlDeviceGetEncoderUtilization"),
                             (fams.DEC_UTIL, "nvmlDeviceGetDecoderUtilization")):  # fmt: skip
            got = call(name, h)
            if got is not None and ok(name, got[0]):
                out.add(family, labels, got[0])
        if gpu.gpm is None or not gpu.gpm.pcie or not self._gpm_due(gpu.gpm):  # else GPM gives them
            for family, counter in ((fams.PCIE_TX_THROUGHPUT, _PCIE_TX), (fams.PCIE_RX_THROUGHPUT, _PCIE_RX)):
                kbs = call("nvmlDeviceGetPcieThroughput", h, counter)
                if kbs is not None and ok("nvmlDeviceGetPcieThroughput", kbs):
                    out.add(family, labels, kbs)
        self._clock_reasons(gpu, out, labels)
        self._field_values(gpu, out, labels)
        self._nvlink_states(gpu, out, labels)
        self._gpm(gpu, out, labels)
        self._mig(gpu, out, mark, labels, mig)

    def _attribute(self, gpu: Gpu, out: FamilyBuilder, pids: list[int], mig: bool) -> dict[str, str]:
        """Per-process memory series; returns the GPU's labels, with its pod/job when it has exactly one.

        A MIG GPU's own series name no workload: NVML lists every slice's processes on the GPU, so their
        cgroups gave it the pod of whichever slice ran one (the kubelet assigns the slices, never their GPU).
        Each instance's series carry the pod of its own MIG device instead (``MigInstances._mig_pod``)."""
        pods = list(self._pods.pods_for(gpu.uuid)) if self._pods is not None and not mig else []
        procs = self._call("nvmlDeviceGetComputeRunningProcesses", gpu.handle) or []
        identities: list[tuple[Any, ProcessIdentity]] = []
        for proc in procs:
            pid = int(proc.pid)
            pids.append(pid)
            ident = self._resolver.resolve(pid) if self._resolver is not None else UNKNOWN
            identities.append((proc, ident))
        idents = [i for _, i in identities]
        key = gpu.uuid or gpu.labels["gpu"]
        if mig:
            self._workloads.forget(key)  # MIG turned off later starts from what is seen then
            extra: dict[str, str] = {}
        else:
            extra = self._workloads.labels(
                key, workload_labels(idents, pods), self._clock.monotonic(), ambiguous=shared(idents, pods)
            )
        gpu_pods: dict[str, str] = {k: extra[k] for k in ("namespace", "pod", "container") if k in extra}
        for proc, ident in identities:
            if proc.usedGpuMemory is None:
                continue
            plabels = {**gpu.own, "pid": str(proc.pid), **process_labels(ident, gpu_pods)}
            out.add(fams.PROCESS_MEMORY, plabels, proc.usedGpuMemory)
        gpu.workload = extra
        if not extra:
            return gpu.labels
        kept = gpu.labelled
        if kept is None or kept[0] is not gpu.labels or kept[1] is not extra:
            kept = gpu.labelled = (gpu.labels, extra, {**gpu.labels, **extra})
        return kept[2]

    def _clock_reasons(self, gpu: Gpu, out: FamilyBuilder, labels: dict[str, str]) -> None:
        name = "nvmlDeviceGetCurrentClocksEventReasons"
        if name in self._missing:
            name = "nvmlDeviceGetCurrentClocksThrottleReasons"  # drivers before the rename
        reasons = self._call(name, gpu.handle)
        if reasons is None:
            return
        reasons = int(reasons)
        out.add(fams.CLOCK_THROTTLE_REASONS, labels, reasons)
        out.add(fams.CLOCKS_EVENT_REASONS, labels, reasons)
        reason_labels = gpu.label_sets(gpu.own, "reason", _REASON_NAMES)
        out.add_each(
            fams.CLOCK_EVENT_REASON,
            zip(reason_labels, [1.0 if reasons & bit else 0.0 for bit in _REASON_BITS], strict=True),
        )

    # --- XIDs -------------------------------------------------------------------------------------

    def _add_xids(self, gpu: Gpu, out: FamilyBuilder) -> None:
        """The XID families, with the workload labels the GPU's other families carry (its last known ones
        when it is lost: the job an XID 79 took down), and dcgm-exporter's err_code/err_msg on its gauge."""
        if self._xids is None or not gpu.uuid:
            return
        last, counts = self._xids.snapshot(gpu.uuid)
        if last is not None:
            err = {"err_code": str(last), "err_msg": xid_message(last)}
            out.add(fams.XID_ERRORS, {**gpu.labels, **gpu.workload, **err}, last)
            for instance in gpu.mig_labels:  # a device-level field: repeated per MIG instance, as DCGM does
                out.add(fams.XID_ERRORS, {**instance, **err}, last)
        own = {**gpu.own, **gpu.workload} if counts else gpu.own
        for xid in sorted(counts):
            labels = _with(own, "xid", str(xid))
            out.add(fams.XID_TOTAL, labels, counts[xid].count)
            out.add(fams.XID_LAST_SEEN, labels, counts[xid].last_seen)


def _unidentified(index: int) -> str:
    """Why a GPU whose new handle gave no UUID is not read (``gpu not answering ... reason=``)."""
    return (
        f"nvmlDeviceGetHandleByIndex({index}) gave a new handle whose nvmlDeviceGetUUID failed: not read"
        " until it says which GPU it is (another GPU may answer at this index after a PCI rescan)"
    )


def xid_message(xid: int) -> str:
    """dcgm-exporter's ``err_msg``: "No Error" for 0, the catalog's description, else "Unknown Error"."""
    if xid == 0:
        return "No Error"
    entry = xid_catalog().get(xid)
    return entry.description if entry is not None and entry.description else "Unknown Error"


def _with(labels: Mapping[str, str], key: str, value: str) -> dict[str, str]:
    return {**labels, key: value}
