"""Reads a strict Prometheus refuses for their size (a query limit: HTTP 503 ``timeout``, 422 ``execution``)
are read in parts it accepts, joined as one read (a fake Prometheus over HTTP, a fake clock)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from anomaly import promhttp, promql
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


def a_second_each(prometheus: FakePrometheus, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each request takes a (fake) second of the read's deadline (``time.monotonic`` of the source)."""
    now = [0.0]
    fake = SimpleNamespace(monotonic=lambda: now[0])
    monkeypatch.setattr(promhttp, "time", fake)
    monkeypatch.setattr(promql, "time", fake)
    refusal = prometheus.refusal

    def slow(params: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        now[0] += 1.0
        return refusal(params)

    prometheus.refusal = slow


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
    assert sorted(read) == sorted(set(read)) == whole[0].timestamps.tolist()  # each step once
    assert read[:4] == whole[0].timestamps.tolist()[-4:]  # the newest part first (what a deadline leaves)
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


def _slow_at_two_points(
    prometheus: FakePrometheus, monkeypatch: pytest.MonkeyPatch, deadline: float
) -> tuple[FakeClock, PromQLSource]:
    """A source of the fleet's temperatures from a server answering 2 points a request, each request a fake
    second of a read's ``deadline``."""
    clock = FakeClock()
    prometheus.answers[TEMP] = fleet(clock.time())
    limit(prometheus, 2)
    a_second_each(prometheus, monkeypatch)
    return clock, PromQLSource(
        prometheus.url, [PromQuery("temp", TEMP, 1.0)], clock, deadline_seconds=deadline
    )


def test_a_read_in_parts_past_its_deadline_keeps_the_part_size_it_learnt(
    prometheus: FakePrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At a 2-point limit a tick's 60 steps are 30 requests after 5 refused halvings: past the read's deadline
    # the whole read failed and the size it had found was dropped, so every tick halved again from 11,000
    # steps, ran out of time again, and the query never read again. (Its newest steps are fed since
    # fix/promread; the query fails until a whole read.)
    clock, prom = _slow_at_two_points(prometheus, monkeypatch, deadline=33)
    clock.advance(60)
    frames = prom.read(clock.time() - 60, clock.time())  # 33 requests sent of the 35 it needs
    assert frames[0].timestamps.tolist() == [clock.time() - 55 + i for i in range(56)]  # 28 parts answered
    health = prom.health().queries["temp"]
    assert not health.up and "deadline" in (health.last_error or "")
    assert health.part_steps == 2
    prometheus.requests.clear()
    clock.advance(60)
    frames = prom.read(clock.time() - 60, clock.time())
    assert prom.health().queries["temp"].up, prom.health().queries["temp"].last_error
    assert frames[0].timestamps.tolist() == [clock.time() - 59 + i for i in range(60)]
    assert len(prometheus.requests) == 30 and asked_points(prometheus, answered=False) == []
    prom.close()


def test_a_limit_raised_is_read_in_longer_parts_again_and_a_kept_one_costs_a_request_now_and_then(
    prometheus: FakePrometheus, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The part size never grew back: a server whose limit was raised (or a refusal under a passing load)
    # was asked in parts of 8 steps for good, 8 requests a tick where one was answered.
    grow = 3
    monkeypatch.setattr(promhttp, "GROW_AFTER", grow)  # 30 in use: fewer reads, the same course
    clock = FakeClock()
    prometheus.answers[TEMP] = fleet(clock.time())
    limit(prometheus, 10)
    prom = PromQLSource(prometheus.url, [PromQuery("temp", TEMP, 1.0)], clock)
    refused = 0
    for _ in range(3 * grow):  # the limit kept: twice the parts asked once every `grow` clean reads
        clock.advance(60)
        prometheus.requests.clear()
        assert prom.read(clock.time() - 60, clock.time())[0].timestamps.size == 60
        refused += sum(prometheus.refusal(params) is not None for params in prometheus.requests)
    assert refused == 5  # 60, 30, 15 at the first read; parts of 16 steps tried at the 4th and the 7th
    assert prom.health().queries["temp"].part_steps == 8
    assert len([r for r in caplog.records if "read in parts" in r.getMessage()]) == 1
    prometheus.refusal = lambda params: None  # the limit raised
    for _ in range(3 * (grow + 1) + 1):  # parts of 16, 32, then 60 tried and answered (not 64: 60 asked)
        clock.advance(60)
        prometheus.requests.clear()
        assert prom.read(clock.time() - 60, clock.time())[0].timestamps.size == 60
    assert len(prometheus.requests) == 1
    assert prom.health().queries["temp"].part_steps == 60
    prom.close()


def test_a_query_refused_at_one_step_of_its_window_only_keeps_no_part_size(
    prometheus: FakePrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    # Prometheus answers 422 `execution` for a join that matched two series at one step (a pod's relabel):
    # halved down to that step, the read fails as before, but the parts answered on the way are no limit.
    clock = FakeClock()
    prometheus.answers[TEMP] = fleet(clock.time())
    bad = clock.time() + 50

    def refusal(params: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        if not float(params["start"]) <= bad <= float(params["end"]):
            return None
        return 422, {"status": "error", "errorType": "execution", "error": "found duplicate series"}

    prometheus.refusal = refusal
    prom = PromQLSource(prometheus.url, [PromQuery("temp", TEMP, 1.0)], clock)
    clock.advance(60)
    assert prom.read(clock.time() - 60, clock.time()) == []
    assert prom.health().queries["temp"].part_steps is None
    assert not [r for r in caplog.records if "read in parts" in r.getMessage()]
    clock.advance(60)
    prometheus.requests.clear()
    assert prom.read(clock.time() - 60, clock.time())[0].timestamps.size == 60  # the window after it
    assert len(prometheus.requests) == 1
    prom.close()


def test_a_tick_window_needing_more_requests_than_its_deadline_feeds_its_newest_steps_and_stays_failing(
    prometheus: FakePrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At a 2-point limit a tick's 60 steps are 30 requests; a deadline of 20 (a fake second each) cut every
    # read, the parts got were dropped, and a query never read (no catch-up to shorten) asked the same window
    # at each tick: it never read, for good. Now the newest parts are asked first and what the deadline
    # left is fed: the detectors get current steps, the older ones of each window stay unread (a gap), and
    # the query still reads as failing (its alerts held, `GpuwardenSourceStale`) without a whole read.
    clock, prom = _slow_at_two_points(prometheus, monkeypatch, deadline=20)
    fed: list[float] = []
    for tick in range(4):
        clock.advance(60)
        prometheus.requests.clear()
        frames = prom.read(clock.time() - 60, clock.time())
        assert len(prometheus.requests) <= 21  # bounded by the deadline (the last one cut at it)
        health = prom.health().queries["temp"]
        assert not health.up and health.last_success is None and "deadline" in (health.last_error or "")
        assert prom.health().up  # Prometheus answered: the query fails, the source is not down
        assert [len(f.labels) for f in frames] == [4]
        stamps = frames[0].timestamps.tolist()
        read = 15 * 2 if tick == 0 else 20 * 2  # the first read halved 60, 30, 15, 8 and 4 first
        assert stamps == [clock.time() - read + 1 + i for i in range(read)]  # the newest, in order
        fed.extend(stamps)
    assert fed == sorted(set(fed))  # each step once, never one older than one fed before
    prom.close()


def test_a_warm_up_refused_for_several_queries_is_said_in_one_line(
    prometheus: FakePrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    # VictoriaMetrics with -search.maxPointsPerTimeseries under the warm-up's steps refuses every query's
    # hour: each was said in its own line (22 at once for deploy/gpuwarden.example.yaml's queries).
    clock = FakeClock()
    names = [f"m{i}" for i in range(7)]
    for name in names:
        prometheus.answers[name] = fleet(clock.time())
    limit(prometheus, 7, "sample-limit")
    prom = PromQLSource(prometheus.url, [PromQuery(n, n, 30.0) for n in names], clock)
    frames = prom.read(clock.time() - 3600, clock.time())
    assert len(frames) == len(names) and all(f.timestamps.size == 120 for f in frames)
    said = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].startswith("promql: 7 queries: a read was refused (")
    assert "(8 steps refused, parts of at most 4)" in said[0] and said[0].endswith("and 2 more")
    caplog.clear()
    clock.advance(30)
    prom.read(clock.time() - 30, clock.time())  # found: not said again
    assert not [r for r in caplog.records if "refused" in r.getMessage()]
    prom.close()
