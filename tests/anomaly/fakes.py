"""Small collectors for feeding the anomaly service in tests."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric


class TableCollector:
    """Collects whatever ``rows`` holds now: {(name, kind): [(labels, value), ...]}."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list[tuple[dict[str, str], float]]] = {}
        self.fail = False

    def set(self, name: str, values: list[tuple[dict[str, str], float]], kind: str = "gauge") -> None:
        self.rows[(name, kind)] = values

    def collect(self) -> Iterable[Metric]:
        if self.fail:
            raise RuntimeError("collector broke")
        out = []
        for (name, kind), samples in self.rows.items():
            family = Metric(name.removesuffix("_total") if kind == "counter" else name, "test", kind)
            for labels, value in samples:
                family.add_sample(name, labels, value)
            out.append(family)
        return out
