"""The anomaly service's PromQL reader against a real VictoriaMetrics scraping the simulated exporter.

VictoriaMetrics hides the newest ``-search.latencyOffset`` (30 s by default) of every range: a range shorter
than that comes back empty, a longer one with its newest points all equal to the last sample before the
offset. A reader that asks up to "now" every tick (30 s: the default of both) reads nothing at all, and with
a longer tick reads repeats instead of samples. ``anomaly.latency_offset_seconds`` set to that offset reads
every sample once, as scraped.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from anomaly.sources import Frame
from gpuwarden.clock import SystemClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.integration.gpuwarden_server import gpuwarden_binary
from tests.integration.prometheus_queries import query, wait_for
from tests.integration.servers import free_port, require_binary, running

pytestmark = pytest.mark.integration

OFFSET = 3  # VictoriaMetrics' -search.latencyOffset here (30 s by default)
POWER = "DCGM_FI_DEV_POWER_USAGE"


class RecordingSource(PromQLSource):
    """The PromQL source, keeping every frame it read."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.frames: list[Frame] = []

    def read(self, start: float, end: float) -> list[Frame]:
        got = super().read(start, end)
        self.frames.extend(got)
        return got


def _read_power(
    url: str, offsets: tuple[float, ...], ticks: int = 4, every: float = 3.0
) -> list[list[float]]:
    """GPU 0's power as services with these latency offsets read it, side by side, one sample a second."""
    clock = SystemClock()
    sources, services = [], []
    for offset in offsets:
        source = RecordingSource(url, [PromQuery(POWER, POWER, 1.0)], clock)
        cfg = AnomalyConfig(infer_every_seconds=every, latency_offset_seconds=offset)
        sources.append(source)
        services.append(AnomalyService(cfg, [source], clock, detectors=[]))
    for _ in range(ticks):
        for service in services:
            service.infer()
        time.sleep(every)
    read = []
    for source in sources:
        source.close()
        values: list[float] = []
        for frame in source.frames:
            for row, labels in enumerate(frame.labels):
                if labels.get("gpu") == "0":
                    values.extend(v for v in frame.values[row].tolist() if not np.isnan(v))
        read.append(values)
    return read


def _repeated_share(values: list[float]) -> float:
    return sum(a == b for a, b in itertools.pairwise(values)) / max(1, len(values) - 1)


def test_reading_victoriametrics_takes_its_latency_offset(tmp_path: Path) -> None:
    vm = require_binary("victoria-metrics")
    exporter_port, vm_port = free_port(), free_port()
    exporter, url = f"http://127.0.0.1:{exporter_port}", f"http://127.0.0.1:{vm_port}"
    (tmp_path / "scrape.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "dcgm", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}
                ],
            }
        )
    )
    exporter_argv = [
        gpuwarden_binary(), "exporter", "--simulate", "1x2", "--port", str(exporter_port),
        "--listen-address", "127.0.0.1", "--interval", "1",
    ]  # fmt: skip
    vm_argv = [
        vm, f"-httpListenAddr=127.0.0.1:{vm_port}", f"-storageDataPath={tmp_path / 'vm'}",
        f"-promscrape.config={tmp_path / 'scrape.yml'}", f"-search.latencyOffset={OFFSET}s",
    ]  # fmt: skip
    with (
        running(exporter_argv, f"{exporter}/healthz", tmp_path / "exporter.log"),
        running(vm_argv, f"{url}/health", tmp_path / "vm.log"),
    ):
        wait_for("two GPUs in VictoriaMetrics", lambda: len(query(url, POWER)) == 2, 60)
        time.sleep(OFFSET + 2)  # enough history behind the offset for both reads
        naive, offset = _read_power(url, (0, OFFSET))
    # Up to "now": a window shorter than the offset comes back empty, a longer one ends in copies of the last
    # sample before the offset: at most one real sample per tick, most scraped ones never read.
    assert len(set(naive)) <= 4, naive
    # Up to "now - offset": every point a scraped sample (the simulated power moves at every collection).
    assert len(set(offset)) >= 9 and _repeated_share(offset) < 0.2, offset
