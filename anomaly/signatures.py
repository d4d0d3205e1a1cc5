"""The ``signatures`` detector: known GPU faults, deterministic, no learning and no warm-up.

XIDs are events (a counter per code, as gpuwarden's exporter writes them; dcgm-exporter's last-XID gauge is
read too): each new one is mapped through NVIDIA's XID catalog to a recommended action. Double-bit ECC,
row-remap pending/failure, retired-page pending, a single-bit ECC storm (correctable errors at over
``sbe_rate`` a second), hardware thermal/power slowdown, NVLink error bursts, a downed NVLink (one seen
active, now inactive) and a lost GPU (``gpuwarden_gpu_up == 0`` or its series vanishing) each have their own
rule. ``anomaly.needs`` lists the queries each rule reads.

The error counters and the XID gauge are compared per GPU, not per series (``anomaly.ledger``): the
exporter creates an XID's counter series when that XID first happens on a GPU, so a new XID series on a GPU
already known counts from zero, while every value read at the service's first read is history, unless a state
snapshot (``anomaly.snapshot``; ``state``/``restore``) gave back what was read before a restart: then an
error counted while the service was stopped is compared with the count before it, and raised. A GPU is
known once ``gpuwarden_gpu_up``, the XID gauge, an NVLink state or an error counter named it in an earlier
tick: a PromQL setup reads one of them beside the XID counters. What a rule keeps per GPU besides (when
its single-bit count was read, the links seen active) is dropped when the ledger forgets the GPU. Readings
that exporters have served as glitches are held for one read and believed only if the next read confirms them
(``anomaly.ledger``): an error counter's jump of over a million or its fall, and a last-XID code above
``MOST_PLAUSIBLE_XID`` or its fall to 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from operator import itemgetter

import numpy as np

from anomaly.detectors import Findings
from anomaly.ledger import DEFAULT_MEMORY_SECONDS, GpuKey, GpuValueLedger, Names, decoded, gpu_key
from anomaly.needs import (
    DBE,
    EXPORTER_STALE,
    GPU_UP,
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
    XID_COUNTER,
    XID_GAUGE,
)
from anomaly.series import Step, View
from anomaly.snapshot import State
from anomaly.thresholds import FloatArray, IntArray
from gpuwarden.labelnumbers import label_number
from gpuwarden.model import FaultKind, RecommendedAction
from gpuwarden.xid import XidEntry, parse_xid_catalog, xid_action, xid_catalog

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
# A hung GPU: the driver sees a kernel running the whole sample period (utilisation pinned at 100 %) while
# the SMs do almost nothing. Busy workloads, memory-bound ones included, keep a much larger SM-active share.
HUNG_UTIL_PCT = 95.0
HUNG_SM_ACTIVE = 0.05
# NVML_FI_DEV_GET_GPU_RECOVERY_ACTION values: 1 GPU reset, 2 node reboot, 3 drain P2P, 4 drain and reset.
_RECOVERY_ACTIONS = {
    1: RecommendedAction.DRAIN_AND_RESET,
    2: RecommendedAction.RESTART_NODE,
    3: RecommendedAction.CORDON_AND_DRAIN,
    4: RecommendedAction.DRAIN_AND_RESET,
}
# Correctable ECC errors a second that make a storm. A healthy GPU corrects a handful a day; the driver's
# own "high single-bit ECC error rate" (XID 92) is a burst of about a hundred.
SBE_STORM_RATE = 1.0
# nvmlClocksEventReason bits that mean the GPU is being slowed by a fault, not by its workload or a cap.
SLOWDOWN_BITS = {0x8: "hw_slowdown", 0x20: "sw_thermal", 0x40: "hw_thermal", 0x80: "hw_power_brake"}
THERMAL_BITS, POWER_BRAKE_BIT = 0x20 | 0x40, 0x80
FIRED = 2.0
# More errors of one kind in one read than a GPU makes (a DBE or an XID ends the work on it; an SBE storm is
# a hundred or so): believed only if the next read still has them, as a counter would. A garbage reading
# (dcgm-exporter has served 808334905) is gone by then; a real jump this large is told one read later.
IMPLAUSIBLE_JUMP = 1e6
# Above any XID code NVIDIA has defined (its catalog ends at 172 after 20 years, a few added a year): a larger
# code on the last-XID gauge is held for one read, like a counter's implausible jump.
MOST_PLAUSIBLE_XID = 1000


def load_xid_catalog(text: str | None = None) -> dict[int, XidEntry]:
    """The XID catalog shipped with the package (``gpuwarden.xid``), or parsed from ``text``."""
    return parse_xid_catalog(text) if text is not None else dict(xid_catalog())


def _slot(labels: Mapping[str, str]) -> tuple[str, str, str]:
    """Where a GPU sits: its host and PCI address (its index where the exporter gives no address)."""
    bus = labels.get("pci_bus_id")
    return (
        (labels.get("Hostname", ""), "pci", bus)
        if bus
        else (labels.get("Hostname", ""), "gpu", labels.get("gpu", ""))
    )


def _gpu_codes(names: Names, part: str, gpus: Sequence[tuple[str, ...]]) -> dict[str, IntArray]:
    """``gpus`` as two arrays of numbers into ``names`` (``part``_gpu, ``part``_index), for a snapshot."""
    return {
        f"{part}_gpu": names.codes(map(itemgetter(0), gpus), len(gpus)),
        f"{part}_index": names.codes(map(itemgetter(1), gpus), len(gpus)),
    }


def _gpu_keys(names: Sequence[str], part: str, arrays: Mapping[str, IntArray]) -> list[GpuKey]:
    """The GPUs ``_gpu_codes`` gave the arrays of."""
    gpus, indices = decoded(names, arrays[f"{part}_gpu"]), decoded(names, arrays[f"{part}_index"])
    if len(gpus) != len(indices) or None in gpus or None in indices:
        raise ValueError(f"signatures {part}: {len(gpus)} GPUs, {len(indices)} indices")
    return [(str(g), str(i)) for g, i in zip(gpus, indices, strict=True)]


def _labels(labels: Mapping[str, object]) -> Mapping[str, str]:
    """A label set read back from a snapshot's JSON."""
    return {str(k): str(v) for k, v in labels.items()}


def _find(view: View, name: str) -> Step | None:
    # prometheus_client may add ``_total`` to a counter's sample name; accept either spelling.
    return view.latest.get(name) or view.latest.get(name + "_total")


class SignatureDetector:
    """Deterministic rules; each rule yields findings with score 2 (fired) or 0."""

    name = "signatures"

    def __init__(
        self,
        catalog: Mapping[int, XidEntry] | None = None,
        *,
        nvlink_burst: float = 10.0,
        sbe_rate: float = SBE_STORM_RATE,
        lost_memory_seconds: float = 3600.0,
        counter_memory_seconds: float = DEFAULT_MEMORY_SECONDS,
    ) -> None:
        self.catalog = dict(catalog) if catalog is not None else load_xid_catalog()
        self.nvlink_burst = nvlink_burst
        self.sbe_rate = sbe_rate
        # When each GPU's single-bit count was last read: its increase is over the time since then.
        self._sbe_read: dict[GpuKey, float] = {}
        self._values = GpuValueLedger(counter_memory_seconds)
        self.lost_memory_seconds = lost_memory_seconds
        # Keyed by GPU, not label set: a relabelled series (a pod ended, an exporter rollout) is the same GPU.
        self._up_seen: dict[tuple[str, str], Mapping[str, str]] = {}
        self._vanished: dict[tuple[str, str], tuple[Mapping[str, str], float]] = {}
        # Links seen active: one that never was (a board whose bridge leaves some unused) is not "down". A
        # dict as an ordered set: a snapshot keeps them in the order seen, and a restored one saves them so.
        self._links_active: dict[tuple[str, str, str], None] = {}
        # gpu_up and the XID counters as last read together: the GPUs whose XIDs the counters raise, looked
        # up at the first new XID on the gauge after the read (``_counted``, what a snapshot keeps).
        self._counting: tuple[Step | None, Step] | None = None
        self._counted: set[GpuKey] | None = None

    def fit(self, view: View) -> None:
        """Deterministic: nothing to fit."""

    def forget(self, ids: np.ndarray) -> None:
        """Drop state of vanished series (what was last read per GPU stays)."""
        self._values.forget(ids)

    def state(self) -> State:
        """What each rule compares the next read with (``anomaly.snapshot``): the ledger's last values, when
        each GPU's single-bit count was read, the GPUs and links seen, those vanished, the GPUs counted. Taken
        up, an error that happened while the service was stopped is new, not history. The many keys are
        numbers into one list of names (``Names``)."""
        values, names = self._values.state(), Names()
        links = list(self._links_active)
        arrays = {f"values_{name}": array for name, array in values.arrays.items()}
        arrays.update(_gpu_codes(names, "links", links))
        arrays["links_link"] = names.codes(map(itemgetter(2), links), len(links))
        arrays.update(_gpu_codes(names, "counted", sorted(self._counted_as_read())))
        arrays.update(_gpu_codes(names, "sbe", list(self._sbe_read)))
        arrays["sbe_read"] = np.fromiter(self._sbe_read.values(), np.float64, len(self._sbe_read))
        meta = {
            "values": values.meta,
            "names": names.listed(),
            "up_seen": [[*key, dict(lab)] for key, lab in self._up_seen.items()],
            "vanished": [[*key, dict(lab), t] for key, (lab, t) in self._vanished.items()],
        }
        return State(meta, arrays)

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()``); ``ValueError``, ``KeyError`` or ``IndexError`` when it does not
        fit, nothing taken up."""
        meta, arrays = state.meta, state.arrays
        names = [str(n) for n in meta["names"]]
        links = _gpu_keys(names, "links", arrays)
        link_names = decoded(names, arrays["links_link"])
        if len(link_names) != len(links) or None in link_names:
            raise ValueError(f"signatures: {len(links)} GPUs' links, {len(link_names)} link names")
        sbe_gpus, sbe_read = _gpu_keys(names, "sbe", arrays), arrays["sbe_read"].tolist()
        if len(sbe_read) != len(sbe_gpus):
            raise ValueError(f"signatures: {len(sbe_gpus)} GPUs' single-bit reads, {len(sbe_read)} times")
        up_seen = {(str(a), str(b)): _labels(lab) for a, b, lab in meta["up_seen"]}
        vanished = {(str(a), str(b)): (_labels(lab), float(t)) for a, b, lab, t in meta["vanished"]}
        counted = set(_gpu_keys(names, "counted", arrays))
        prefix = "values_"
        self._values.restore(
            State(
                meta["values"], {k.removeprefix(prefix): a for k, a in arrays.items() if k.startswith(prefix)}
            )
        )
        self._links_active = dict.fromkeys(
            (*gpu, str(link)) for gpu, link in zip(links, link_names, strict=True)
        )
        self._sbe_read = dict(zip(sbe_gpus, (float(t) for t in sbe_read), strict=True))
        self._up_seen, self._vanished = up_seen, vanished
        self._counting, self._counted = None, counted

    def judged_by(self, query: str) -> tuple[str, ...]:
        """The queries an alert of ``query`` is judged by: GpuHung's (``GPU_UTIL``) by utilisation and the
        SM-active share, which its rule reads together and judges nothing without; any other, its own."""
        return (GPU_UTIL, SM_ACTIVE) if query == GPU_UTIL else (query,)

    def held(self) -> int:
        """Entries of per-GPU state held: bounded by the GPUs read within the memory windows."""
        return len(self._values) + len(self._sbe_read) + len(self._links_active) + len(self._vanished)

    def detect(self, view: View) -> list[Findings]:
        """Apply every rule to the newest step of the metrics it reads."""
        gone = self._values.expire(view.time)
        if gone:  # GPUs unread for the ledger's memory: their rules' state goes with their values
            self._sbe_read = {key: t for key, t in self._sbe_read.items() if key not in gone}
            self._links_active = {link: None for link in self._links_active if link[:2] not in gone}
        up = view.latest.get(GPU_UP)
        if up is not None:
            self._values.observe(up, view.time)  # a GPU known before its first XID counts that XID
        out: list[Findings] = []
        for rule in self._rules():
            out.extend(rule(view))
        return out

    def _rules(self) -> list[Callable[[View], list[Findings]]]:
        return [
            self._xid_counter,
            self._xid_gauge,
            self._dbe,
            self._sbe_storm,
            self._flags,
            self._throttle,
            self._nvlink,
            self._nvlink_down,
            self._lost,
            self._recovery,
            self._stale,
            self._hung,
        ]

    def _xid_finding(
        self, query: str, labels: list[Mapping[str, str]], codes: Sequence[int | None], values: FloatArray
    ) -> Findings:
        """``codes``: None where the series' ``xid`` label is no number (it is kept, not replaced)."""
        entries = [self.catalog.get(c) if c is not None else None for c in codes]
        actions = [xid_action(e) if e else RecommendedAction.INVESTIGATE for e in entries]
        summaries = [
            f"XID {c} {e.mnemonic}: {e.description}" if e else f"XID {c} (not in the catalog)"
            for c, e in zip(codes, entries, strict=True)
        ]
        alert_labels = [{"xid": str(c)} if c is not None else {} for c in codes]
        labels = [{**lab, **extra} for lab, extra in zip(labels, alert_labels, strict=True)]
        return Findings(
            self.name,
            query,
            labels,
            np.full(len(codes), FIRED),
            values,
            action=actions,
            summary=summaries,
            alert_labels={"alertname": "GpuXidError"},
            immediate=True,
        )

    def _xid_counter(self, view: View) -> list[Findings]:
        step = _find(view, XID_COUNTER)
        if step is None:
            return []
        # An XID series is created by its first event: on a GPU already known, a new series counts from zero.
        increase = self._values.increase(view, step, count_new=True, most=IMPLAUSIBLE_JUMP)
        rows = np.flatnonzero(increase > 0).tolist()
        if not rows:
            return []
        labels = [step.labels[i] for i in rows]
        codes = [label_number(lab.get("xid", "0")) for lab in labels]
        return [self._xid_finding(step.query, labels, codes, increase[rows])]

    def _xid_gauge(self, view: View) -> list[Findings]:
        step = view.latest.get(XID_GAUGE)
        if step is None:
            return []
        # A missed scrape (NaN) is neither a new XID nor the end of the last one: it leaves no row.
        rows, values, before = self._values.update(step, view.time)
        # A code no XID has (dcgm-exporter has served 808334905) is believed once the next read still has it,
        # as a last-XID gauge keeps its code; before, it raised, and the fall back to the last real XID
        # raised that XID and its remediation again. Codes in the plausible range raise at once, known or not.
        # A fall to 0 (the gauge clears only with a driver reset or an exporter restart) is held likewise:
        # the same code back at the next read is the old XID, not a new one.
        plausible = (values >= 0) & (values <= MOST_PLAUSIBLE_XID) & (values == np.floor(values))
        cleared = (values == 0) & (before > 0)
        believed = self._values.confirmed(step, rows, values, before, ~plausible | cleared)
        rows, values, before = rows[believed], values[believed], before[believed]
        new = (values > 0) & np.isfinite(before) & (values != before)
        # Only while the counters are read at all: a config that reads the gauge alone relies on it. At a
        # tick that did not read them because they were not due (a longer step than the gauge's), those of
        # their last read: before, the gauge raised each XID the counters raised again at their next step.
        counters = _find(view, XID_COUNTER)
        if counters is not None:
            self._counting, self._counted = (view.latest.get(GPU_UP), counters), None
        elif view.not_due.isdisjoint((XID_COUNTER, XID_COUNTER + "_total")):
            self._counting, self._counted = None, None
        counted = self._counted_gpus() if new.any() else set()
        if counted:
            # gpuwarden's exporter counts XIDs exactly on its GPUs: the gauge would report them twice. A
            # mixed fleet's dcgm-exporter-only nodes have the gauge alone.
            new &= np.array([gpu_key(step.labels[i]) not in counted for i in rows.tolist()], dtype=bool)
        if not new.any():
            return []
        rows = rows[new]
        labels = [step.labels[i] for i in rows.tolist()]
        return [self._xid_finding(step.query, labels, [int(v) for v in values[new]], values[new])]

    def _counted_gpus(self) -> set[GpuKey]:
        """The GPUs whose XIDs gpuwarden's exporter counts, as last read (none while it reads no counters):
        those it reports up (it exports ``gpu_up`` for each GPU it watches) and those with an XID counter
        series (one from each GPU's first XID). Looked up once per read of the counters."""
        if self._counted is None:
            self._counted = self._counted_as_read()
        return self._counted

    def _counted_as_read(self) -> set[GpuKey]:
        """``_counted_gpus``, not kept: a snapshot's copy, made while a tick may run, writes nothing (one kept
        from the read before the tick's own would have been the tick's)."""
        counted, steps = self._counted, self._counting or ()
        if counted is not None:
            return counted
        return {gpu_key(lab) for step in steps if step is not None for lab in step.labels}

    def _dbe(self, view: View) -> list[Findings]:
        step = _find(view, DBE)
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
        step = _find(view, SBE)
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
            step = _find(view, name)
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

    def _immediate(
        self,
        step: Step,
        score: FloatArray,
        action: RecommendedAction,
        summary: str | Sequence[str],
        alertname: str,
    ) -> Findings:
        """A deterministic rule's findings: raised at the first tick that scores above 1; ``summary`` one for
        all series or one per series."""
        return Findings(
            self.name,
            step.query,
            step.labels,
            score,
            step.raw,
            action=action,
            summary=summary,
            alert_labels={"alertname": alertname},
            immediate=True,
        )

    def _lost(self, view: View) -> list[Findings]:
        step = view.latest.get(GPU_UP)
        if step is None:
            return []
        seen: dict[tuple[str, str], Mapping[str, str]] = {}
        for lab, up in zip(step.labels, step.raw.tolist(), strict=True):
            key = gpu_key(lab)
            if key not in seen or math.isfinite(up):  # the current label set, not one that just ended
                seen[key] = lab
        # A GPU never seen before in the slot of a vanished one replaced it (an RMA swap): that one is not
        # lost. A known GPU taking a vanished one's index is NVML renumbering after a loss: it still is.
        new_slots = {
            _slot(lab) for key, lab in seen.items() if key not in self._up_seen | self._vanished.keys()
        }
        for key, lab in self._up_seen.items():
            if key not in seen and key not in self._vanished:
                self._vanished[key] = (lab, view.time)
        for key in list(self._vanished):
            lab, since = self._vanished[key]
            if key in seen or _slot(lab) in new_slots or view.time - since > self.lost_memory_seconds:
                del self._vanished[key]
        self._up_seen = seen
        # A GPU whose series vanished while its exporter still reports the others fell off the bus; when a
        # whole host's series vanish, the node or its exporter is gone: presence's NodeDown says so, and
        # eight GpuLost alerts would stay open over a later, real loss of one of those GPUs.
        hosts = {lab.get("Hostname") for lab in step.labels}
        vanished = [lab for lab, _ in self._vanished.values() if lab.get("Hostname") in hosts]
        labels = [*step.labels, *vanished]
        values = np.concatenate([step.raw, np.zeros(len(vanished))])
        fired = np.where(np.isfinite(values) & (values < 0.5), FIRED, 0.0)
        return [
            Findings(
                self.name,
                GPU_UP,
                labels,
                fired,
                values,
                action=RecommendedAction.RESTART_NODE,
                summary="GPU lost: it no longer answers NVML",
                alert_labels={"alertname": "GpuLost"},
                immediate=True,
            )
        ]

    def _recovery(self, view: View) -> list[Findings]:
        step = view.latest.get(RECOVERY_ACTION)
        if step is None:
            return []
        codes = np.where(np.isfinite(step.raw), step.raw, 0).astype(np.int64)
        actions = [_RECOVERY_ACTIONS.get(c, RecommendedAction.INVESTIGATE) for c in codes.tolist()]
        return [
            Findings(
                self.name,
                step.query,
                step.labels,
                np.where(codes > 0, FIRED, 0.0),
                step.raw,
                action=actions,
                summary=[f"the driver asks for recovery action {c}" for c in codes.tolist()],
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
