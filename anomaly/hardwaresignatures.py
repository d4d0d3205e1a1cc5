"""The hardware rules of the ``signatures`` detector: ECC errors and their pending repairs, clock slowdown,
NVLink errors and downed links, the driver's recovery action, a stale exporter and a hung GPU."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from anomaly.detectors import Findings
from anomaly.ledger import GpuKey, gpu_key
from anomaly.needs import (
    DBE,
    EXPORTER_STALE,
    NVLINK_ERRORS,
    NVLINK_RECOVERY,
    NVLINK_STATUS,
    RECOVERY_ACTION,
    RETIRED_PENDING,
    ROW_REMAP_FAILURE,
    ROW_REMAP_PENDING,
    SBE,
    SM_ACTIVE,
    THROTTLE_REASONS,
)
from anomaly.series import View
from anomaly.signaturefindings import FIRED, IMPLAUSIBLE_JUMP, SignatureRules, find_step
from gpuwarden.model import FaultKind, RecommendedAction

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
# A hung GPU: the driver sees a kernel running the whole sample period (utilisation pinned at 100 %) while
# the SMs do almost nothing. Busy workloads, memory-bound ones included, keep a much larger SM-active share.
HUNG_UTIL_PCT = 95.0
HUNG_SM_ACTIVE = 0.05
# NVML_FI_DEV_GET_GPU_RECOVERY_ACTION values: 1 GPU reset, 2 node reboot, 3 drain P2P, 4 drain and reset,
# 5 recover the IMEX domain, 6 PCIe bus reset, 7 system reboot. A drain of P2P (3) is NVIDIA's "terminate the
# processes that do peer-to-peer traffic", then the driver names the next action: the workload restarts, the
# node stays. Recovering the IMEX domain (5) is the multi-node NVLink memory-export service's recovery, not
# the GPU's nor its node's: there is no remedy gpuwarden runs for it.
_RECOVERY_ACTIONS = {
    1: RecommendedAction.DRAIN_AND_RESET,
    2: RecommendedAction.RESTART_NODE,
    3: RecommendedAction.RESTART_APP,
    4: RecommendedAction.DRAIN_AND_RESET,
    5: RecommendedAction.INVESTIGATE,
    6: RecommendedAction.DRAIN_AND_RESET,  # a reset of the GPU's PCIe bus
    7: RecommendedAction.RESTART_NODE,  # "reboot the system"
}
# NVML_GPU_RECOVERY_ACTION_* in NVIDIA's words, for the alert's summary.
_RECOVERY_NAMES = {
    1: "GPU reset",
    2: "node reboot",
    3: "drain P2P",
    4: "drain P2P and reset the GPU",
    5: "recover the IMEX domain",
    6: "PCIe bus reset",
    7: "system reboot",
}
# Correctable ECC errors a second that make a storm. A healthy GPU corrects a handful a day; the driver's
# own "high single-bit ECC error rate" (XID 92) is a burst of about a hundred.
SBE_STORM_RATE = 1.0
# nvmlClocksEventReason bits that mean the GPU is being slowed by a fault, not by its workload or a cap.
SLOWDOWN_BITS = {0x8: "hw_slowdown", 0x20: "sw_thermal", 0x40: "hw_thermal", 0x80: "hw_power_brake"}
THERMAL_BITS, POWER_BRAKE_BIT = 0x20 | 0x40, 0x80


class HardwareRules(SignatureRules):
    """One rule per hardware fault; each fires on the newest read of the metrics it names."""

    nvlink_burst: float
    sbe_rate: float
    # When each GPU's single-bit count was last read: its increase is over the time since then.
    _sbe_read: dict[GpuKey, float]
    # Links seen active: one that never was (a board whose bridge leaves some unused) is not "down". A
    # dict as an ordered set: a snapshot keeps them in the order seen, and a restored one saves them so.
    _links_active: dict[tuple[str, str, str], None]

    def _dbe(self, view: View) -> list[Findings]:
        step = find_step(view, DBE)
        if step is None:
            return []
        fired = np.where(self._values.increase(view, step, most=IMPLAUSIBLE_JUMP) > 0, FIRED, 0.0)
        return [
            self._immediate(
                step, fired, RecommendedAction.DRAIN_AND_RESET, "double-bit ECC error", "GpuDoubleBitEcc"
            )
        ]

    def _sbe_storm(self, view: View) -> list[Findings]:
        """Correctable ECC errors at over ``sbe_rate`` a second since the last tick. Each one is corrected,
        so nothing is lost yet; a storm says a memory row is failing: watch it, and reset the GPU when its
        work allows so that the row is remapped (XID 92's guidance)."""
        step = find_step(view, SBE)
        if step is None:
            return []
        increase = self._values.increase(
            view, step, most=IMPLAUSIBLE_JUMP
        )  # NaN at a GPU's first read: history, not a storm
        keys = [gpu_key(labels) for labels in step.labels]
        elapsed = np.array([view.time - self._sbe_read.get(key, math.nan) for key in keys])
        for key, value in zip(keys, step.raw.tolist(), strict=True):
            if math.isfinite(value):  # one GPU may have several series (a relabel): all share its time
                self._sbe_read[key] = view.time
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(elapsed > 0, increase / elapsed, np.nan)
        fired = np.where(np.isfinite(rate) & (rate > self.sbe_rate), FIRED, 0.0)
        summaries = [
            f"single-bit ECC storm: {r:.3g} corrected errors/s" if f else ""
            for r, f in zip(rate.tolist(), fired.tolist(), strict=True)
        ]
        return [
            self._immediate(step, fired, RecommendedAction.INVESTIGATE, summaries, "GpuSingleBitEccStorm")
        ]

    def _flags(self, view: View) -> list[Findings]:
        rules = (
            (
                ROW_REMAP_FAILURE,
                RecommendedAction.CONTACT_SUPPORT,
                "row remapping failed",
                "GpuRowRemapFailure",
            ),
            (
                ROW_REMAP_PENDING,
                RecommendedAction.DRAIN_AND_RESET,
                "row remap pending a reset",
                "GpuRowRemapPending",
            ),
            (
                RETIRED_PENDING,
                RecommendedAction.DRAIN_AND_RESET,
                "page retirement pending",
                "GpuRetirePending",
            ),
        )
        out = []
        for name, action, summary, alertname in rules:
            step = view.latest.get(name)
            if step is not None:
                fired = np.where(step.raw > 0, FIRED, 0.0)
                out.append(self._immediate(step, fired, action, summary, alertname))
        return out

    def _throttle(self, view: View) -> list[Findings]:
        step = view.latest.get(THROTTLE_REASONS)
        if step is None:
            return []
        bits = np.where(np.isfinite(step.raw), step.raw, 0).astype(np.int64)
        mask = sum(SLOWDOWN_BITS)
        fired = np.where(bits & mask, FIRED, 0.0)
        summaries = [
            "clock slowdown: " + ",".join(n for b, n in SLOWDOWN_BITS.items() if v & b) if v & mask else ""
            for v in bits.tolist()
        ]
        found = self._immediate(step, fired, RecommendedAction.INVESTIGATE, summaries, "GpuClockSlowdown")
        # The alert's name reads as a power brake (``alerting.faults``); heat is what slows these: their
        # incident is rooted and titled thermal. One the brake slows too, or the bare hw_slowdown bit (heat
        # or power), keeps the name's kind.
        labels = [
            {**lab, "fault_kind": FaultKind.THERMAL.value}
            if v & THERMAL_BITS and not v & POWER_BRAKE_BIT
            else lab
            for lab, v in zip(step.labels, bits.tolist(), strict=True)
        ]
        return [replace(found, labels=labels)]

    def _nvlink(self, view: View) -> list[Findings]:
        out = []
        for name in NVLINK_ERRORS:
            step = find_step(view, name)
            if step is None:
                continue
            increase = self._values.increase(view, step, most=IMPLAUSIBLE_JUMP)
            inc = np.where(np.isfinite(increase), increase, 0.0)
            # A recovery error is a link going down and retraining: one is already worth a look.
            score = FIRED * inc if name == NVLINK_RECOVERY else inc / self.nvlink_burst
            out.append(
                Findings(
                    self.name,
                    step.query,
                    step.labels,
                    score,
                    step.raw,
                    action=RecommendedAction.DRAIN_AND_RESET,
                    summary="NVLink error burst",
                    alert_labels={"alertname": "GpuNvlinkErrors"},
                    immediate=True,
                )
            )
        return out

    def _nvlink_down(self, view: View) -> list[Findings]:
        """A link that was active and reads inactive fires on every tick until it is active again: its error
        counters moved once, when it went down, and say nothing afterwards."""
        step = view.latest.get(NVLINK_STATUS)
        if step is None:
            return []
        self._values.observe(step, view.time)  # its GPUs are read: their links are kept as long as they are
        fired = np.zeros(len(step.labels))
        for i, (lab, state) in enumerate(zip(step.labels, step.raw.tolist(), strict=True)):
            key = (*gpu_key(lab), lab.get("link", ""))
            if state == 1:
                self._links_active[key] = None
            elif state == 0 and key in self._links_active:
                fired[i] = FIRED
        return [
            self._immediate(step, fired, RecommendedAction.DRAIN_AND_RESET, "NVLink down", "GpuNvlinkDown")
        ]

    def _recovery(self, view: View) -> list[Findings]:
        step = view.latest.get(RECOVERY_ACTION)
        if step is None:
            return []
        codes = np.where(np.isfinite(step.raw), step.raw, 0).astype(np.int64)
        actions = [_RECOVERY_ACTIONS.get(c, RecommendedAction.INVESTIGATE) for c in codes.tolist()]
        # The code goes on the alert (alerting.faults.awaits_recovery): a drain of P2P traffic (3) leaves the
        # GPU in service, where a reset or a reboot takes it out; without it, alerting could not tell them.
        labels = [
            {**lab, "recovery_action": str(c)} if c > 0 else lab
            for lab, c in zip(step.labels, codes.tolist(), strict=True)
        ]
        summaries = [
            f"the driver asks for recovery action {c} ({_RECOVERY_NAMES[c]})"
            if c in _RECOVERY_NAMES
            else f"the driver asks for recovery action {c}"
            for c in codes.tolist()
        ]
        return [
            Findings(
                self.name,
                step.query,
                labels,
                np.where(codes > 0, FIRED, 0.0),
                step.raw,
                action=actions,
                summary=summaries,
                alert_labels={"alertname": "GpuRecoveryActionPending"},
                immediate=True,
            )
        ]

    def _stale(self, view: View) -> list[Findings]:
        step = view.latest.get(EXPORTER_STALE)
        if step is None:
            return []
        return [
            Findings(
                self.name,
                step.query,
                step.labels,
                np.where(step.raw > 0, FIRED, 0.0),
                step.raw,
                action=RecommendedAction.INVESTIGATE,
                summary="the exporter has no current GPU values (an NVML call hangs, or none answers)",
                alert_labels={"alertname": "GpuExporterStale"},
                immediate=True,
            )
        ]

    def _hung(self, view: View) -> list[Findings]:
        util, sm = view.latest.get(GPU_UTIL), view.latest.get(SM_ACTIVE)
        if util is None or sm is None:
            return []
        sm_by_gpu = {
            labels.get("UUID", ""): v
            for labels, v in zip(sm.labels, sm.raw.tolist(), strict=True)
            if labels.get("UUID")
        }
        sm_share = np.array(
            [sm_by_gpu.get(labels.get("UUID", ""), np.nan) for labels in util.labels], dtype=float
        )
        hung = (util.raw >= HUNG_UTIL_PCT) & (
            sm_share < HUNG_SM_ACTIVE
        )  # NaN (no SM-active series) never fires
        return [
            Findings(
                self.name,
                util.query,
                util.labels,
                np.where(hung, FIRED, 0.0),
                util.raw,
                judged=np.isfinite(util.raw) & np.isfinite(sm_share),  # it judges nothing without both
                action=RecommendedAction.RESET_GPU,
                summary="utilisation pinned at 100 % while the SMs are idle: the GPU looks hung",
                alert_labels={"alertname": "GpuHung"},
            )
        ]
