"""Fault classes by name and alerts on a GPU, as the fault-evaluation tests build them."""

from __future__ import annotations

from datetime import UTC, datetime

from anomaly.faulteval import FAULT_CLASSES
from gpuwarden.model import Alert


def _alert(name: str, gpu: str, at: float) -> Alert:
    labels = {"alertname": name, "model": "thermal", "Hostname": "node-01", "gpu": gpu}
    return Alert(labels=labels, starts_at=datetime.fromtimestamp(at, UTC))


def _class(name: str):
    return next(c for c in FAULT_CLASSES if c.name == name)


def _raise(node: str, gpu: int, model: str = "adaptive") -> Alert:
    labels = {"alertname": "GpuwardenAnomaly", "model": model, "Hostname": node, "gpu": str(gpu)}
    return Alert(labels=labels)
