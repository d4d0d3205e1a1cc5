"""A GPU gone while the presence queries fail: the read that catches them up (Prometheus kept the samples)
tells its newest sample, and its alert says so, whatever ticks the outage held."""

from __future__ import annotations

from datetime import UTC, datetime

from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock, rfc3339
from tests.anomaly.snapshot_grid import EVERY, QUERIES, _few_trees
from tests.anomaly.snapshot_query_reads import QueryReadsSource

T0 = 1_767_225_600.0


def _at(t: float) -> str:
    return rfc3339(datetime.fromtimestamp(t, UTC))


def _stale_after_outage(catch_up: bool) -> tuple[float, dict[str, str]]:
    """A service 12 ticks warm; the last GPU's series end; the presence query failing 4 ticks; then read
    again, from each query's last good read (``catch_up``) or from the tick's start only: the time of the
    last sample, and the presence alert's labels and annotations raised at that read."""
    clock = FakeClock(T0 + 24 * EVERY)
    source = QueryReadsSource()
    service = AnomalyService(_few_trees(), [source], clock)  # presence: the temperature query
    service.warm_up()
    for _ in range(12):
        clock.advance(EVERY)
        service.infer()
    last = clock.time()
    source.gone_after = last
    source.failing = {QUERIES[0]}
    for _ in range(4):
        clock.advance(EVERY)
        assert not [a for a in service.infer().raised if a.labels.get("model") == "presence"]
    source.failing = set()
    if not catch_up:
        source._done.clear()  # an in-process source: only the tick's own read, nothing of the outage
    clock.advance(EVERY)
    (alert,) = [a for a in service.infer().raised if a.labels.get("model") == "presence"]
    return last, {**alert.labels, **alert.annotations}


def test_a_gpu_gone_during_an_outage_is_absent_from_its_last_sample_once_the_read_catches_up():
    # Before, its clock had moved on through the outage's four ticks: onset the last failed tick, not its
    # last sample, and a restart whose reads ended otherwise in the outage raised it a tick later.
    last, alert = _stale_after_outage(catch_up=True)
    assert alert["alertname"] == "GpuExporterStale" and alert["onset"] == _at(last)


def test_without_the_outages_samples_the_clock_moved_on_through_it_stays_so():
    last, alert = _stale_after_outage(catch_up=False)
    assert alert["alertname"] == "GpuExporterStale" and alert["onset"] == _at(last + 4 * EVERY)
