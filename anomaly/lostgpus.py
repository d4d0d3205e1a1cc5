"""The ``GpuLost`` rule of the ``signatures`` detector: ``gpuwarden_gpu_up == 0``, or a GPU's series vanishing
or reading NaN (no reading: the read failed) while its exporter still reads the others."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from anomaly.detectors import Findings
from anomaly.ledger import GpuKey, gpu_key
from anomaly.needs import GPU_UP
from anomaly.series import View
from anomaly.signaturefindings import FIRED, SignatureRules
from gpuwarden.model import RecommendedAction


def _slot(labels: Mapping[str, str]) -> tuple[str, str, str]:
    """Where a GPU sits: its host and PCI address (its index where the exporter gives no address)."""
    bus = labels.get("pci_bus_id")
    return (
        (labels.get("Hostname", ""), "pci", bus)
        if bus
        else (labels.get("Hostname", ""), "gpu", labels.get("gpu", ""))
    )


def _seen(
    keys: list[GpuKey], labels: Sequence[Mapping[str, str]], ups: list[float]
) -> dict[GpuKey, Mapping[str, str]]:
    """The GPUs read, each with its current label set.

    A GPU with no reading (NaN: its series ended, or the read failed) is not seen, as one whose series
    vanished is not; of several label sets, the one with a reading is current, not one that just ended.
    A range query's window refilling is no NaN here (``_lost`` reads its answer, ``Step.partial``), under a
    new label set too: taking a new label set's NaN for present, as before that was read, also took a failed
    read under it for a reading."""
    return {key: lab for key, lab, up in zip(keys, labels, ups, strict=True) if math.isfinite(up)}


class LostGpuRule(SignatureRules):
    """A GPU lost: reported down, or vanished from its host's series for up to ``lost_memory_seconds``."""

    lost_memory_seconds: float
    # Keyed by GPU, not label set: a relabelled series (a pod ended, an exporter rollout) is the same GPU.
    _up_seen: dict[GpuKey, Mapping[str, str]]
    _vanished: dict[GpuKey, tuple[Mapping[str, str], float]]

    def _lost(self, view: View) -> list[Findings]:
        step = view.latest.get(GPU_UP)
        if step is None:
            return []
        # A point blanked while its range query's window fills is an answer (``Step.partial``): read as none,
        # a GPU back after a gap of two steps or more stayed lost for the range and a step, 5.5 minutes.
        raw = step.raw if step.partial is None else np.where(np.isnan(step.raw), step.partial, step.raw)
        keys = [gpu_key(lab) for lab in step.labels]
        seen = _seen(keys, step.labels, raw.tolist())
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
        # A host whose every GPU reads NaN was not read (a missed scrape, the node going down): the same.
        hosts = {lab.get("Hostname") for lab in seen.values()}
        vanished = {key: lab for key, (lab, _) in self._vanished.items() if lab.get("Hostname") in hosts}
        rows = [i for i, key in enumerate(keys) if key not in vanished]  # a NaN row of a lost GPU: one row
        labels = [*(step.labels[i] for i in rows), *vanished.values()]
        values = np.concatenate([raw[rows], np.zeros(len(vanished))])
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
