"""Reads a strict Prometheus refuses for their size (a query limit: HTTP 503 ``timeout``, 422 ``execution``)
are read in parts it accepts, joined as one read (a fake Prometheus over HTTP, a fake clock)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from anomaly.sources import Frame
from anomaly.writeback import AnomalyCollector, TickStats
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig
from tests.anomaly.fakes import FakePrometheus, Sample

TEMP = "DCGM_FI_DEV_GPU_TEMP"
REFUSALS = {
    "query-timeout": (503, "timeout", "query timed out in expression evaluation"),
    "sample-limit": (422, "execution", "query processing would load too many samples into memory"),
    "gateway": (504, "", "gateway timeout"),
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    yield fake
    fake.close()


@pytest.fixture
def prometheus(server: FakePrometheus) -> FakePrometheus:
    server.answers.clear()
    server.errors.clear()
    server.requests.clear()
    server.refusal = lambda params: None
    return server


def limit(prometheus: FakePrometheus, points: int, kind: str = "query-timeout") -> None:
    """Refuse every ``query_range`` of more than ``points`` points, as a Prometheus with a query limit."""
    status, error_type, error = REFUSALS[kind]

    def refusal(params: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        asked = round((float(params["end"]) - float(params["start"])) / float(params["step"])) + 1
        if asked <= points:
            return None
        return status, {"status": "error", "errorType": error_type, "error": error}

    prometheus.refusal = refusal


def fleet(t0: float) -> Any:
    """Four GPUs: the fourth's series begins half-way through the hour, the second reads NaN at some steps."""

    def answer(t: float) -> list[Sample]:
        out: list[Sample] = []
        for gpu in range(4):
            if gpu == 3 and t < t0 - 1800:
                continue
            value = math.nan if gpu == 1 and round(t) % 450 == 0 else 60.0 + gpu + math.sin(t / 300)
            out.append(({"Hostname": "n1", "gpu": str(gpu)}, value))
        return out

    return answer


def rows(frame: Frame) -> dict[tuple[tuple[str, str], ...], tuple[list[float], list[bool]]]:
    """A frame's series by their labels: their values (NaN as None) and where they hold a sample."""
    out = {}
    for i, labels in enumerate(frame.labels):
        values = [None if math.isnan(v) else v for v in frame.values[i].tolist()]
        out[tuple(sorted(labels.items()))] = (values, frame.samples[i].tolist())
    return out


def asked_points(prometheus: FakePrometheus, answered: bool) -> list[float]:
    """The steps of every request (answered ones, or refused ones) on the grid, in order."""
    points = []
    for params in prometheus.requests:
        start, end, step = (float(params[k]) for k in ("start", "end", "step"))
        n = round((end - start) / step) + 1
        if (prometheus.refusal(params) is None) == answered:
            points.extend(start + i * step for i in range(n))
    return points


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_a_warm_up_refused_for_its_size_is_read_in_parts_joined_as_one_read(
    prometheus: FakePrometheus, kind: str
) -> None:
    # With a limit under the warm-up's steps the hour was refused whole: a restart could not replay the
    # ticks it missed, and a big fleet behind a strict Prometheus lost its history at every restart.
    clock = FakeClock()
    prometheus.answers[TEMP] = fleet(clock.time())
    start, end = clock.time() - 3600 + 7.5, clock.time() + 17.5  # off the grid: the ends are inclusive
    query = PromQuery("temp", TEMP, 30.0)
    whole = PromQLSource(prometheus.url, [query], clock).read(start, end)
    assert whole and whole[0].timestamps.size == 120
    prometheus.requests.clear()
    limit(prometheus, 7, kind)
    strict = PromQLSource(prometheus.url, [query], clock)
    parts = strict.read(start, end)
    assert strict.health().up and strict.health().queries["temp"].up
    assert [len(p.labels) for p in parts] == [4]
    np.testing.assert_array_equal(parts[0].timestamps, whole[0].timestamps)
    assert rows(parts[0]) == rows(whole[0])
    read = asked_points(prometheus, answered=True)
    assert read == sorted(set(read)) == whole[0].timestamps.tolist()  # each step once, in order
    assert strict.health().queries["temp"].part_steps == 4  # 120, 60, 30, 15, 8 refused: 4 read
    strict.close()


def test_a_tick_window_too_big_for_the_server_is_read_in_parts_and_its_health_says_so(
    prometheus: FakePrometheus,
) -> None:
    # A query on a 1 s step read each minute asks 60 points a tick; a Prometheus refusing more than 10 failed
    # it at every tick, for good (its window, not a catch-up, was never shortened).
    clock = FakeClock()
    prometheus.answers[TEMP] = fleet(clock.time())
    limit(prometheus, 10)
    prom = PromQLSource(prometheus.url, [PromQuery("temp", TEMP, 1.0)], clock)
    for _ in range(3):
        clock.advance(60)
        prometheus.requests.clear()
        frames = prom.read(clock.time() - 60, clock.time())
        assert prom.health().queries["temp"].up, prom.health().queries["temp"].last_error
        assert frames[0].timestamps.tolist() == [clock.time() - 59 + i for i in range(60)]
    assert len(prometheus.requests) == 8  # learned: parts of 8 steps from the first, none refused again
    assert asked_points(prometheus, answered=False) == []
    assert prom.health().queries["temp"].part_steps == 8
    registry = CollectorRegistry()
    collector = AnomalyCollector()
    collector.update([], [prom.health()], TickStats())
    registry.register(collector)
    labels = {"source": "prometheus", "query": "temp"}
    assert registry.get_sample_value("gpuwarden_anomaly_query_part_steps", labels) == 8
    prom.close()


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_a_catch_up_refused_for_its_size_is_read_whole_in_parts(
    prometheus: FakePrometheus, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # After an outage the catch-up the server refused for its size was shortened, its older steps left
    # unread (a gap), though it answered them in parts; and a process that learned the server's limit read
    # them where one restarted during the outage left them out (anomaly_restart_fuzz --prom-faults, seed 1).
    clock = FakeClock()
    prometheus.answers[TEMP] = fleet(clock.time())
    prom = PromQLSource(prometheus.url, [PromQuery("temp", TEMP, 30.0)], clock)
    clock.advance(30)
    prom.read(clock.time() - 30, clock.time())
    good = clock.time()
    prometheus.errors[TEMP] = (502, "bad gateway")
    for _ in range(10):
        clock.advance(30)
        prom.read(clock.time() - 30, clock.time())
    assert not prom.health().up
    del prometheus.errors[TEMP]
    limit(prometheus, 4, kind)
    clock.advance(30)
    frames = prom.read(clock.time() - 30, clock.time())
    assert prom.health().up
    assert frames[0].timestamps.tolist() == [good + 30 * i for i in range(1, 12)]  # every step it missed
    assert not [r for r in caplog.records if "it missed failed" in r.getMessage()]
    assert prom.health().queries["temp"].part_steps == 3  # 11 and 6 refused
    prom.close()


def test_a_query_refused_at_one_step_too_is_not_split_again_at_each_tick(prometheus: FakePrometheus) -> None:
    # A typo VictoriaMetrics refuses with HTTP 422 is refused at any size: halving it at each tick asked
    # Prometheus again and again for nothing. Once refused at one step, each tick asks it once.
    clock = FakeClock()
    prometheus.errors[TEMP] = (422, 'cannot execute query: unexpected token ""')
    prom = PromQLSource(prometheus.url, [PromQuery("temp", TEMP, 1.0)], clock)
    clock.advance(60)
    prom.read(clock.time() - 60, clock.time())
    for _ in range(3):
        clock.advance(60)
        prometheus.requests.clear()
        prom.read(clock.time() - 60, clock.time())
        assert len(prometheus.requests) == 1
    health = prom.health().queries["temp"]
    assert not health.up and health.part_steps is None
    prom.close()


def test_a_restart_behind_a_strict_prometheus_replays_its_hour_as_one_without_a_limit(
    prometheus: FakePrometheus,
) -> None:
    clock = FakeClock()
    prometheus.answers[TEMP] = fleet(clock.time())
    cfg = AnomalyConfig(
        infer_every_seconds=300.0, queries=[AnomalyQueryConfig(name="temp", expr=TEMP, step_seconds=300.0)]
    )

    def warmed() -> int:
        source = PromQLSource(prometheus.url, [PromQuery("temp", TEMP, 300.0)], clock)
        try:
            return AnomalyService(cfg, [source], clock, detectors=[]).warm_up()
        finally:
            source.close()

    fed = warmed()
    assert fed == 12  # the hour at 300 s
    limit(prometheus, 2)  # under the warm-up's 12 steps
    assert warmed() == fed
