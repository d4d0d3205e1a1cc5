"""The ``presence`` detector: a GPU or a whole node whose metrics stop arriving.

A node that goes down, or an exporter that stops reporting a GPU, shows as *missing* series, which no
value-based detector can see. Each GPU (``Hostname`` + ``gpu`` by default) is remembered with the last time
one of its presence series (``presence_queries``, fnmatch patterns) arrived. Once that is more than
``absent_after`` seconds ago the GPU is absent: ``GpuExporterStale`` for it, or one ``NodeDown`` for its node
when every GPU the node had is absent. The alert resolves on the first tick the series are back
(``resolve_after`` ticks), or once the GPU has been absent for ``forget_after`` seconds (a decommissioned node
does not page forever).

Normal churn raises nothing: a pod or job label changing on a GPU keeps the same GPU key; a GPU whose
``UUID`` reports under another key (a relabel rule renamed its node) is that GPU, forgotten under its old
key rather than reported absent; a lost GPU that the
exporter still reports as ``gpuwarden_gpu_up == 0`` is left to the ``GpuLost`` signature; and when more than
``max_absent_share`` of all known GPUs vanish at once, or a tick read no presence series at all, the source is
the problem (its own staleness alert covers it), not the nodes, so nothing is reported and the clocks wait.
Not so a tick at which no presence query was due (``View.not_due``: their step longer than the tick): it read
nothing, and the clocks run on.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

import numpy as np

from anomaly.detectors import Findings
from anomaly.needs import GPU_UP
from anomaly.series import View
from anomaly.signaturefindings import FIRED
from anomaly.slots import Slots, grown
from anomaly.snapshot import State
from anomaly.thresholds import IntArray
from gpuwarden.model import RecommendedAction

PRESENCE_QUERY = "gpu_presence"
_KEPT_LABELS = ("Hostname", "gpu", "UUID", "modelName", "pci_bus_id", "device", "instance", "job")

GpuKey = tuple[str, ...]
_UNRESOLVED = -1
_NO_GPU = -2


class PresenceDetector:
    """Per-GPU last-seen times in an array; each series id is mapped to its GPU's slot once, not per tick."""

    name = "presence"

    def __init__(
        self,
        queries: Sequence[str],
        *,
        key_labels: Sequence[str] = ("Hostname", "gpu"),
        absent_after: float = 90.0,
        forget_after: float = 3600.0,
        max_absent_share: float = 0.5,
        resolve_after: int = 1,
    ) -> None:
        self.patterns = tuple(queries)
        self.key_labels = tuple(key_labels)
        self.absent_after = absent_after
        self.forget_after = forget_after
        self.max_absent_share = max_absent_share
        self.resolve_after = resolve_after
        self._slots: Slots[GpuKey] = Slots()
        self.labels: list[Mapping[str, str]] = []
        self.last_seen = np.zeros(0)  # per GPU slot, moved on through outages; NaN for a free slot
        self.seen = np.zeros(0)  # per GPU slot, its newest sample's time, never moved; NaN for a free slot
        self._series_slot = np.full(1024, _UNRESOLVED, np.int64)  # per series id
        self._by_uuid: dict[str, set[int]] = {}  # the slots of each GPU UUID (one, unless it was renamed)
        self._matches: dict[str, bool] = {}
        self._last_tick: float | None = None
        self._outage: float | None = None  # the first tick that read nothing, while none has read since

    @property
    def slots(self) -> dict[GpuKey, int]:
        """Each GPU's slot."""
        return self._slots.index

    @property
    def keys(self) -> list[GpuKey | None]:
        """Each slot's GPU; None for a free slot."""
        return self._slots.keys

    def matches(self, query: str) -> bool:
        """Whether ``query`` counts as a sign of life of the GPU it is about."""
        known = self._matches.get(query)
        if known is None:
            known = self._matches[query] = any(fnmatch.fnmatchcase(query, p) for p in self.patterns)
        return known

    def fit(self, view: View) -> None:
        """Online: nothing to refit."""

    def state(self) -> State:
        """Each GPU's slot, labels and last-seen time, each series' slot and the last tick's time
        (``anomaly.snapshot``)."""
        meta = {
            "keys": [None if k is None else list(k) for k in self.keys],
            "free": self._slots.freed(),
            "labels": [dict(lab) for lab in self.labels],
            "last_tick": self._last_tick,
            "outage": self._outage,
        }
        arrays = {"last_seen": self.last_seen.copy(), "seen": self.seen.copy()}
        return State(meta, {**arrays, "series_slot": self._series_slot.copy()})

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()``)."""
        keys: list[GpuKey | None] = [
            None if k is None else tuple(str(v) for v in k) for k in state.meta["keys"]
        ]
        labels: list[Mapping[str, str]] = [
            {str(k): str(v) for k, v in lab.items()} for lab in state.meta["labels"]
        ]
        last_seen, seen = state.arrays["last_seen"], state.arrays["seen"]
        series_slot = state.arrays["series_slot"]
        if (
            len(labels) != len(keys)
            or min(last_seen.size, seen.size) < len(keys)
            or series_slot.dtype != np.int64
        ):
            raise ValueError(f"presence: {len(keys)} GPUs, {len(labels)} label sets, {last_seen.size} times")
        self._slots = Slots.restored(keys, [int(i) for i in state.meta["free"]])
        self.labels, self.last_seen, self.seen, self._series_slot = labels, last_seen, seen, series_slot
        self._by_uuid = {}
        for slot, key in enumerate(keys):
            uuid = labels[slot].get("UUID")
            if key is not None and uuid:
                self._by_uuid.setdefault(uuid, set()).add(slot)
        tick, outage = state.meta["last_tick"], state.meta["outage"]
        self._last_tick = None if tick is None else float(tick)
        self._outage = None if outage is None else float(outage)

    def forget(self, ids: IntArray) -> None:
        """Series ids about to be reused: their GPU is looked up again when they reappear."""
        ids = ids[ids < self._series_slot.size]
        self._series_slot[ids] = _UNRESOLVED

    def _key(self, labels: Mapping[str, str]) -> GpuKey | None:
        key = tuple(labels.get(k, "") for k in self.key_labels)
        return key if key[0] else None

    def _slot_for(self, labels: Mapping[str, str]) -> int:
        key = self._key(labels)
        if key is None:
            return _NO_GPU
        slot = self.slots.get(key)
        if slot is None:
            kept = {k: labels[k] for k in _KEPT_LABELS if k in labels}
            slot = self._slots.take(key)
            if slot < len(self.labels):
                self.labels[slot] = kept
            else:
                self.labels.append(kept)
                size = max(64, slot + 1)
                self.last_seen, self.seen = (
                    grown(self.last_seen, size, np.nan),
                    grown(self.seen, size, np.nan),
                )
            self.last_seen[slot] = self.seen[slot] = -np.inf
            if kept.get("UUID"):
                self._by_uuid.setdefault(kept["UUID"], set()).add(slot)
        return slot

    def _observe(self, view: View) -> bool:
        """Mark the GPUs that reported; False when the tick read no presence series at all. The first read
        after an outage that holds samples from its first tick (a catch-up: Prometheus kept them) tells each
        GPU's newest sample: the clocks moved on through the outage go back to it (``_outage``)."""
        seen_any = False
        earliest = np.inf
        for step in view.steps:
            if not self.matches(step.query) or not step.labels:
                continue
            seen_any = True
            ids = step.ids
            if ids.size:
                self._series_slot = grown(self._series_slot, int(ids.max()) + 1, _UNRESOLVED)
            slots = self._series_slot[ids]
            for i in np.flatnonzero(slots == _UNRESOLVED).tolist():
                slots[i] = self._slot_for(step.labels[i])
            self._series_slot[ids] = slots
            use = slots[(slots >= 0) & np.isfinite(step.raw)]
            np.maximum.at(self.last_seen, use, step.at)
            np.maximum.at(self.seen, use, step.at)
            earliest = min(earliest, step.at)
        if seen_any and self._outage is not None:
            if earliest <= self._outage:
                # Each GPU's newest sample, not the moved clock: a node gone during an outage of the read
                # was absent from its last sample (restart fuzz seed 228: its NodeDown came a tick late
                # after a restart whose reads ended otherwise in the outage, the clocks moved to there).
                n = len(self.keys)
                self.last_seen[:n] = self.seen[:n]
            self._outage = None
        return seen_any

    def _drop(self, slots: IntArray) -> None:
        for slot in slots.tolist():
            if self._slots.free(slot) is not None:
                uuid = self.labels[slot].get("UUID")
                if uuid and uuid in self._by_uuid:
                    self._by_uuid[uuid].discard(slot)
                    if not self._by_uuid[uuid]:
                        del self._by_uuid[uuid]
        self.last_seen[slots] = self.seen[slots] = np.nan
        self._series_slot[np.isin(self._series_slot, slots)] = _UNRESOLVED

    def _lost(self, view: View) -> set[GpuKey]:
        """GPUs the exporter still reports, as lost: the ``GpuLost`` signature speaks for them."""
        step = view.latest.get(GPU_UP)
        if step is None:
            return set()
        down = np.flatnonzero(np.isfinite(step.raw) & (step.raw < 0.5)).tolist()
        return {k for k in (self._key(step.labels[i]) for i in down) if k is not None}

    def not_due(self, view: View) -> bool:
        """Whether the tick read none of its series because none of its queries was due, not for an outage."""
        if not any(self.matches(q) for q in view.not_due):
            return False
        return not any(step.labels and self.matches(step.query) for step in view.steps)

    def detect(self, view: View) -> list[Findings]:
        """GPUs absent for ``absent_after`` seconds, rolled up to their node when the whole node is."""
        now = view.time
        if not self._observe(view):
            # Nothing read at all: a source outage. Shift every clock so the gap does not count as absence.
            # Not at a tick when no presence query was due: before, every such tick moved the clocks on, so
            # at step 30 and a 5 s tick a node's absence grew 5 s a step and NodeDown came 9 minutes late.
            if self._last_tick is not None and not self.not_due(view):
                self.last_seen += now - self._last_tick
                if self._outage is None:
                    self._outage = now
            self._last_tick = now
            return []
        self._last_tick = now
        used = self.last_seen[: len(self.keys)]
        with np.errstate(invalid="ignore"):
            gone = np.flatnonzero(now - used > self.forget_after)
            if gone.size:
                self._drop(gone)
            absent = np.flatnonzero(now - used > self.absent_after)
        renamed = self._renamed(absent, now)
        if renamed.size:
            self._drop(renamed)
            absent = np.setdiff1d(absent, renamed)
        if not absent.size or absent.size > self.max_absent_share * len(self.slots):
            return []
        per_node: dict[str, int] = {}
        for key in self.slots:
            per_node[key[0]] = per_node.get(key[0], 0) + 1
        absent_per_node: dict[str, int] = {}
        for slot in absent.tolist():
            node = self._node(slot)
            absent_per_node[node] = absent_per_node.get(node, 0) + 1
        down = sorted(node for node, n in absent_per_node.items() if n == per_node[node])
        lost = self._lost(view)
        whole = set(down)
        stale = [s for s in absent.tolist() if self._node(s) not in whole and self.keys[s] not in lost]
        out: list[Findings] = []
        if stale:
            ages = now - self.last_seen[stale]
            out.append(
                Findings(
                    detector=self.name,
                    query=PRESENCE_QUERY,
                    labels=[self.labels[s] for s in stale],
                    score=np.full(len(stale), FIRED),
                    value=ages,
                    action=RecommendedAction.INVESTIGATE,
                    summary=[f"no metrics from this GPU for {a:.0f}s" for a in ages.tolist()],
                    alert_labels={"alertname": "GpuExporterStale"},
                    immediate=True,
                    resolve_after=self.resolve_after,
                    onset=self.last_seen[stale],
                )
            )
        if down:
            newest = {node: -np.inf for node in down}
            for slot in absent.tolist():
                node = self._node(slot)
                if node in newest:
                    newest[node] = max(newest[node], float(self.last_seen[slot]))
            ages = np.array([now - newest[node] for node in down])
            out.append(
                Findings(
                    detector=self.name,
                    query=PRESENCE_QUERY,
                    labels=[{self.key_labels[0]: node} for node in down],
                    score=np.full(len(down), FIRED),
                    value=ages,
                    action=RecommendedAction.RESTART_NODE,
                    summary=[
                        f"no metrics from any GPU of {node} for {a:.0f}s: the node or its exporter is down"
                        for node, a in zip(down, ages.tolist(), strict=True)
                    ],
                    alert_labels={"alertname": "NodeDown"},
                    immediate=True,
                    resolve_after=self.resolve_after,
                    onset=now - ages,  # its GPUs' newest last sample
                )
            )
        return out

    def _renamed(self, absent: IntArray, now: float) -> IntArray:
        """The ``absent`` slots whose GPU (its UUID) reports under another key: the same GPU, renamed."""
        out = []
        for slot in absent.tolist():
            uuid = self.labels[slot].get("UUID")
            others = self._by_uuid.get(uuid, ()) if uuid else ()
            if any(o != slot and now - self.last_seen[o] <= self.absent_after for o in others):
                out.append(slot)
        return np.array(out, np.int64)

    def _node(self, slot: int) -> str:
        key = self.keys[slot]
        return key[0] if key is not None else ""
