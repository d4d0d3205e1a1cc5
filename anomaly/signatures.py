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

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter

import numpy as np

from anomaly.detectors import Findings
from anomaly.hardwaresignatures import GPU_UTIL, SBE_STORM_RATE, HardwareRules
from anomaly.ledger import DEFAULT_MEMORY_SECONDS, GpuKey, GpuValueLedger, Names, decoded
from anomaly.lostgpus import LostGpuRule
from anomaly.needs import DBE, GPU_UP, SM_ACTIVE
from anomaly.series import View
from anomaly.signaturefindings import FIRED
from anomaly.snapshot import State
from anomaly.thresholds import IntArray
from anomaly.xidsignatures import XidRules, load_xid_catalog
from gpuwarden.xid import XidEntry

# The rules live by family (``anomaly.xidsignatures``, ``anomaly.hardwaresignatures``, ``anomaly.lostgpus``);
# what callers have imported from here stays importable from here.
__all__ = ["DBE", "FIRED", "GPU_UTIL", "SignatureDetector", "load_xid_catalog"]


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


class SignatureDetector(XidRules, HardwareRules, LostGpuRule):
    """Deterministic rules; each rule yields findings with score 2 (fired) or 0."""

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
        self._sbe_read = {}
        self._values = GpuValueLedger(counter_memory_seconds)
        self.lost_memory_seconds = lost_memory_seconds
        self._up_seen = {}
        self._vanished = {}
        self._links_active = {}
        self._counting = None
        self._counted = None

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
