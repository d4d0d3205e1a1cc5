from __future__ import annotations

import gc
import math

from prometheus_client import CollectorRegistry, Counter, Gauge

from anomaly.sources import CollectorSource
from gpuwarden.clock import FakeClock
from tests.anomaly.fakes import TableCollector


def test_the_in_process_source_reads_a_registry_and_keeps_labels_and_counter_kind():
    registry = CollectorRegistry()
    temp = Gauge("DCGM_FI_DEV_GPU_TEMP", "t", ["gpu", "UUID"], registry=registry)
    temp.labels("0", "GPU-a").set(61)
    xids = Counter("gpuwarden_xid_errors", "x", ["UUID", "xid"], registry=registry)
    xids.labels("GPU-a", "79").inc()
    clock = FakeClock()
    frames = {f.query: f for f in CollectorSource([registry], clock).read(0, clock.time())}
    assert frames["DCGM_FI_DEV_GPU_TEMP"].labels == [{"gpu": "0", "UUID": "GPU-a"}]
    assert frames["DCGM_FI_DEV_GPU_TEMP"].values[0, 0] == 61
    assert frames["DCGM_FI_DEV_GPU_TEMP"].timestamps[0] == clock.time()
    assert frames["gpuwarden_xid_errors_total"].kind == "counter"
    assert "gpuwarden_xid_errors_created" not in frames


def test_include_limits_the_samples_read():
    col = TableCollector()
    col.set("a", [({}, 1.0)])
    col.set("b", [({}, 2.0)])
    frames = CollectorSource([col], FakeClock(), include=["b"]).read(0, 1)
    assert [f.query for f in frames] == ["b"]


def test_a_failing_collector_is_reported_unhealthy_instead_of_raising():
    col = TableCollector()
    col.fail = True
    source = CollectorSource([col], FakeClock())
    assert source.read(0, 1) == []
    health = source.health()
    assert not health.up
    assert "collector broke" in health.last_error
    assert health.errors_total == 1


def test_a_nan_sample_is_kept_as_nan_and_the_source_stays_healthy():
    col = TableCollector()
    col.set("a", [({"gpu": "0"}, math.nan), ({"gpu": "1"}, math.inf)])
    source = CollectorSource([col], FakeClock())
    frame = source.read(0, 1)[0]
    assert math.isnan(frame.values[0, 0]) and math.isnan(frame.values[1, 0])
    assert source.health().up and source.health().series == 2


def test_the_collectors_are_read_with_the_garbage_collector_paused_and_it_is_on_again_after():
    seen = []

    class Spy(TableCollector):
        def collect(self):
            seen.append(gc.isenabled())
            return super().collect()

    col = Spy()
    col.set("a", [({"gpu": "0"}, 1.0)])
    frames = CollectorSource([col], FakeClock()).read(0, 1)
    assert [f.query for f in frames] == ["a"]
    assert seen == [False]
    assert gc.isenabled()
